"""The baseline again, as a data engineer fluent in polars would write it: a second reference for item 1.

polars and polars-hash load, one streaming query reads the email column, strips whitespace, lower-cases, keeps
what the baseline's rule accepts, hashes with SHA-256 and drops repeats (a global `unique`, held in memory),
and the result is cut into batches of 100,000. No config, no reasons for rejected rows, no threshold judged
before sending, no manifest, no JSON; the interpreter's teardown is skipped as the CLI skips it. At 1M rows it
shows what the pipeline's start-up and bookkeeping cost; at 10M its in-memory `unique` is what streaming avoids.

`--with-stack` also loads what any tool on this project's stack must: pydantic (with SecretStr) and PyYAML for
its typed config, and pandera's polars API (which brings numpy) for the reasons of rejected rows, imported
beside the query as the pipeline imports it (pandera's backends, which load at a first validation, are not).
Run through bench/_launch.py, as the pipeline is, so pandera finds no pandas. It does nothing with them, so at
1M rows its time is a floor for any pipeline on this stack: it loads what such a pipeline must, and does less
with the data. Not at 10M, where its in-memory `unique` costs more than the pipeline's streaming dedupe.

    python -m bench.polars_by_hand [--with-stack] FILE [COLUMN]     # prints one JSON line of counts
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from bench.rules import BATCH_SIZE, EMAIL


def main(path: str, column: str = "Email Address", with_stack: bool = False) -> dict[str, int]:
    if with_stack:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's idle BLAS threads, as the pipeline avoids them
        import yaml  # noqa: F401
        from pydantic import BaseModel, SecretStr  # noqa: F401

    import polars as pl
    import polars_hash  # noqa: F401  (registers .chash)

    # Beside the query, as the pipeline imports it.
    pandera = ThreadPoolExecutor(1).submit(importlib.import_module, "pandera.polars") if with_stack else None
    frame = pl.scan_parquet(path) if path.endswith(".parquet") else pl.scan_csv(path, infer_schema=False)
    email = pl.col(column).str.replace_all(r"\s", "").str.to_lowercase()
    hashed = (frame.select(email.alias("email")).filter(
        pl.col("email").str.contains(f"^{EMAIL.pattern}$") & (pl.col("email").str.len_chars() <= 254))
              .select(pl.col("email").chash.sha2_256()).unique(maintain_order=True).collect(engine="streaming"))
    batches = sum(1 for _ in hashed.iter_slices(BATCH_SIZE))
    if pandera is not None:
        pandera.result()  # its failure raised: a floor without pandera would be too low
    return {"identifiers": hashed.height, "batches": batches}


if __name__ == "__main__":
    arguments = sys.argv[1:]
    with_stack = "--with-stack" in arguments
    print(json.dumps(main(*[a for a in arguments if a != "--with-stack"], with_stack=with_stack)), flush=True)
    os._exit(0)
