"""Item 5: SHA-256 hex and base64 throughput of pipeline.prepare.hashing, per core.

Run as a child with POLARS_MAX_THREADS=1 (one core) and unset (every core); prints one JSON line.
Baseline in the same process: a Python loop over hashlib producing the same strings.

    POLARS_MAX_THREADS=1 python -m bench.hashing ROWS
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time

import polars as pl

from pipeline.prepare.hashing import wire_identifier

REPEATS = 3


def _emails(rows: int) -> pl.DataFrame:
    i = pl.int_range(0, rows, dtype=pl.Int64, eager=True)
    frame = pl.DataFrame({"i": i})
    return frame.select(pl.concat_str([pl.lit("user"), pl.col("i").cast(pl.String), pl.lit("."),
                                       (pl.col("i") * 2654435761 % 9973).cast(pl.String), pl.lit("@mail"),
                                       (pl.col("i") % 97).cast(pl.String), pl.lit(".com")]).alias("email"))


def _best(function) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(rows: int) -> dict[str, object]:
    frame = _emails(rows)
    lazy = frame.lazy()
    figures: dict[str, object] = {"rows": rows, "threads": pl.thread_pool_size()}
    for encoding in ("hex", "base64"):
        expression = wire_identifier("email", encoding).alias("wire")
        seconds, polars_result = _best(lambda: lazy.select(expression).collect(engine="streaming"))
        figures[f"{encoding}_streaming"] = rows / seconds
        seconds, _ = _best(lambda: frame.select(expression))
        figures[f"{encoding}_eager"] = rows / seconds
        sample = frame["email"].head(1000).to_list()
        expected = polars_result["wire"].head(1000).to_list()  # type: ignore[index]
        if encoding == "hex":
            check = [hashlib.sha256(e.encode()).hexdigest() for e in sample]
        else:
            check = [base64.b64encode(hashlib.sha256(e.encode()).digest()).decode() for e in sample]
        if check != expected:
            raise SystemExit(f"{encoding}: polars and hashlib disagree")
    values = frame["email"].to_list()
    seconds, _ = _best(lambda: [hashlib.sha256(e.encode()).hexdigest() for e in values])
    figures["hex_hashlib"] = rows / seconds
    seconds, _ = _best(lambda: [base64.b64encode(hashlib.sha256(e.encode()).digest()).decode() for e in values])
    figures["base64_hashlib"] = rows / seconds
    return figures


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)))
