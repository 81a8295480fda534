"""Deterministic batches: the same input and config always give the same batches, each with a digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import polars as pl

from pipeline.http.json_body import JsonArray

WIRE = "wire"
SUBJECT = "subject"


@dataclass(frozen=True)
class Batch:
    index: int  # 0-based, stable across runs of the same input
    identifiers: Sequence[str]  # a list, or a polars Series (which polars encodes as JSON: json_identifiers)
    subject: str | None = None  # one-subject endpoints: hex SHA-256 of the normalised identifier
    attributes: dict[str, str] | None = None  # one-subject endpoints: what the request is built from

    @property
    def records(self) -> int:
        return len(self.identifiers)

    @property
    def json_identifiers(self) -> JsonArray:
        """The identifiers as the JSON array a request sends: encoded once, by whichever thread needs it first."""
        cached = self.__dict__.get("_json_identifiers")
        if cached is None:
            cached = JsonArray(self.identifiers)
            object.__setattr__(self, "_json_identifiers", cached)  # a race makes two equal arrays; either will do
        return cached

    @property
    def digest(self) -> str:
        """batch_digest of the identifiers; computed on first use, so in the sending threads, off the data path.

        Cached by hand: on Python 3.11 functools.cached_property holds one lock for every instance, which would
        make the sending threads compute digests one at a time. Two threads may compute the same value twice.
        """
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = self._compute_digest()
            object.__setattr__(self, "_digest", cached)  # frozen dataclass: set once, to the only possible value
        return cached

    def _compute_digest(self) -> str:
        values = self.identifiers
        if isinstance(values, pl.Series):  # the same bytes as batch_digest, joined by polars
            # As Binary, .item() copies the bytes once instead of decoding a str and encoding it again.
            return hashlib.sha256(values.str.join("\n").cast(pl.Binary).item()).hexdigest()
        return batch_digest(list(values))


def batch_digest(identifiers: list[str]) -> str:
    """SHA-256 hex of the batch's wire identifiers in the order sent, joined by newlines.

    In the order sent, not sorted: batches are cut in file order, so the order is as reproducible as the
    content, and not sorting keeps the digest off the data path's bill (a sort of 100,000 identifiers per
    batch was about a tenth of a whole run's CPU).
    """
    return hashlib.sha256("\n".join(identifiers).encode("utf-8")).hexdigest()


def cut_batches(frames: Iterable[pl.DataFrame], batch_size: int) -> Iterator[Batch]:
    """Batches of exactly `batch_size` rows (the last may be smaller), in order, numbered from 0.

    `frames` hold WIRE and, for one-subject endpoints (batch size 1), SUBJECT and the attributes a request is
    built from. Multi-identifier batches keep their identifiers as a Series until a request needs a list.
    """
    index = 0
    if batch_size == 1:
        for frame in frames:
            for row in frame.iter_rows(named=True):
                wire, subject = row.pop(WIRE), row.pop(SUBJECT, None)
                yield Batch(index=index, identifiers=[wire], subject=subject, attributes=row or None)
                index += 1
        return
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    for frame in frames:
        pending.append(frame)
        pending_rows += frame.height
        while pending_rows >= batch_size:
            joined = pl.concat(pending)
            yield Batch(index=index, identifiers=joined.get_column(WIRE).head(batch_size))
            index += 1
            rest = joined.slice(batch_size)
            pending, pending_rows = ([rest] if rest.height else []), rest.height
    if pending_rows:
        yield Batch(index=index, identifiers=pl.concat(pending).get_column(WIRE))


def iter_batches(path: Path, batch_size: int) -> Iterator[Batch]:
    """cut_batches over a Parquet file of request rows (modes that prepare the whole set first)."""
    return cut_batches(pl.scan_parquet(path).collect_batches(chunk_size=max(batch_size, 10_000)), batch_size)

