"""Local files: a file, a directory of parts, or a glob; CSV (optionally gzip) or Parquet, read lazily."""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.errors import InputError
from pipeline.prepare.prepared import safe_reason

FILE_INDEX = "__file"
ROW_NUMBER = "__row"
# True for a blank line of a CSV file (every field empty), which is no row: never counted, never rejected.
BLANK = "__blank"

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# An email address (also with a full-width or small @), or seven digits or more in any layout (a phone:
# 415.555.0101, +44 20 7946 0958).
_LOOKS_LIKE_DATA = re.compile(r"[@\uff20\ufe6b]|\d(?:[\s().\-/]*\d){6,}")
# Byte-order marks of the encodings polars cannot read (it reads UTF-8, with or without its mark); UTF-32's first.
_WIDE_ENCODINGS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                   (b"\xfe\xff", "UTF-16"))


@dataclass(frozen=True)
class SourceFrame:
    """The source as one LazyFrame: one String column per role, plus the file index, the 1-based data row and
    whether it is a blank line."""

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


def _expand(root: Path, pattern: str) -> list[str]:
    """The data files under `root` that `pattern` (a glob, `**` for any depth) matches. A symlinked folder below
    `root` is never entered: a link back up would make `**` go round for ever (Python's glob follows it). Nor is a
    hidden one, as glob skips them."""
    found = []
    for path in root.glob(pattern):
        folders = path.relative_to(root).parts[:-1]
        below = [root.joinpath(*folders[:depth]) for depth in range(1, len(folders) + 1)]
        if not any(folder.name.startswith(".") or folder.is_symlink() for folder in below) and _is_data_file(path):
            found.append(str(path))
    return sorted(found)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def resolve_local_files(uri: str) -> list[str]:
    if _is_glob(uri):
        parts = Path(uri).parts
        fixed = next(i for i, part in enumerate(parts) if _is_glob(part))  # the folders named before any wildcard
        files = _expand(Path(*parts[:fixed]) if fixed else Path(), str(Path(*parts[fixed:])))
        if not files:
            raise InputError(f"source.uri: no data files match {uri}")
        return files
    path = Path(uri)
    if path.is_dir():
        files = [f for f in _expand(path, "**/*") if infer_format(f)]
        if not files:
            raise InputError(f"source.uri: directory {uri} holds no CSV or Parquet files")
        return files
    if not path.exists():
        raise InputError(f"source.uri: no such file or directory: {uri}")
    if path.stat().st_size == 0:
        raise InputError(f"source.uri: {uri} is empty (0 bytes)")
    return [str(path)]


def _refuse_wide_encoding(path: str) -> None:
    """polars would read UTF-16 or UTF-32 text as garbled column names; say what the file is instead."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(4)
            if head.startswith(b"\x1f\x8b"):  # gzip: the text starts after decompression
                raw.seek(0)
                head = gzip.GzipFile(fileobj=raw).read(4)
    except (OSError, EOFError) as exc:
        raise InputError(f"source: cannot read {path}: {safe_reason(exc)}") from None
    encoding = next((name for mark, name in _WIDE_ENCODINGS if head.startswith(mark)), None)
    if encoding:
        raise InputError(f"source: {path}: the file is {encoding}; export it as UTF-8")


def scan_file(path: str, fmt: str, columns: dict[str, str], *, delimiter: str, has_header: bool) -> pl.LazyFrame:
    """One file as a LazyFrame of role columns (String), with its 1-based data row number (blank lines counted, so
    that it is the line number for files without line breaks inside quotes) and whether the line is blank."""
    if fmt == "parquet":
        frame = pl.scan_parquet(path, row_index_name=ROW_NUMBER, row_index_offset=1)
    else:
        _refuse_wide_encoding(path)
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
    except (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException) as exc:
        reason = "not a complete Parquet file (truncated, or not Parquet at all)" if fmt == "parquet" else safe_reason(exc)
        raise InputError(f"source: cannot read {path}: {reason}") from None
    _check_columns(path, fmt, columns, schema)
    return frame.select(
        pl.col(ROW_NUMBER).cast(pl.UInt64),
        *[pl.col(column).cast(pl.String).alias(role) for role, column in columns.items()],
        _blank_line(fmt, schema).alias(BLANK),
    )


def _blank_line(fmt: str, schema: pl.Schema) -> pl.Expr:
    """polars reads a CSV file's blank line as a row of nulls; so, also, a line of separators only, as spreadsheets
    export their empty rows. Every field is read for it, unless the file has one column."""
    if fmt != "csv":
        return pl.lit(False)
    fields = [name for name in schema.names() if name != ROW_NUMBER]
    return pl.all_horizontal(pl.col(name).is_null() for name in fields)


def _check_columns(path: str, fmt: str, columns: dict[str, str], schema: pl.Schema) -> None:
    """Every mapped column is there, once, as text. Messages name columns as the job file does, never what the file
    holds: a headerless file's "column names" are a customer's data."""
    names = [name for name in schema.names() if name != ROW_NUMBER]
    missing = [column for column in columns.values() if column not in schema]
    if missing:
        raise InputError(f"source.columns: column {missing[0]!r} not found in {path}; {_why_not_found(fmt, missing[0], names)}")
    for role, column in columns.items():
        if f"{column}_duplicated_0" in schema:  # how polars names a repeated header
            raise InputError(f"source.columns.{role}: column {column!r} appears more than once in the header of {path}; "
                             "rename the copies so that the job reads the right one")
        dtype = schema[column]
        if dtype.is_nested() or dtype == pl.Binary:
            raise InputError(f"source.columns.{role}: column {column!r} in {path} has type {dtype}, expected text")


def _why_not_found(fmt: str, column: str, names: list[str]) -> str:
    if any("\x00" in name for name in names):
        return "it looks like UTF-16 or UTF-32 text: export it as UTF-8"
    if any(_LOOKS_LIKE_DATA.search(name) for name in names):
        # A headerless file read with has_header: true: its "column names" are a customer's data row.
        return (f"its first line looks like data, not column names ({len(names)} columns): set source.has_header: false "
                "and map column_1, column_2, …")
    alike = [i for i, name in enumerate(names, 1) if name.strip().casefold() == column.strip().casefold()]
    if alike:
        return f"column {alike[0]} differs from it only in case or spaces (names must match exactly)"
    hint = " (is the delimiter right?)" if fmt == "csv" and len(names) == 1 else ""
    return f"its header has {len(names)} column{'s' if len(names) != 1 else ''}, none of them named so{hint}"


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
