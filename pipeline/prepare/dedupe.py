"""First-occurrence filtering over a stream, in 12 bytes per distinct identifier.

Each identifier is keyed by 92 bits of its SHA-256: a 60-bit `hi` (Int64) and a 32-bit `lo` (UInt32). Two
different identifiers share a key with probability about n²/2^93 (10^-14 at ten million rows), and even
then the only harm is that the second is not sent twice; nothing else is ever dropped.

The seen keys live in 256 buckets chosen by the top bits of `hi`, each a pair of arrays sorted by `hi`.
A chunk is sorted once, each bucket is probed by binary search and grows by an in-place merge of its new
keys, so the work per chunk is a few vectorised numpy calls per bucket, and adding keys never copies more
than one bucket (no transient doubling of the whole state, as one sorted array would need).
"""

from __future__ import annotations

import numpy as np
import polars as pl

HI, LO = "__key_hi", "__key_lo"
_HI_BITS = 60
_BUCKET_BITS = 8
_BUCKETS = 1 << _BUCKET_BITS


def key_columns(sha256_hex: pl.Expr) -> list[pl.Expr]:
    """`hi` and `lo` from the first 92 bits of a hex SHA-256.

    Non-strict: the stream computes keys for every row before validation drops the invalid ones, whose
    "hash" may be anything; their key is null, never an error that would stop the chunk.
    """
    return [
        sha256_hex.str.slice(0, _HI_BITS // 4).str.to_integer(base=16, strict=False).alias(HI),
        sha256_hex.str.slice(_HI_BITS // 4, 8).str.to_integer(base=16, strict=False).cast(pl.UInt32).alias(LO),
    ]


class SeenKeys:
    def __init__(self) -> None:
        self._hi = [np.empty(0, dtype=np.int64) for _ in range(_BUCKETS)]
        self._lo = [np.empty(0, dtype=np.uint32) for _ in range(_BUCKETS)]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._hi)

    def first_seen(self, keys: pl.DataFrame) -> pl.Series:
        """True for each row whose key was seen neither earlier in `keys` nor in any earlier call."""
        hi = keys[HI].to_numpy()
        lo = keys[LO].to_numpy()
        order = _file_order_within_keys(hi, lo)
        hi, lo = hi[order], lo[order]
        fresh = np.ones(len(hi), dtype=bool)
        fresh[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])  # the first of equal keys is the earliest row
        bounds = np.searchsorted(hi >> (_HI_BITS - _BUCKET_BITS), np.arange(_BUCKETS + 1))
        for bucket in np.flatnonzero(bounds[1:] > bounds[:-1]):
            start, stop = bounds[bucket], bounds[bucket + 1]
            found, where = self._probe(bucket, hi[start:stop], lo[start:stop])
            new = fresh[start:stop] & ~found
            fresh[start:stop] = new
            if new.any():
                self._hi[bucket] = np.insert(self._hi[bucket], where[new], hi[start:stop][new])
                self._lo[bucket] = np.insert(self._lo[bucket], where[new], lo[start:stop][new])
        in_file_order = np.empty_like(fresh)
        in_file_order[order] = fresh
        return pl.Series(in_file_order)

    def _probe(self, bucket: int, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which keys the bucket holds, and where each key would be inserted to keep it sorted."""
        seen_hi, seen_lo = self._hi[bucket], self._lo[bucket]
        first = np.searchsorted(seen_hi, hi, side="left")
        if not len(seen_hi):
            return np.zeros(len(hi), dtype=bool), first
        at = np.minimum(first, len(seen_hi) - 1)
        same_hi = seen_hi[at] == hi
        found = same_hi & (seen_lo[at] == lo)
        # Keys that share a hi (different identifiers, about once in 2^60) sit side by side: check them all.
        for row in np.flatnonzero(same_hi & ~found):
            last = np.searchsorted(seen_hi, hi[row], side="right")
            found[row] = bool((seen_lo[first[row]:last] == lo[row]).any())
        return found, first


def _file_order_within_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A permutation sorting the rows by (hi, lo, position in the chunk).

    An unstable sort by `hi` alone does most of the work (fast); only the rows that share a hi with another
    (duplicates, a few percent) are then put in (lo, position) order, so each identifier's first row leads.
    """
    order = np.argsort(hi)
    sorted_hi = hi[order]
    same_as_next = sorted_hi[1:] == sorted_hi[:-1]
    shared = np.zeros(len(hi), dtype=bool)
    shared[1:] |= same_as_next
    shared[:-1] |= same_as_next
    rows = np.flatnonzero(shared)
    if len(rows):
        members = order[rows]
        order[rows] = members[np.lexsort((members, lo[members], hi[members]))]
    return order
