"""`python -m bench.sync_diff`: issue 9's figure, a 20M-identifier state against a 20M-row file.

    python -m bench.sync_diff                    # 20M rows, 30,000 joined and 30,000 left; incremental, mirror, first run
    python -m bench.sync_diff --rows 2M --changes 5000

Each case runs the real code (plan_sync, then SyncPlan.advance with a ledger that accepted every batch) in a
child process of its own, on a local output folder, and reports wall time per phase and the child's peak RSS.
Nothing is sent: sending is measured by bench/end_to_end.py. The prepared file stands in for what the run
prepares from the export (hex SHA-256 wire identifiers); inputs are generated once under .bench/data/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import polars_hash  # noqa: F401

from bench.data import DATA_DIR, ROOT
from bench.measure import RUNS_DIR, run_child
from bench.table import rows_label, table

VERSION = 1
CASES = ("incremental", "mirror", "first-run")
GIB = 2**30


def _identifiers(start: int, stop: int) -> pl.LazyFrame:
    numbers = pl.int_range(start, stop, eager=True).alias("n").to_frame().lazy()
    return numbers.select(pl.concat_str([pl.lit("person"), pl.col("n").cast(pl.String), pl.lit("@example.com")]).chash.sha2_256())


def inputs(rows: int, changes: int, log=print) -> tuple[Path, Path]:
    """(state, prepared): the state holds identifiers 0..rows-1; the file lost the first `changes` and gained as many."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    state = DATA_DIR / f"sync-v{VERSION}-{rows}-state.parquet"
    prepared = DATA_DIR / f"sync-v{VERSION}-{rows}-{changes}-prepared.parquet"
    if not state.exists():
        started = time.perf_counter()
        _identifiers(0, rows).select(pl.all().alias("hashed_identifier"), pl.lit(False).alias("rejected")).sink_parquet(state)
        log(f"  generated {state.relative_to(ROOT)} in {time.perf_counter() - started:.1f}s")
    if not prepared.exists():
        started = time.perf_counter()
        _identifiers(changes, rows + changes).select(pl.all().alias("wire")).sink_parquet(prepared)
        log(f"  generated {prepared.relative_to(ROOT)} in {time.perf_counter() - started:.1f}s")
    return state, prepared


def _job(case: str, out: Path):
    from pipeline.config import JobConfig

    return JobConfig.model_validate({
        "job": "bench-sync",
        "source": {"uri": "unused.csv", "columns": {"email": "email"}},
        "destination": {
            "endpoint": "audience_import", "base_url": "http://127.0.0.1:9", "account_id": "1", "action": "include",
            "list": "Bench", "sync_mode": "incremental" if case == "incremental" else "mirror",
            "credentials": {"public_key": "unused", "secret_key": "unused"},
        },
        "output": {"uri": str(out)},
    })


def seed(case: str, state: Path, out: Path) -> None:
    """A fresh output folder whose state is version `day-1` = `state` (a hard link: no 700 MB copy)."""
    from pipeline.ledger import write_json
    from pipeline.storage import LocalStore
    from pipeline.sync.state_store import INDEX, StateIndex, state_store_for

    shutil.rmtree(out, ignore_errors=True)
    states = state_store_for(_job(case, out))
    if case == "first-run":
        return
    assert isinstance(states.store, LocalStore)
    states.store.path.mkdir(parents=True)
    os.link(state, states.store.path / "day-1.parquet")
    counts = {"identifiers": pl.scan_parquet(state).select(pl.len()).collect().item(), "rejected": 0, "added": 0, "removed": 0}
    index = StateIndex(states.destination).with_version({"run_id": "day-1", "parent": None, "written_at": "-", "how": "seed", **counts})
    write_json(states.store, INDEX, index.to_json())


def child(case: str, prepared: Path, out: Path) -> None:
    """Runs in the measured process: the real plan and advance, timed per phase, figures as one JSON line."""
    import tempfile

    from pipeline.endpoints.registry import endpoint_for
    from pipeline.prepare.prepared import PreparedInput
    from pipeline.sync import plan_sync

    job = _job(case, out)
    rows = pl.scan_parquet(prepared).select(pl.len()).collect().item()
    stand_in = PreparedInput(rows_read=rows, rows_rejected=0, duplicates_dropped=0, superseded=0, identifiers=rows,
                             unique_path=prepared, files=(), reject_reasons={})
    with tempfile.TemporaryDirectory(dir=RUNS_DIR) as workdir:
        started = time.perf_counter()
        plan = plan_sync(job, endpoint_for(job), stand_in, Path(workdir), "day-2", dry_run=False, confirmed=True)
        planned = time.perf_counter()
        ledger = [{"batch": b, "digest": d, "action": a, "status": "accepted"}
                  for b, d, a in plan.batch_plan.select("batch", "digest", "action").iter_rows()]
        plan.advance(ledger)
        advanced = time.perf_counter()
    report = plan.report
    print(json.dumps({"plan": planned - started, "advance": advanced - planned, "new": report["new"],
                      "left": report.get("left", 0), "unchanged": report["unchanged"], "requests": report["requests"],
                      "in_state": report["identifiers_in_state"]}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="20M", help="identifiers in the state and rows in the file (default 20M)")
    parser.add_argument("--changes", type=int, default=30_000, help="identifiers that joined, and as many that left")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "PREPARED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    from bench.__main__ import _rows, machine

    rows = _rows(args.rows)
    print(f"$ python -m bench.sync_diff {' '.join(sys.argv[1:] if argv is None else argv)}\n{machine()}\n", flush=True)
    state, prepared = inputs(rows, args.changes)
    figures = []
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        out = RUNS_DIR / "sync" / case
        seed(case, state, out)
        measured = run_child([sys.executable, "-m", "bench.sync_diff", "--child", case, str(prepared), str(out)]).check()
        result = json.loads(measured.stdout.strip().splitlines()[-1])
        figures.append([case, rows_label(rows), rows_label(rows), result["new"], result["left"], result["unchanged"],
                        result["requests"], result["plan"], result["advance"], measured.wall,
                        f"{measured.peak_rss / GIB:.2f} GiB", result["in_state"]])
        shutil.rmtree(out, ignore_errors=True)
    print(table(
        f"Sync diff: a {rows_label(rows)} state against a {rows_label(rows)}-row file ({args.changes:,} joined, {args.changes:,} left)",
        ["case", "state", "file", "to include", "to exclude", "unchanged", "requests", "plan s", "advance s", "child wall s",
         "peak RSS", "state after"],
        figures,
        note=("plan = catch-up check, anti-joins, batch digests, plan rows written ahead; advance = ledger outcomes, new "
              "state version written and committed. first-run: no state yet, every identifier planned and recorded. "
              "child wall includes interpreter start and imports."),
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
