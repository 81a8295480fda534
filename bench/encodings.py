"""Item 5 in the suite: run bench.hashing in children on one thread and on every core."""

from __future__ import annotations

import json
import os
import sys

from bench.measure import run_child
from bench.table import table


def measure(rows: int, log=print) -> list[dict]:
    results = []
    for threads in (1, os.cpu_count() or 1):
        child = run_child([sys.executable, "-m", "bench.hashing", str(rows)], env={"POLARS_MAX_THREADS": str(threads)}).check()
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        figures["threads"] = threads
        results.append(figures)
        log(f"  hashing on {threads} thread(s): hex {figures['hex_streaming'] / 1e6:.2f}M/s, base64 {figures['base64_streaming'] / 1e6:.2f}M/s")
    return results


def encodings_table(results: list[dict]) -> str:
    rows = []
    for encoding in ("hex", "base64"):
        for r in results:
            best = max(r[f"{encoding}_streaming"], r[f"{encoding}_eager"])
            rows.append([encoding, r["threads"], f"{r[f'{encoding}_streaming'] / 1e6:.2f}", f"{r[f'{encoding}_eager'] / 1e6:.2f}",
                         f"{best / r['threads'] / 1e6:.2f}", f"{r[f'{encoding}_hashlib'] / 1e6:.2f}",
                         f"{best / r[f'{encoding}_hashlib']:.1f}x"])
    return table(
        f"5. Hash encodings: pipeline.prepare.hashing.wire_identifier over {results[0]['rows']:,} normalised emails",
        ["encoding", "threads", "streaming M rows/s", "eager M rows/s", "per core M/s", "hashlib loop M/s", "vs hashlib"],
        rows,
        "Best of 3. Threads = POLARS_MAX_THREADS of the child; per core = the better of the two / threads.\n"
        "hashlib loop = one Python thread producing the same strings (hexdigest, b64encode(digest)).",
    )
