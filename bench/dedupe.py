"""How the in-memory dedupe (pipeline/prepare/dedupe.py) scales with the identifiers already seen.

Feeds `SeenKeys.first_seen` random 96-bit keys chunk by chunk, 2% of each chunk repeating keys of the first
one, and prints the seconds spent in it and the state it keeps. Not part of `make bench`: the prepare items
measure the dedupe inside the whole data path; this one isolates it, to judge a change of its design. The
stream keeps only a file's first 2M rows' keys this way (the rest go through the duplicate pass on disk), so
the sizes beyond that show why it does not keep more.

    python -m bench.dedupe                          # 1M, 10M and 30M keys in chunks of the stream's size
    python -m bench.dedupe 10M --chunk 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from bench.__main__ import _row_list, machine
from bench.table import rows_label, table
from pipeline.prepare.dedupe import HI, LO, SeenKeys
from pipeline.prepare.prepared import CHUNK_ROWS

REPEATED_SHARE = 0.02


def _keys(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 2**64, rows, dtype=np.uint64, endpoint=False), rng.integers(0, 2**32, rows, dtype=np.uint32)


def measure(keys: int, chunk: int) -> tuple[float, int, int]:
    """(seconds in first_seen, keys it kept, bytes of its state) for `keys` keys fed `chunk` at a time."""
    rng = np.random.default_rng(7)
    seen = SeenKeys()
    first_hi = first_lo = None
    spent, kept = 0.0, 0
    for start in range(0, keys, chunk):
        rows = min(chunk, keys - start)
        hi, lo = _keys(rng, rows)
        if first_hi is None:
            first_hi, first_lo = hi.copy(), lo.copy()
        else:
            repeats = int(rows * REPEATED_SHARE)
            at, of = rng.integers(0, rows, repeats), rng.integers(0, len(first_hi), repeats)
            hi[at], lo[at] = first_hi[of], first_lo[of]
        frame = pl.DataFrame({HI: hi, LO: lo})
        started = time.perf_counter()
        fresh = seen.first_seen(frame)
        spent += time.perf_counter() - started
        kept += int(fresh.sum())
    return spent, kept, seen.nbytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedupe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="?", default="1M,10M,30M", help="keys fed in all, comma-separated (default 1M,10M,30M)")
    parser.add_argument("--chunk", type=int, default=CHUNK_ROWS, help=f"keys per call (default {CHUNK_ROWS:,}, the pipeline's chunk)")
    args = parser.parse_args(argv)
    rows = []
    for keys in _row_list(args.sizes):
        spent, kept, state = measure(keys, args.chunk)
        rows.append([rows_label(keys), f"{args.chunk:,}", f"{spent:.2f} s", f"{kept / spent / 1e6:.1f}M keys/s",
                     f"{state / 2**20:.0f} MiB"])
    print(machine())
    print(table("Exact dedupe alone (SeenKeys.first_seen)", ["keys", "chunk", "in first_seen", "rate", "state kept"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
