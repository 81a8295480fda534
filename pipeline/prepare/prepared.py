"""Source -> validated, normalised, hashed, de-duplicated wire identifiers, in bounded memory.

The source is read in chunks; each chunk is validated as a DataFrame (pandera checks data only on
DataFrames), invalid rows go to rejects, valid ones are hashed and spilled to Parquet. De-duplication and
batching then stream over the spill, so memory depends on the chunk size, not on the file size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.batching import SUBJECT, WIRE
from pipeline.errors import InputError
from pipeline.prepare.hashing import WireEncoding, wire_identifier
from pipeline.prepare.normalise import normalise_email, strip_hash
from pipeline.prepare.schemas import failing_rows
from pipeline.rejects import RejectsWriter
from pipeline.sources.local import SourceFrame

CHUNK_ROWS = 250_000
_NORMALISERS = {"email": normalise_email, "sha256": strip_hash}


@dataclass(frozen=True)
class PreparedInput:
    rows_read: int
    rows_rejected: int
    duplicates_dropped: int
    identifiers: int
    unique_path: Path
    files: tuple[str, ...]
    reject_reasons: dict[str, int]


def prepare_input(
    source: SourceFrame,
    identifier_role: str,
    encoding: WireEncoding,
    workdir: Path,
    rejects: RejectsWriter,
    with_subject: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> PreparedInput:
    """`with_subject` adds the hex SHA-256 of each identifier, the key one-subject endpoints are audited by."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.parquet"):
        stale.unlink()
    roles = list(source.columns)
    rows_read = valid_rows = 0
    for number, raw in enumerate(_read_chunks(source, chunk_rows)):
        rows_read += raw.height
        normalised = raw.with_columns(_NORMALISERS[role](role) for role in roles)
        failures = failing_rows(normalised.select(roles), roles)
        rejects.write(raw, failures)
        valid = normalised.with_row_index("position").join(failures.select("position"), on="position", how="anti")
        columns = [wire_identifier(identifier_role, encoding).alias(WIRE)]
        if with_subject:
            columns.append(wire_identifier(identifier_role, "hex").alias(SUBJECT))
        wire = valid.select(columns)
        wire.write_parquet(workdir / f"valid-{number:06d}.parquet")
        valid_rows += wire.height
    rejects.close()
    if rows_read == 0:
        raise InputError(f"source: {_describe(source)} has no data rows (header only?)")

    unique_path = workdir / "unique.parquet"
    spilled = sorted(workdir.glob("valid-*.parquet"))
    (
        pl.scan_parquet(spilled)
        .unique(subset=WIRE, keep="first", maintain_order=True)
        .sink_parquet(unique_path)
    )
    unique = pl.scan_parquet(unique_path).select(pl.len()).collect().item()
    for path in spilled:
        path.unlink()
    return PreparedInput(
        rows_read=rows_read,
        rows_rejected=rejects.count,
        duplicates_dropped=valid_rows - unique,
        identifiers=unique,
        unique_path=unique_path,
        files=source.files,
        reject_reasons=dict(rejects.reasons),
    )


def _read_chunks(source: SourceFrame, chunk_rows: int):
    try:
        yield from source.frame.collect_batches(chunk_size=chunk_rows)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"source: cannot read {_describe(source)}: {_safe_reason(exc)}") from None


def _describe(source: SourceFrame) -> str:
    return source.files[0] if len(source.files) == 1 else f"{len(source.files)} files"


def _safe_reason(exc: Exception) -> str:
    """polars messages can quote file content; say what kind of problem it is, never the bytes."""
    text = str(exc).lower()
    if "utf-8" in text or "utf8" in text:
        return "not valid UTF-8 text (re-export the file as UTF-8)"
    if "gzip" in text or "decompress" in text or "deflate" in text:
        return "the compressed file is truncated or corrupt"
    if "field" in text or "column" in text or "quote" in text:
        return "malformed CSV (check delimiter and quoting)"
    return f"unreadable input ({type(exc).__name__})"
