"""Local files: a file, a directory of parts, or a glob; CSV (optionally gzip) or Parquet, read lazily."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.errors import InputError

FILE_INDEX = "__file"
ROW_NUMBER = "__row"

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# An email address, or seven digits or more in any layout (a phone: 415.555.0101, +44 20 7946 0958): never echoed.
_LOOKS_LIKE_DATA = re.compile(r"@|\d(?:[\s().\-/]*\d){6,}")


@dataclass(frozen=True)
class SourceFrame:
    """The source as one LazyFrame: one String column per role, plus the file index and 1-based data row."""

    frame: pl.LazyFrame
    files: tuple[str, ...]  # as the user knows them (local paths or s3:// URIs), for rejects and the audit
    columns: dict[str, str]  # role -> column name in the file
    fingerprint: tuple[dict[str, object], ...] = ()  # per file: uri, size, and etag (S3) or mtime (local)
    paths: tuple[str, ...] = ()  # the local files read (S3 objects: their staged copies)
    states: tuple[tuple[int, int, int], ...] = ()  # file_state of each path when the source was opened

    def check_unchanged(self) -> None:
        """Refuse to go on when a file was rewritten, replaced or removed since the source was opened: the stream
        reads it more than once (the judgement, windows, the duplicate pass), and each read must see the same rows."""
        for path, name, state in zip(self.paths, self.files, self.states):
            try:
                now = file_state(path)
            except OSError:
                now = None
            if now != state:
                raise InputError(f"source: {name} changed while it was being read (rewritten, replaced or removed); "
                                 "rerun on a finished export")

    @property
    def sliceable(self) -> bool:
        """Whether a slice of rows can be read without reading the whole file again: not for compressed files,
        which are decompressed from their start for every slice."""
        return not any(name.lower().endswith(".gz") for name in self.files)


def file_state(path: str) -> tuple[int, int, int]:
    """What tells one version of a file from another: inode (a replaced file), size and modification time."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def infer_format(path: str) -> str | None:
    name = path.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    return None


def _is_data_file(path: Path) -> bool:
    # Warehouse exports put markers (_SUCCESS) and hidden files beside the parts.
    return path.is_file() and not path.name.startswith(("_", ".")) and path.stat().st_size > 0


def resolve_local_files(uri: str) -> list[str]:
    if any(ch in uri for ch in "*?["):
        files = sorted(p for p in glob.glob(uri, recursive=True) if _is_data_file(Path(p)))
        if not files:
            raise InputError(f"source.uri: no data files match {uri}")
        return files
    path = Path(uri)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if _is_data_file(p) and infer_format(str(p)))
        if not files:
            raise InputError(f"source.uri: directory {uri} holds no CSV or Parquet files")
        return files
    if not path.exists():
        raise InputError(f"source.uri: no such file or directory: {uri}")
    if path.stat().st_size == 0:
        raise InputError(f"source.uri: {uri} is empty (0 bytes)")
    return [str(path)]


def scan_file(path: str, fmt: str, columns: dict[str, str], *, delimiter: str, has_header: bool) -> pl.LazyFrame:
    """One file as a LazyFrame of role columns (String), with its 1-based data row number."""
    if fmt == "parquet":
        frame = pl.scan_parquet(path, row_index_name=ROW_NUMBER, row_index_offset=1)
    else:
        frame = pl.scan_csv(
            path,
            separator=delimiter,
            has_header=has_header,
            infer_schema=False,
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
            quote_char='"',
        )
        if not has_header:
            # The first column is column_1, as people count (and as polars 1.x named it); polars 2 starts at 0.
            frame = frame.rename(lambda name: f"column_{int(name.split('_')[1]) + 1}" if name.startswith("column_") else name)
    try:
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"source: cannot read {path} as {fmt}: {type(exc).__name__}") from None
    missing = [column for column in columns.values() if column not in schema]
    if missing:
        available = [name for name in schema.names() if name != ROW_NUMBER]
        if any(_LOOKS_LIKE_DATA.search(name) for name in available):
            # A headerless file read with has_header: true: its "column names" are a customer's data row.
            raise InputError(
                f"source.columns: column {missing[0]!r} not found in {path}; its first line looks like data, not "
                f"column names ({len(available)} columns): set source.has_header: false and map column_1, column_2, …"
            )
        shown = ", ".join(repr(n) for n in available[:20]) + (" …" if len(available) > 20 else "")
        hint = " (is the delimiter right?)" if fmt == "csv" and len(available) == 1 else ""
        raise InputError(
            f"source.columns: column {missing[0]!r} not found in {path}; the file has {shown}{hint}"
        )
    for role, column in columns.items():
        dtype = schema[column]
        if dtype.is_nested() or dtype == pl.Binary:
            raise InputError(f"source.columns.{role}: column {column!r} in {path} has type {dtype}, expected text")
    return frame.select(
        pl.col(ROW_NUMBER).cast(pl.UInt64),
        *[pl.col(column).cast(pl.String).alias(role) for role, column in columns.items()],
    )


def open_local_source(uri: str, fmt: str | None, columns: dict[str, str], *, delimiter: str, has_header: bool,
                      marker: str | None = None) -> SourceFrame:
    files = resolve_local_files(uri)
    if marker:
        folder = Path(uri) if Path(uri).is_dir() else Path(files[0]).parent
        if not (folder / marker).exists():
            raise InputError(f"source.require_marker: {folder / marker} does not exist yet: the export may still be being written; refusing to start")
    fingerprint = tuple({"uri": f, "size": os.stat(f).st_size, "mtime": int(os.stat(f).st_mtime)} for f in files)
    return scan_files(files, files, fmt, columns, delimiter=delimiter, has_header=has_header, fingerprint=fingerprint)


def scan_files(paths: list[str], names: list[str], fmt: str | None, columns: dict[str, str], *, delimiter: str,
               has_header: bool, fingerprint: tuple[dict[str, object], ...] = ()) -> SourceFrame:
    """Local files (`paths`) as one frame; `names` are how the user knows them (an S3 part's URI)."""
    frames = []
    states = tuple(file_state(path) for path in paths)
    for index, (path, name) in enumerate(zip(paths, names)):
        file_format = fmt or infer_format(name)
        if file_format is None:
            raise InputError(f"source.format: cannot tell the format of {os.path.basename(name)}; set csv or parquet")
        try:
            frame = scan_file(path, file_format, columns, delimiter=delimiter, has_header=has_header)
        except InputError as exc:
            raise InputError(str(exc).replace(path, name)) from None
        frames.append(frame.with_columns(pl.lit(index, dtype=pl.UInt32).alias(FILE_INDEX)))
    return SourceFrame(frame=pl.concat(frames, how="vertical"), files=tuple(names), columns=columns,
                       fingerprint=fingerprint, paths=tuple(paths), states=states)
