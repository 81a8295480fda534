"""Which rows repeat an earlier row's identifier: one pass over the whole source, in memory that does not grow with it.

The stream deduplicates its first rows in memory (`SeenKeys`, 12 bytes a key and a 4 MiB filter) and asks this pass
about the rest, so a file of any size needs no more than that prefix's keys in memory. Every keyed row's key and
position go to one of 8 to 256 partition files by the top bits of its key, in file order; each partition is then
small enough to deduplicate in memory on its own, and the positions of the rows that are not first go into a bitmap
of one bit per row. At 10M rows: 64 partitions of about 3 MB, two at a time, and a 1.2 MB bitmap, against 111 MiB of
keys held for the whole run before; on disk, 20 bytes per keyed row in the run's temporary folder, each partition
deleted as soon as it is read.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import polars as pl

from pipeline.errors import InputError, PipelineError, source_changed
from pipeline.prepare.dedupe import HI, LO

_RECORD = np.dtype([("hi", "<u8"), ("lo", "<u4"), ("position", "<u8")])
# Rows per partition, 100,000 to 200,000 (2-4 MB of records read back at a time). Deduplicating a partition takes
# several times its size, two at once, while the stream runs: with twice this, the resolve phase held 27 MiB more
# (5M rows), and the 5M-row dry run peaked 8 MiB higher (medians of four) in the same time.
_ROWS_PER_PARTITION = 100_000
_MOST_PARTITIONS = 256  # open files at once; beyond 25.6M rows the partitions grow instead (80 MB each at 1G rows)


class DuplicateRows:
    """One bit per row from `first_position` on: set where the row repeats an earlier valid row's identifier."""

    def __init__(self, bits: np.ndarray, first_position: int, rows: int):
        self._bits, self.first_position, self.rows = bits, first_position, rows

    def repeated(self, positions: np.ndarray) -> np.ndarray:
        """True for each position (all at or after first_position, before rows) whose row repeats an earlier one."""
        offsets = positions.astype(np.uint64) - np.uint64(self.first_position)
        return ((self._bits[offsets >> np.uint64(3)] >> (offsets & np.uint64(7)).astype(np.uint8)) & 1).astype(bool)


def find_duplicate_rows(chunks: Iterable[pl.DataFrame], valid: str, rows: int, first_position: int, folder: Path,
                        stop: threading.Event) -> DuplicateRows:
    """Mark the repeated rows among `chunks` (HI, LO and the `valid` flag of every row, in file order; `rows` of
    them, as counted when the file was judged). Only valid rows count, as first occurrences or as repeats."""
    partitions = _partitions(rows)
    shift = np.uint64(64 - (partitions.bit_length() - 1))
    paths = [folder / f"keys-{p:04d}.bin" for p in range(partitions)]
    position = 0
    with ExitStack() as files:
        with _temporary(folder, rows):
            folder.mkdir(parents=True, exist_ok=True)
            handles = [files.enter_context(open(path, "wb")) for path in paths]
        for chunk in chunks:  # a failure to read the source is the source's: not caught here
            _unless_stopped(stop)
            is_valid = chunk.get_column(valid)
            where = np.flatnonzero(is_valid.to_numpy())
            keys = chunk.select(HI, LO).filter(is_valid)  # before to_numpy: with nulls it would give floats
            hi = keys.get_column(HI).to_numpy()
            partition = (hi >> shift).astype(np.uint16)
            order = np.argsort(partition, kind="stable")  # stable (a radix sort): each partition stays in file order
            partition = partition[order]
            # Each field reordered on its own: a fancy-indexed take of the 20-byte records cost three times as much.
            records = np.empty(len(where), dtype=_RECORD)
            records["hi"], records["lo"] = hi[order], keys.get_column(LO).to_numpy()[order]
            records["position"] = where[order] + position
            bounds = np.searchsorted(partition, np.arange(partitions + 1, dtype=np.uint16))
            with _temporary(folder, rows):
                for p in np.flatnonzero(bounds[1:] > bounds[:-1]):
                    records[bounds[p]:bounds[p + 1]].tofile(handles[p])
            position += chunk.height
        with _temporary(folder, rows):  # a late write error (a full network disk) surfaces at close
            files.close()
    if position != rows:
        raise source_changed(f"{rows:,} rows when the file was judged and {position:,} when it was read for duplicates")

    def repeats(path: Path) -> np.ndarray:
        """Offsets from first_position of the partition's rows that repeat an earlier row's key."""
        _unless_stopped(stop)  # the pool's threads are joined at interpreter exit: a stopped pass must not hold it up
        with _temporary(folder, rows):
            records = np.fromfile(path, dtype=_RECORD)
            path.unlink()
        if not len(records):
            return np.empty(0, dtype=np.uint64)
        first = pl.DataFrame({HI: records["hi"], LO: records["lo"]}).select(
            (pl.col(HI).cast(pl.UInt128) * (1 << 32) + pl.col(LO)).is_first_distinct()).to_series().to_numpy()
        repeated = records["position"][~first]
        return repeated[repeated >= first_position] - np.uint64(first_position)

    bits = np.zeros((rows - first_position) // 8 + 1, dtype=np.uint8)
    # Two partitions at a time: the stream waits for this, so the second core was idle (10M rows: 0.5 s at one core).
    pool = ThreadPoolExecutor(2, thread_name_prefix="duplicate-partitions")
    try:
        for offsets in pool.map(repeats, paths):  # the bitmap is set here alone: partitions share its bytes
            np.bitwise_or.at(bits, offsets >> np.uint64(3), np.left_shift(1, offsets & np.uint64(7)).astype(np.uint8))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, the partitions not yet started are not read
    return DuplicateRows(bits, first_position, rows)


def _unless_stopped(stop: threading.Event) -> None:
    if stop.is_set():
        raise InputError("source: the duplicate pass was stopped")


@contextmanager
def _temporary(folder: Path, rows: int) -> Iterator[None]:
    """The pass's own files: a failure there is the machine's (space, permissions), never the source's."""
    try:
        yield
    except OSError as exc:
        raise PipelineError(
            f"duplicate pass: cannot use {folder} ({exc.strerror or type(exc).__name__}); it needs about "
            f"{rows * _RECORD.itemsize / 1e6:,.0f} MB free for a file of {rows:,} rows: free some, or point TMPDIR at "
            "a larger disk, and run again with the same --run-id to resume") from None


def _partitions(rows: int) -> int:
    """A power of two from 8 to _MOST_PARTITIONS, about one partition per _ROWS_PER_PARTITION rows."""
    wanted = max(8, min(_MOST_PARTITIONS, rows // _ROWS_PER_PARTITION))
    return 1 << (wanted.bit_length() - 1)
