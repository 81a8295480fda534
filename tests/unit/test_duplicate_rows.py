"""The duplicate pass on disk marks exactly the valid rows whose key an earlier valid row already had."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError, PipelineError
from pipeline.prepare.dedupe import HI, LO
from pipeline.prepare.duplicate_rows import find_duplicate_rows

VALID = "valid"


def _chunks(hi: np.ndarray, lo: np.ndarray, valid: np.ndarray, size: int) -> list[pl.DataFrame]:
    """Chunks of `size` rows; an invalid row whose key is 0 has no key at all (null), as a missing identifier."""
    frame = pl.DataFrame({HI: hi, LO: lo, VALID: valid}, schema={HI: pl.UInt64, LO: pl.UInt32, VALID: pl.Boolean})
    missing = ~pl.col(VALID) & (pl.col(HI) == 0)
    frame = frame.with_columns(pl.when(~missing).then(pl.col(key)).alias(key) for key in (HI, LO))
    return [frame.slice(start, size) for start in range(0, frame.height, size)]


def _ten_distinct_rows() -> list[pl.DataFrame]:
    hi = np.arange(10, dtype=np.uint64)
    return _chunks(hi, hi.astype(np.uint32), np.ones(10, dtype=bool), 4)


def _expected(hi: np.ndarray, lo: np.ndarray, valid: np.ndarray) -> np.ndarray:
    seen: set[tuple[int, int]] = set()
    repeated = np.zeros(len(hi), dtype=bool)
    for row, key in enumerate(zip(hi.tolist(), lo.tolist())):
        if valid[row]:
            repeated[row] = key in seen
            seen.add(key)
    return repeated


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.booleans()), min_size=1, max_size=60),
       st.integers(1, 7), st.data())
def test_marks_exactly_the_repeats_of_earlier_valid_rows(tmp_path_factory, rows, chunk, data) -> None:
    # Few distinct values, spread over the whole 64-bit range so they land in different partitions, and keys that
    # share `hi` but not `lo` (different identifiers): repeats, invalid rows before valid ones, all of it.
    hi = np.array([value * 0x2F00_0000_0000_0001 for value, _, _ in rows], dtype=np.uint64)
    lo = np.array([second for _, second, _ in rows], dtype=np.uint32)
    valid = np.array([ok for _, _, ok in rows], dtype=bool)
    first_position = data.draw(st.integers(0, len(rows) - 1))
    found = find_duplicate_rows(_chunks(hi, lo, valid, chunk), VALID, len(rows), first_position,
                                tmp_path_factory.mktemp("duplicates"), threading.Event())
    positions = np.arange(first_position, len(rows))
    assert found.repeated(positions).tolist() == _expected(hi, lo, valid)[first_position:].tolist()


def test_many_rows_in_many_partitions(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rows = 1_700_000  # 8 partitions; about a third of the rows repeat an earlier key
    hi = rng.integers(0, 600_000, rows, dtype=np.uint64) * np.uint64(0x9E37_79B9_7F4A_7C15)
    lo = (hi % np.uint64(7)).astype(np.uint32)
    valid = rng.random(rows) > 0.05
    found = find_duplicate_rows(_chunks(hi, lo, valid, 250_000), VALID, rows, 100_000, tmp_path, threading.Event())
    expected = pl.DataFrame({HI: hi, LO: lo, VALID: valid}).with_row_index().filter(pl.col(VALID)).select(
        "index", first=pl.struct(HI, LO).is_first_distinct())
    repeated = np.zeros(rows, dtype=bool)
    repeated[expected["index"].to_numpy()] = ~expected["first"].to_numpy()
    assert np.array_equal(found.repeated(np.arange(100_000, rows)), repeated[100_000:])
    assert not list(tmp_path.iterdir())  # each partition is deleted once read


def test_a_file_that_changed_since_it_was_judged_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="rewritten during the run"):
        find_duplicate_rows(_ten_distinct_rows(), VALID, 12, 0, tmp_path, threading.Event())


def test_stops_when_the_stream_has_ended(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(InputError, match="stopped"):
        find_duplicate_rows(_ten_distinct_rows(), VALID, 10, 0, tmp_path, stop)


def test_stops_between_partitions_when_the_stream_ends_after_the_read(tmp_path: Path) -> None:
    stop = threading.Event()

    def read_then_stream_ends():  # noqa: ANN202
        yield from _ten_distinct_rows()
        stop.set()

    with pytest.raises(InputError, match="stopped"):
        find_duplicate_rows(read_then_stream_ends(), VALID, 10, 0, tmp_path, stop)


def test_a_folder_it_cannot_write_is_the_machines_problem_not_the_files(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PipelineError, match="duplicate pass: cannot use .*TMPDIR") as raised:
        find_duplicate_rows(_ten_distinct_rows(), VALID, 10, 0, tmp_path / "a-file" / "duplicates", threading.Event())
    assert not isinstance(raised.value, InputError)


def test_partitions_stay_few_enough_to_keep_open_at_once() -> None:
    from pipeline.prepare.duplicate_rows import _partitions

    assert [_partitions(rows) for rows in (1_000_000, 3_000_000, 10_000_000, 10**9)] == [8, 16, 64, 256]
