"""S3 sources: an object, a prefix (every data object under it), a glob, or a manifest's list.

Objects are staged to the run's private work folder with boto3's streaming download and read from there, so
an export of any size needs disk, not memory. Listings are paginated (tens of thousands of parts work).
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.storage import s3_error, split_s3_uri

_WILDCARDS = "*?["


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int
    etag: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_data_key(key: str, size: int) -> bool:
    """Warehouse exports put markers (_SUCCESS, manifests) and folder placeholders beside the parts."""
    name = posixpath.basename(key)
    return size > 0 and not key.endswith("/") and not name.startswith(("_", ".")) and not name.endswith("$folder$")


def resolve_objects(client: Any, uri: str, manifest: str | None = None) -> list[S3Object]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if manifest:
            return _from_manifest(client, manifest)
        bucket, key = split_s3_uri(uri)
        if any(ch in key for ch in _WILDCARDS):
            prefix = key[: min(key.index(ch) for ch in _WILDCARDS if ch in key)]
            found = [o for o in _list(client, bucket, prefix) if fnmatch.fnmatchcase(o.key, key) and is_data_key(o.key, o.size)]
            if not found:
                raise InputError(f"source.uri: no data objects match {uri}")
            return found
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            else:
                if head["ContentLength"] == 0:
                    raise InputError(f"source.uri: {uri} is empty (0 bytes)")
                return [S3Object(bucket, key, head["ContentLength"], head.get("ETag", "").strip('"'))]
            key += "/"  # not an object: read it as a prefix
        found = [o for o in _list(client, bucket, key) if is_data_key(o.key, o.size)]
        if not found:
            raise InputError(f"source.uri: no data objects under {uri}")
        return found
    except ClientError as exc:
        raise s3_error(exc, uri) from None
    except BotoCoreError as exc:
        raise InputError(f"S3 unreachable for {uri}: {type(exc).__name__}") from None


def _list(client: Any, bucket: str, prefix: str) -> list[S3Object]:
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects += [S3Object(bucket, item["Key"], item["Size"], item.get("ETag", "").strip('"')) for item in page.get("Contents", [])]
    return sorted(objects, key=lambda o: o.key)


def _from_manifest(client: Any, manifest_uri: str) -> list[S3Object]:
    """Redshift UNLOAD's manifest: {"entries": [{"url": "s3://…", "mandatory": true}, …]}."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(manifest_uri)
    try:
        body = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        entries = body["entries"]
    except ClientError as exc:
        raise s3_error(exc, manifest_uri) from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"source.manifest: {manifest_uri} is not a manifest with entries[].url") from None
    objects = []
    for number, entry in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise InputError(f"source.manifest: entry {number} of {manifest_uri} has no url")
        entry_bucket, entry_key = split_s3_uri(entry["url"])
        try:
            head = client.head_object(Bucket=entry_bucket, Key=entry_key)
        except ClientError as exc:
            if entry.get("mandatory", False):
                raise InputError(f"source.manifest: mandatory file {entry['url']} is missing ({_code(exc)})") from None
            continue
        if head["ContentLength"] > 0:
            objects.append(S3Object(entry_bucket, entry_key, head["ContentLength"], head.get("ETag", "").strip('"')))
    if not objects:
        raise InputError(f"source.manifest: {manifest_uri} lists no data files")
    return objects


def _code(exc: Any) -> str:
    return exc.response.get("Error", {}).get("Code", "error")


def require_marker(client: Any, uri: str, marker: str) -> None:
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    folder = key if key.endswith("/") or not key else posixpath.dirname(key[: min([key.index(c) for c in _WILDCARDS if c in key] or [len(key)])]) + "/"
    if any(ch in key for ch in _WILDCARDS):
        folder = posixpath.dirname(key[: min(key.index(c) for c in _WILDCARDS if c in key)]) + "/"
    marker_key = f"{folder.lstrip('/')}{marker}"
    try:
        client.head_object(Bucket=bucket, Key=marker_key)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            raise InputError(
                f"source.require_marker: s3://{bucket}/{marker_key} does not exist yet: the export may still be "
                "being written; refusing to start"
            ) from None
        raise s3_error(exc, f"s3://{bucket}/{marker_key}") from None


def stage(client: Any, objects: list[S3Object], folder: Path) -> list[Path]:
    """Download each object to `folder` (streamed to disk, in parallel); same order as `objects`."""
    from botocore.exceptions import BotoCoreError, ClientError

    folder.mkdir(parents=True, exist_ok=True)

    def download(numbered: tuple[int, S3Object]) -> Path:
        number, obj = numbered
        target = folder / f"{number:06d}-{posixpath.basename(obj.key)}"
        try:
            client.download_file(obj.bucket, obj.key, str(target))
        except ClientError as exc:
            raise s3_error(exc, obj.uri) from None
        except BotoCoreError as exc:
            raise InputError(f"S3 unreachable while reading {obj.uri}: {type(exc).__name__}") from None
        except OSError as exc:
            raise InputError(f"cannot stage {obj.uri} on local disk ({exc.strerror or type(exc).__name__}): is the temporary folder full?") from None
        return target

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(download, enumerate(objects)))
