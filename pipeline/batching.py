"""Deterministic batches: the same input and config always give the same batches, each with a digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import polars as pl

WIRE = "wire"
SUBJECT = "subject"


@dataclass(frozen=True)
class Batch:
    index: int  # 0-based, stable across runs of the same input
    identifiers: Sequence[str]  # a list, or a polars Series (turned into a list only when a request is built)
    digest: str
    subject: str | None = None  # one-subject endpoints: hex SHA-256 of the normalised identifier
    attributes: dict[str, str] | None = None  # one-subject endpoints: what the request is built from

    @property
    def records(self) -> int:
        return len(self.identifiers)

    def identifier_list(self) -> list[str]:
        """The identifiers for a request body; called in the sending thread, off the data path."""
        values = self.identifiers
        return values.to_list() if isinstance(values, pl.Series) else list(values)


def batch_digest(identifiers: list[str]) -> str:
    """SHA-256 hex of the batch's wire identifiers, sorted, joined by newlines: order-independent."""
    return hashlib.sha256("\n".join(sorted(identifiers)).encode("utf-8")).hexdigest()


def iter_batches(unique_identifiers: Path, batch_size: int) -> Iterator[Batch]:
    """Exactly `batch_size` identifiers per batch (the last may be smaller), in file order."""
    frame = pl.scan_parquet(unique_identifiers)
    if batch_size == 1 and SUBJECT in frame.collect_schema():
        yield from _one_subject_batches(frame)
        return
    pending: list[pl.Series] = []
    pending_rows = 0
    index = 0
    for chunk in frame.collect_batches(chunk_size=max(batch_size, 10_000)):
        pending.append(chunk.get_column(WIRE))
        pending_rows += chunk.height
        while pending_rows >= batch_size:
            joined = pl.concat(pending)
            yield _batch(index, joined.head(batch_size))
            index += 1
            rest = joined.slice(batch_size)
            pending, pending_rows = ([rest] if rest.len() else []), rest.len()
    if pending_rows:
        yield _batch(index, pl.concat(pending))


def _one_subject_batches(frame: pl.LazyFrame) -> Iterator[Batch]:
    index = 0
    for chunk in frame.collect_batches(chunk_size=10_000):
        for row in chunk.iter_rows(named=True):
            wire, subject = row.pop(WIRE), row.pop(SUBJECT)
            yield Batch(index=index, identifiers=[wire], digest=batch_digest([wire]), subject=subject, attributes=row or None)
            index += 1


def _batch(index: int, identifiers: pl.Series) -> Batch:
    values = identifiers.to_list()
    return Batch(index=index, identifiers=values, digest=batch_digest(values))


def count_batches(identifiers: int, batch_size: int) -> int:
    return -(-identifiers // batch_size)
