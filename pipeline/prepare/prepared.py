"""How an endpoint turns rows into requests (RowPlan), and what a fully prepared input is (PreparedInput).

The data path itself is pipeline.prepare.stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from pipeline.batching import SUBJECT, WIRE
from pipeline.prepare.hashing import WireEncoding, wire_identifier
from pipeline.prepare.normalise import normalise_email, normalise_token, strip_hash
from pipeline.prepare.schemas import RowRule

# Rows per chunk of the stream. 125,000 rather than 250,000 since the stream reads in windows and deduplicates
# in memory only its first rows: 10M-row CSV dry run 4.8-4.9 s and 529-575 MiB against 5.3-5.4 s and 607-615 MiB
# (two runs each, back to back); still more than one batch, so the first chunk alone fills the first request.
CHUNK_ROWS = 125_000

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
    row_rules: list[RowRule] = field(default_factory=list)
    attributes: tuple[str, ...] = ()
    derived: dict[str, pl.Expr] = field(default_factory=dict)  # columns added before validation
    supersede: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None
    # WIRE is a one-to-one function of the normalised email alone, so rows can be told apart by the address itself
    # (the duplicate pass then skips the hashing). Set only where that is so.
    wire_follows_email: bool = False


def single_identifier_plan(role: str, encoding: WireEncoding, with_subject: bool) -> RowPlan:
    """One identifier column per row: the audience, deletion and unsubscribe endpoints."""
    outputs = [wire_identifier(role, encoding).alias(WIRE)]
    if with_subject:
        outputs.append(wire_identifier(role, "hex").alias(SUBJECT))
    # The SHA-256 of an address, in hex or base64, or the address itself; not a pre-hashed value (hex in either case).
    return RowPlan(roles=[role], outputs=outputs, wire_follows_email=role == "email")


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


def safe_reason(exc: Exception) -> str:
    """polars messages can quote file content; say what kind of problem it is, never the bytes."""
    if isinstance(exc, pl.exceptions.PanicException):  # polars gave up on bytes it could not decode
        return "the file is corrupt (it could not be decoded)"
    text = str(exc).lower()
    if "utf-8" in text or "utf8" in text:
        return "not valid UTF-8 text (re-export the file as UTF-8)"
    if any(word in text for word in ("gzip", "decompress", "deflate", "unexpected end of file", "eof")):
        return "the compressed file is truncated or corrupt"
    if "field" in text or "column" in text or "quote" in text:
        return "malformed CSV (check delimiter and quoting)"
    return f"unreadable input ({type(exc).__name__})"
