"""First-occurrence filtering over a stream, in 12 bytes per distinct identifier.

Each wire identifier is keyed by 96 bits: XXH3 (64-bit) under two seeds, `hi` (UInt64) and the low 32 bits of
the second, `lo` (UInt32), computed by polars-hash inside the streaming query. Two different identifiers
share a key with probability about n²/2^97 (10^-15 at ten million rows); even then the only harm is that the
second is not sent, and nothing else is ever dropped.

The stream holds the keys of a file's first rows only (`stream.MEMORY_DEDUPE_ROWS`, 2M: 24 MB and the
filter); the later rows of a larger file are judged by the duplicate pass on disk (`duplicate_rows.py`), keyed
the same way (for a lone email, on the normalised address rather than its hash: one-to-one with it), two
partitions at a time.

The seen keys are kept as the runs the chunks left, each sorted by `hi` (a chunk is sorted anyway, to find its
own repeats), behind a filter of one bit per slot, the slot chosen by the top 25 bits of `hi` (4 MiB). A key
whose bit is clear was never seen; only the others (the chunk's repeats of earlier rows, and 3% of the rest
with 1M keys held) are looked up, by binary search in each run. So most keys are never searched for, and the
state is not copied chunk by chunk: 0.05 s in all at 1M keys and 0.10 s at 2M (`python -m bench.dedupe`),
against 0.09 and 0.19 s for the design before, which kept 64 sorted buckets and merged each chunk into all of
them. Runs are merged 16 at a time, so tiny chunks (a folder of small files) cannot make a lookup search
thousands of runs; at the stream's chunk size, its 2M keys are 16 runs, never merged. It is built for those
2M keys: with more, the filter fills up (10M keys 1.6 s, 30M 13.1 s, against 1.5 and 9.5 s for the buckets).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the .nchash namespace)

HI, LO = "__key_hi", "__key_lo"
_FILTER_BITS = 25
_RUNS_PER_MERGE = 16


def key_columns(wire: pl.Expr, seeds: tuple[int, ...]) -> list[pl.Expr]:
    """`hi` and `lo` of each wire identifier (null where the identifier is null), under the run's two seeds."""
    return [
        wire.nchash.xxh3_64(seed=seeds[0]).alias(HI),
        wire.nchash.xxh3_64(seed=seeds[1]).cast(pl.UInt32, wrap_numerical=True).alias(LO),
    ]


class SeenKeys:
    def __init__(self, filter_bits: int = _FILTER_BITS) -> None:
        assert 6 <= filter_bits <= 64, filter_bits  # a slot is chosen by hi's top bits, 64 slots to a word
        self._filter = np.zeros(1 << (filter_bits - 6), dtype=np.uint64)
        self._slot_shift = np.uint64(64 - filter_bits)
        self._runs: list[tuple[int, np.ndarray, np.ndarray]] = []  # (generation, hi sorted, lo)

    @property
    def nbytes(self) -> int:
        """The state's size: the filter and every run."""
        return self._filter.nbytes + sum(run_hi.nbytes + run_lo.nbytes for _, run_hi, run_lo in self._runs)

    def first_seen(self, keys: pl.DataFrame) -> pl.Series:
        """True for each row whose key was seen neither earlier in `keys` nor in any earlier call."""
        hi = keys[HI].to_numpy()
        lo = keys[LO].to_numpy()
        order = _file_order_within_keys(hi, lo)
        hi, lo = hi[order], lo[order]
        fresh = np.ones(len(hi), dtype=bool)
        fresh[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])  # the first of equal keys is the earliest row
        slot = hi >> self._slot_shift
        word, bit = slot >> np.uint64(6), np.left_shift(np.uint64(1), slot & np.uint64(63))
        maybe_seen = np.flatnonzero(fresh & ((self._filter[word] & bit) != 0))
        if len(maybe_seen):
            fresh[maybe_seen[self._held(hi[maybe_seen], lo[maybe_seen])]] = False
        np.bitwise_or.at(self._filter, word[fresh], bit[fresh])
        if fresh.any():
            self._add_run(hi[fresh], lo[fresh])
        in_file_order = np.empty_like(fresh)
        in_file_order[order] = fresh
        return pl.Series(in_file_order)

    def _held(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Which of the keys any run holds."""
        found = np.zeros(len(hi), dtype=bool)
        for _, run_hi, run_lo in self._runs:
            found |= _in_run(run_hi, run_lo, hi, lo)
        return found

    def _add_run(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """Appends a run (never empty), first merging the newest _RUNS_PER_MERGE runs into one of the next generation
        while they are all of one generation: no generation has more than 16 runs, and each run of a generation holds
        the keys of 16 runs of the generation before."""
        runs = self._runs
        while len(runs) >= _RUNS_PER_MERGE and len({generation for generation, _, _ in runs[-_RUNS_PER_MERGE:]}) == 1:
            merged, runs[-_RUNS_PER_MERGE:] = runs[-_RUNS_PER_MERGE:], []
            all_hi = np.concatenate([run_hi for _, run_hi, _ in merged])
            all_lo = np.concatenate([run_lo for _, _, run_lo in merged])
            by_hi = np.argsort(all_hi)  # keys that share a hi end up side by side (lo in any order): _in_run needs that
            runs.append((merged[0][0] + 1, all_hi[by_hi], all_lo[by_hi]))
        runs.append((0, hi, lo))


def _in_run(run_hi: np.ndarray, run_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which keys the run holds (a run is never empty; `run_hi` sorted, so keys that share a hi sit side by side)."""
    first = np.searchsorted(run_hi, hi, side="left")
    at = np.minimum(first, len(run_hi) - 1)
    same_hi = run_hi[at] == hi
    found = same_hi & (run_lo[at] == lo)
    # Keys that share a hi (different identifiers, about once in 2^64) sit side by side, their lo in any order
    # once runs are merged: check them all.
    for row in np.flatnonzero(same_hi & ~found):
        last = np.searchsorted(run_hi, hi[row], side="right")
        found[row] = bool((run_lo[first[row]:last] == lo[row]).any())
    return found


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
