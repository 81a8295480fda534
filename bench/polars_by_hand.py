"""The baseline again, as a data engineer fluent in polars would write it: a second reference for item 1.

polars and polars-hash load, one streaming query reads the email column, strips whitespace, lower-cases, keeps
what the baseline's rule accepts, hashes with SHA-256 and drops repeats (a global `unique`, held in memory),
and the result is cut into batches of 100,000. No config, no reasons for rejected rows, no threshold judged
before sending, no manifest, no JSON; the interpreter's teardown is skipped as the CLI skips it. At 1M rows it
shows what the pipeline's start-up and bookkeeping cost; at 10M its in-memory `unique` is what streaming avoids.

    python -m bench.polars_by_hand FILE [COLUMN]     # prints one JSON line of counts
"""

from __future__ import annotations

import json
import os
import sys

import polars as pl
import polars_hash  # noqa: F401  (registers .chash)

from bench.rules import BATCH_SIZE, EMAIL


def main(path: str, column: str = "Email Address") -> dict[str, int]:
    frame = pl.scan_parquet(path) if path.endswith(".parquet") else pl.scan_csv(path, infer_schema=False)
    email = pl.col(column).str.replace_all(r"\s", "").str.to_lowercase()
    hashed = (frame.select(email.alias("email")).filter(
        pl.col("email").str.contains(f"^{EMAIL.pattern}$") & (pl.col("email").str.len_chars() <= 254))
              .select(pl.col("email").chash.sha2_256()).unique(maintain_order=True).collect(engine="streaming"))
    batches = sum(1 for _ in hashed.iter_slices(BATCH_SIZE))
    return {"identifiers": hashed.height, "batches": batches}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])), flush=True)
    os._exit(0)
