"""Synthetic customer exports for the benchmarks, generated once and cached under .bench/data/.

Messy on purpose, like a real export: mixed case, stray whitespace, ~2% duplicates (after normalisation)
and ~1% invalid rows, next to two columns the job does not use. Deterministic: the same row count always
gives the same bytes, so figures from different runs read the same input.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
DATA_DIR = BENCH_DIR / "data"
EMAIL_COLUMN = "Email Address"
VERSION = 1  # bump when the generator changes, so stale cached files are not reused

# Per 100 rows: 2 duplicates of an earlier row (different case or spacing), 1 invalid.
_DUPLICATE_MOD, _INVALID_MOD = 50, 100


def _frame(start: int, stop: int) -> pl.DataFrame:
    i = pl.int_range(start, stop, dtype=pl.Int64, eager=True).alias("i")
    frame = pl.DataFrame(i)
    person = (
        pl.when(pl.col("i") % _DUPLICATE_MOD == 7).then(pl.col("i") - 5)   # same person as 5 rows earlier
        .otherwise(pl.col("i"))
    )
    # ~28 characters, like a real address: user1234567.4521@mail45.com
    local = pl.concat_str([pl.lit("user"), person.cast(pl.String), pl.lit("."), (person * 2654435761 % 9973).cast(pl.String)])
    domain = pl.concat_str([pl.lit("mail"), (person % 97).cast(pl.String), pl.lit(".com")])
    email = pl.concat_str([local, pl.lit("@"), domain])
    email = (
        pl.when(pl.col("i") % 10 == 3).then(email.str.to_uppercase())
        .when(pl.col("i") % _DUPLICATE_MOD == 7).then(pl.concat_str([pl.lit("  "), email.str.to_uppercase(), pl.lit(" ")]))
        .when(pl.col("i") % 20 == 11).then(pl.concat_str([pl.lit(" "), email, pl.lit("\t")]))
        .otherwise(email)
    )
    email = (
        pl.when(pl.col("i") % _INVALID_MOD == 13).then(pl.concat_str([pl.lit("not-an-email-"), pl.col("i").cast(pl.String)]))
        .when(pl.col("i") % 1000 == 99).then(pl.lit(""))
        .otherwise(email)
    )
    return frame.select(
        pl.col("i").alias("customer_id"),
        email.alias(EMAIL_COLUMN),
        pl.when(pl.col("i") % 3 == 0).then(pl.lit("US")).when(pl.col("i") % 3 == 1).then(pl.lit("AU")).otherwise(pl.lit("GB")).alias("country"),
    )


def dataset(rows: int, fmt: str, log=print) -> Path:
    """Path of a cached file of `rows` rows in `fmt` (csv or parquet), generating it when missing.

    The file is read through once first, so every measurement reads it from the page cache, as a fresh export
    usually is: otherwise whichever command ran first would also pay the disk (the pipeline runs before the
    baseline in each pair).
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"customers-v{VERSION}-{rows}.{fmt}"
    if path.exists():
        _read_through(path)
        return path
    started = time.perf_counter()
    partial = path.with_suffix(path.suffix + ".partial")
    step = 2_000_000
    if fmt == "csv":
        with open(partial, "wb") as handle:
            for start in range(0, rows, step):
                _frame(start, min(rows, start + step)).write_csv(handle, include_header=start == 0)
    elif fmt == "parquet":
        pl.concat([_frame(s, min(rows, s + step)) for s in range(0, rows, step)]).write_parquet(partial, row_group_size=250_000)
    else:
        raise ValueError(fmt)
    partial.replace(path)
    log(f"  generated {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f}s")
    return path


def _read_through(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass

