"""Where a run's outputs live: a local folder or an S3 prefix, behind one small interface.

Writes are whole objects (S3 has no append): the ledger builds its append-only log out of them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pipeline.errors import InputError


class Store(Protocol):
    uri: str

    def child(self, *parts: str) -> Store: ...
    def read_bytes(self, name: str) -> bytes | None: ...
    def write_bytes(self, name: str, data: bytes) -> None: ...
    def upload_file(self, name: str, path: Path) -> None: ...
    def scratch_path(self, name: str, workdir: Path) -> Path: ...
    def publish_file(self, name: str, path: Path) -> None: ...
    def local_copy(self, name: str, workdir: Path) -> Path | None: ...
    def download_file(self, name: str, path: Path) -> bool: ...
    def delete(self, name: str) -> None: ...
    def exists(self, name: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...


@dataclass(frozen=True)
class LocalStore:
    path: Path

    @property
    def uri(self) -> str:
        return str(self.path)

    def child(self, *parts: str) -> LocalStore:
        return LocalStore(self.path.joinpath(*parts))

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    def upload_file(self, name: str, path: Path) -> None:
        target = self.path / name
        if path.resolve() == target.resolve():
            return
        # Copied in chunks (state files can be gigabytes), then renamed: a reader sees the old file or the new one.
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(path, "rb") as source, open(temporary, "wb") as handle:
            shutil.copyfileobj(source, handle, 8 * 2**20)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    def scratch_path(self, name: str, workdir: Path) -> Path:
        """Where to write a file that will become `name`: beside it (same disk), so publishing is a rename."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.partial")

    def publish_file(self, name: str, path: Path) -> None:
        """Make the finished file at `path` (the caller is done with it) the file `name`."""
        target = self.path / name
        if path.parent != target.parent:
            self.upload_file(name, path)
            return
        with open(path, "rb") as handle:  # on disk before it takes the name: a crash never leaves it torn
            os.fsync(handle.fileno())
        os.replace(path, target)

    def local_copy(self, name: str, workdir: Path) -> Path | None:
        """A path to read `name` at (the file itself); None when there is no such file."""
        path = self.path / name
        return path if path.exists() else None

    def download_file(self, name: str, path: Path) -> bool:
        """Copy `name` to `path`; False when there is no such file."""
        try:
            shutil.copyfile(self.path / name, path)
        except FileNotFoundError:
            return False
        return True

    def delete(self, name: str) -> None:
        target = self.path / name
        target.unlink(missing_ok=True)
        # Folders that held only this object go too, as they would on S3 (which has no folders).
        for folder in target.parents:
            if folder == self.path or self.path not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.path / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.path)) for p in base.rglob("*") if p.is_file())


@dataclass(frozen=True)
class S3Store:
    bucket: str
    prefix: str  # no leading or trailing slash
    client: Any = field(compare=False, repr=False)
    put_args: dict[str, str] = field(default_factory=dict, compare=False)  # server-side encryption settings

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def child(self, *parts: str) -> S3Store:
        return S3Store(self.bucket, "/".join(p.strip("/") for p in (self.prefix, *parts) if p), self.client, self.put_args)

    def read_bytes(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, **self.put_args)
        except ClientError as exc:
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None

    def upload_file(self, name: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.upload_file(str(path), self.bucket, self._key(name), ExtraArgs=self.put_args or None)
        except ClientError as exc:
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None

    def scratch_path(self, name: str, workdir: Path) -> Path:
        """Where to write a file that will become `name`: the run's work folder (publishing uploads it)."""
        return workdir / Path(name).name

    def publish_file(self, name: str, path: Path) -> None:
        self.upload_file(name, path)

    def local_copy(self, name: str, workdir: Path) -> Path | None:
        """A path to read `name` at: downloaded into `workdir`; None when there is no such object."""
        path = workdir / Path(name).name
        return path if self.download_file(name, path) else None

    def download_file(self, name: str, path: Path) -> bool:
        """Stream `name` to `path` (never whole in memory); False when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(name), str(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None
        return True

    def delete(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise s3_error(exc, f"s3://{self.bucket}/{self._key(name)}") from None
        return True

    def list(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import ClientError

        start = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        names = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                names += [item["Key"][len(self.prefix) + 1 if self.prefix else 0:] for item in page.get("Contents", [])]
        except ClientError as exc:
            raise s3_error(exc, f"s3://{self.bucket}/{start}") from None
        return sorted(names)


def s3_error(exc: Exception, where: str) -> InputError:
    """A botocore error as one actionable line (codes only: S3 messages never carry identifiers, but keep it short)."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken", "AllAccessDisabled"):
        return InputError(f"access denied to {where} ({code}): check the credentials, profile or role the job runs with")
    if code in ("NoSuchBucket",):
        return InputError(f"no such bucket: {where}")
    if code in ("NoSuchKey", "404"):
        return InputError(f"no such object: {where}")
    return InputError(f"S3 error on {where}: {code}")


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InputError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")
