"""First-occurrence filtering over a stream, in 16 bytes per distinct identifier plus a fixed 64 MiB filter.

Each identifier is keyed by 120 bits of its SHA-256 (two Int64 columns). A Bloom filter answers "certainly
not seen" for almost every new identifier in a few vectorised operations; only its positives (true
duplicates and a small share of false positives) are checked exactly against the seen keys, which live in
sorted runs (consolidated when there are too many) and probed by binary search. Two different identifiers
whose keys share the first 60 bits can at worst make the second look new (a harmless second send), never
make a new identifier look like a duplicate.
"""

from __future__ import annotations

import numpy as np
import polars as pl

HI, LO = "__key_hi", "__key_lo"
MAX_RUNS = 32
BLOOM_SLOTS = 1 << 26  # one byte each (64 MiB): about 7% false positives at 10M distinct identifiers, two probes


def key_columns(sha256_hex: pl.Expr) -> list[pl.Expr]:
    """Two Int64 columns from the first 120 bits of a hex SHA-256.

    Non-strict: the stream computes keys for every row before validation drops the invalid ones, whose
    "hash" may be anything; their key is null, never an error that would stop the chunk.
    """
    return [
        sha256_hex.str.slice(0, 15).str.to_integer(base=16, strict=False).alias(HI),
        sha256_hex.str.slice(15, 15).str.to_integer(base=16, strict=False).alias(LO),
    ]


class _Bloom:
    """A byte per slot rather than a bit: setting is one vectorised assignment (bits would need a slow ufunc.at)."""

    def __init__(self, slots: int = BLOOM_SLOTS):
        self._slots = np.zeros(slots, dtype=np.uint8)
        self._mask = np.uint64(slots - 1)

    def _positions(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The key bits are SHA-256 bits: already uniform, so two slices of them are two independent hashes.
        return (keys & self._mask).astype(np.int64), ((keys >> np.uint64(30)) & self._mask).astype(np.int64)

    def maybe_contains(self, keys: np.ndarray) -> np.ndarray:
        first, second = self._positions(keys)
        return (self._slots[first] & self._slots[second]).astype(bool)

    def add(self, keys: np.ndarray) -> None:
        first, second = self._positions(keys)
        self._slots[first] = 1
        self._slots[second] = 1


class SeenKeys:
    def __init__(self, bloom_slots: int = BLOOM_SLOTS) -> None:
        self._bloom = _Bloom(bloom_slots)
        self._runs: list[pl.DataFrame] = []  # each sorted by HI: one per chunk, consolidated past MAX_RUNS

    def __len__(self) -> int:
        return sum(run.height for run in self._runs)

    def first_seen(self, keys: pl.DataFrame) -> pl.Series:
        """True for each row whose key was seen neither earlier in `keys` nor in any earlier call."""
        packed = pl.col(HI).cast(pl.Int128) * (1 << 60) + pl.col(LO)
        new = keys.select(packed.is_first_distinct()).to_series().to_numpy().copy()
        hi = keys[HI].to_numpy().astype(np.uint64)
        check = np.flatnonzero(new & self._bloom.maybe_contains(hi))
        if len(check) and self._runs:
            suspects = keys[check]
            found = np.zeros(len(check), dtype=bool)
            for run in self._runs:
                found |= self._found(run, suspects).to_numpy()
            new[check[found]] = False
        fresh = keys.filter(pl.Series(new))
        if fresh.height:
            self._bloom.add(fresh[HI].to_numpy().astype(np.uint64))
            self._add(fresh.sort(HI))
        return pl.Series(new)

    @staticmethod
    def _found(run: pl.DataFrame, keys: pl.DataFrame) -> pl.Series:
        position = run[HI].search_sorted(keys[HI], side="left").clip(0, run.height - 1)
        return (run[HI].gather(position) == keys[HI]) & (run[LO].gather(position) == keys[LO])

    def _add(self, run: pl.DataFrame) -> None:
        self._runs.append(run)
        # Only Bloom positives (a few percent of keys) are searched, so many small runs cost little; they are
        # consolidated into one sorted run when there are too many to probe cheaply.
        if len(self._runs) > MAX_RUNS:
            self._runs = [pl.concat(self._runs).sort(HI)]
