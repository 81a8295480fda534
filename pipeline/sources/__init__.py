"""Every source yields a SourceFrame: a polars LazyFrame over local files (S3 objects are staged first)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import SourceConfig
from pipeline.sources.local import SourceFrame, open_local_source, scan_files
from pipeline.storage import is_s3


def open_source(config: SourceConfig, workdir: Path) -> SourceFrame:
    columns = config.columns.mapped()
    if not is_s3(config.uri) and not (config.manifest and is_s3(config.manifest)):
        return open_local_source(config.uri, config.format, columns, delimiter=config.delimiter,
                                 has_header=config.has_header, marker=config.require_marker)
    from pipeline.s3 import s3_client
    from pipeline.sources.s3 import require_marker, resolve_objects, stage

    client = s3_client(config.s3)
    if config.require_marker:
        require_marker(client, config.uri, config.require_marker)
    objects = resolve_objects(client, config.uri, config.manifest)
    local = stage(client, objects, workdir / "source")
    fingerprint = tuple({"uri": o.uri, "size": o.size, "etag": o.etag} for o in objects)
    return scan_files([str(p) for p in local], [o.uri for o in objects], config.format, columns,
                      delimiter=config.delimiter, has_header=config.has_header, fingerprint=fingerprint)
