"""SeenKeys.first_seen is exact, whatever its filter lets through and however its runs were merged.

The filter is made tiny here (64 or 128 slots), so nearly every key is looked up in the runs; keys are drawn
from a few `hi` values, so different keys often share a hi; and chunks are small and many, so runs are merged,
and keys that share a hi end up in merged runs in any order of their lo. The answer must be the reference's: True
exactly for the first row of each key.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.prepare.dedupe import HI, LO, SeenKeys

# Top bits vary (the filter's slot) and some values differ only in their low bits (same slot, different hi).
HIS = [0, 1, 2**63, 2**63 + 1, 2**64 - 1, 0x0123_4567_89AB_CDEF, 0x0123_4567_89AB_CDEE, 2**58]
keys = st.tuples(st.sampled_from(HIS) | st.integers(0, 2**64 - 1), st.integers(0, 3))


def first_rows(rows: list[tuple[int, int]]) -> list[bool]:
    seen: set[tuple[int, int]] = set()
    first = []
    for key in rows:
        first.append(key not in seen)
        seen.add(key)
    return first


def first_seen_in_chunks(rows: list[tuple[int, int]], chunk_sizes: list[int], filter_bits: int) -> list[bool]:
    seen, answers, start, turn = SeenKeys(filter_bits), [], 0, 0
    while start < len(rows):
        size = chunk_sizes[turn % len(chunk_sizes)]
        chunk = rows[start:start + size]
        frame = pl.DataFrame({HI: [h for h, _ in chunk], LO: [lo for _, lo in chunk]},
                             schema={HI: pl.UInt64, LO: pl.UInt32})
        answers += seen.first_seen(frame).to_list()
        start, turn = start + size, turn + 1
    return answers


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(keys, min_size=1, max_size=300), st.lists(st.integers(1, 7), min_size=1, max_size=4),
       st.sampled_from([6, 7]))
def test_exactly_the_first_row_of_each_key_is_fresh(rows, chunk_sizes, filter_bits) -> None:
    assert first_seen_in_chunks(rows, chunk_sizes, filter_bits) == first_rows(rows)


def test_keys_that_share_a_hi_are_found_in_merged_runs() -> None:
    """2,000 rows of about 600 keys on 20 hi values, in chunks of 1 to 3 rows: runs of three generations, each hi
    shared by up to 30 keys whose lo a merge leaves in any order."""
    rng = np.random.default_rng(4)
    his = rng.integers(0, 2**64, 20, dtype=np.uint64, endpoint=False)
    rows = [(int(his[h]), int(lo)) for h, lo in zip(rng.integers(0, 20, 2000), rng.integers(0, 30, 2000))]
    assert first_seen_in_chunks(rows, [1, 2, 3], 6) == first_rows(rows)


def test_runs_of_every_generation_are_searched() -> None:
    """600 one-row chunks leave runs of three generations (16 x 16 merged twice over); each key comes back once."""
    rng = np.random.default_rng(3)
    distinct = [(int(h), int(lo)) for h, lo in zip(rng.integers(0, 2**64, 300, dtype=np.uint64, endpoint=False),
                                                   rng.integers(0, 2**32, 300, dtype=np.uint32))]
    rows = distinct + distinct[::-1]
    assert first_seen_in_chunks(rows, [1], 6) == [True] * 300 + [False] * 300
