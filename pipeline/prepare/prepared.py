"""Source -> validated, normalised, hashed, de-duplicated requests, in bounded memory.

The source is read in chunks; each chunk is validated as a DataFrame (pandera checks data only on
DataFrames), invalid rows go to rejects, valid ones become request columns spilled to Parquet.
De-duplication and batching then stream over the spill, so memory depends on the chunk size, not on the
file size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandera.polars as pa
import polars as pl

from pipeline.batching import SUBJECT, WIRE
from pipeline.errors import InputError
from pipeline.prepare.hashing import WireEncoding, wire_identifier
from pipeline.prepare.normalise import normalise_email, normalise_token, strip_hash
from pipeline.prepare.schemas import failing_rows
from pipeline.rejects import RejectsWriter
from pipeline.sources.local import SourceFrame

CHUNK_ROWS = 250_000

Normaliser = Callable[[str], pl.Expr]
DEFAULT_NORMALISERS: dict[str, Normaliser] = {
    "email": normalise_email,
    "sha256": strip_hash,
    "account_id": normalise_token,
    "request_type": lambda role: normalise_token(role).str.to_uppercase(),
}


@dataclass(frozen=True)
class RowPlan:
    """How an endpoint turns valid rows into requests.

    `outputs` must produce WIRE (the de-duplication key, and what batch endpoints send); it may produce
    SUBJECT and the `attributes` one-subject requests are built from. `supersede` runs after
    de-duplication and drops requests made redundant by others (it returns the frame it keeps).
    """

    roles: list[str]
    outputs: list[pl.Expr]
    normalisers: dict[str, Normaliser] = field(default_factory=dict)
    nullable: bool = False
    row_checks: list[pa.Check] = field(default_factory=list)
    attributes: tuple[str, ...] = ()
    derived: dict[str, pl.Expr] = field(default_factory=dict)  # columns added before validation
    supersede: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None


def single_identifier_plan(role: str, encoding: WireEncoding, with_subject: bool) -> RowPlan:
    """One identifier column per row: the audience, deletion and unsubscribe endpoints."""
    outputs = [wire_identifier(role, encoding).alias(WIRE)]
    if with_subject:
        outputs.append(wire_identifier(role, "hex").alias(SUBJECT))
    return RowPlan(roles=[role], outputs=outputs)


@dataclass(frozen=True)
class PreparedInput:
    rows_read: int
    rows_rejected: int
    duplicates_dropped: int
    superseded: int
    identifiers: int
    unique_path: Path
    files: tuple[str, ...]
    reject_reasons: dict[str, int]
    fingerprint: tuple[dict[str, object], ...] = ()


def prepare_input(source: SourceFrame, plan: RowPlan, workdir: Path, rejects: RejectsWriter, chunk_rows: int = CHUNK_ROWS) -> PreparedInput:
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.parquet"):
        stale.unlink()
    normalisers = {**DEFAULT_NORMALISERS, **plan.normalisers}
    mapped = [role for role in plan.roles if role in source.columns]
    validated = [*mapped, *plan.derived]
    rows_read = valid_rows = 0
    for number, raw in enumerate(_read_chunks(source, chunk_rows)):
        rows_read += raw.height
        # An empty or all-whitespace cell is a missing value, whatever the role.
        normalised = raw.with_columns(normalisers[role](role).replace("", None) for role in mapped)
        normalised = normalised.with_columns(**plan.derived) if plan.derived else normalised
        failures = failing_rows(normalised.select(validated), validated, plan.nullable, plan.row_checks)
        rejects.write(raw, failures)
        valid = normalised.with_row_index("position").join(failures.select("position"), on="position", how="anti")
        requests = valid.select(plan.outputs)
        requests.write_parquet(workdir / f"valid-{number:06d}.parquet")
        valid_rows += requests.height
    rejects.close()
    if rows_read == 0:
        raise InputError(f"source: {_describe(source)} has no data rows (header only?)")

    spilled = sorted(workdir.glob("valid-*.parquet"))
    unique = pl.scan_parquet(spilled).unique(subset=WIRE, keep="first", maintain_order=True)
    distinct_path = workdir / "distinct.parquet"
    unique.sink_parquet(distinct_path)
    distinct = _count(distinct_path)
    unique_path = workdir / "unique.parquet"
    if plan.supersede is not None:
        plan.supersede(pl.scan_parquet(distinct_path)).sink_parquet(unique_path)
        distinct_path.unlink()
    else:
        distinct_path.rename(unique_path)
    identifiers = _count(unique_path)
    for path in spilled:
        path.unlink()
    return PreparedInput(
        rows_read=rows_read,
        rows_rejected=rejects.count,
        duplicates_dropped=valid_rows - distinct,
        superseded=distinct - identifiers,
        identifiers=identifiers,
        unique_path=unique_path,
        files=source.files,
        reject_reasons=dict(rejects.reasons),
        fingerprint=source.fingerprint,
    )


def _count(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def _read_chunks(source: SourceFrame, chunk_rows: int):
    try:
        yield from source.frame.collect_batches(chunk_size=chunk_rows)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"source: cannot read {_describe(source)}: {_safe_reason(exc)}") from None


def _describe(source: SourceFrame) -> str:
    return source.files[0] if len(source.files) == 1 else f"{len(source.files)} files"


def _safe_reason(exc: Exception) -> str:
    """polars messages can quote file content; say what kind of problem it is, never the bytes."""
    text = str(exc).lower()
    if "utf-8" in text or "utf8" in text:
        return "not valid UTF-8 text (re-export the file as UTF-8)"
    if any(word in text for word in ("gzip", "decompress", "deflate", "unexpected end of file", "eof")):
        return "the compressed file is truncated or corrupt"
    if "field" in text or "column" in text or "quote" in text:
        return "malformed CSV (check delimiter and quoting)"
    return f"unreadable input ({type(exc).__name__})"
