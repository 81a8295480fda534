"""Items 1 and 3: prepare throughput in --dry-run against the hand-written baseline, and memory growth."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.data import dataset
from bench.measure import (
    SANDBOX_ENV, Child, audience_job, mib, module_argv, pipeline_argv, run_child, run_summary, write_job,
)
from bench.table import per_second, rows_label, table

COUNTED = ("rows", "rejected", "duplicates", "identifiers")
# Past this, polars_by_hand.py's in-memory `unique` costs more than the pipeline's streaming dedupe (10M rows from
# CSV: 4.63 s with the stack's imports against the pipeline's 4.57 s), so it is no floor there and is not run.
FLOOR_MAX_ROWS = 2_000_000


@dataclass
class Prepared:
    fmt: str
    rows: int
    pipeline: Child
    summary: dict
    baseline: Child | None = None
    baseline_counts: dict | None = None
    by_hand: Child | None = None  # bench/polars_by_hand.py: the baseline written with polars
    floor: Child | None = None  # the same with the stack's imports (--with-stack), up to FLOOR_MAX_ROWS

    @property
    def counts(self) -> dict[str, int]:
        s = self.summary
        return {"rows": s["rows_read"], "rejected": s["rows_rejected"], "duplicates": s["duplicates_dropped"],
                "identifiers": s["identifiers"]}

    @property
    def speedup(self) -> float | None:
        return self.speedup_of(self.pipeline)

    def speedup_of(self, child: Child | None) -> float | None:
        """The baseline's wall time over `child`'s (None where either was not run)."""
        return self.baseline.wall / child.wall if self.baseline and child else None


def dry_run(rows: int, fmt: str, with_pandas: bool = False, log=print) -> tuple[Child, dict]:
    source = dataset(rows, fmt, log)
    job = write_job(f"dry-{fmt}-{rows}", audience_job(f"bench-dry-{fmt}-{rows_label(rows)}", source))
    child = run_child(pipeline_argv("run", str(job), "--dry-run", with_pandas=with_pandas), env=SANDBOX_ENV).check()
    return child, run_summary(child)


def script(module: str, rows: int, fmt: str, log=print, options: tuple[str, ...] = (),
           hide_extras: bool = False) -> tuple[Child, dict]:
    """`python -m module [OPTIONS] FILE`, a script that prints one JSON line of counts (bench/baseline.py,
    polars_by_hand.py); `hide_extras`: through the launcher that hides pandas, as the pipeline is run unless
    --with-pandas."""
    child = run_child(module_argv(module, *options, str(dataset(rows, fmt, log)), hide_extras=hide_extras)).check()
    return child, json.loads(child.stdout.strip().splitlines()[-1])


def _best(runs: list[tuple[Child, dict]]) -> tuple[Child, dict]:
    """The fastest of repeated runs, carrying the highest peak RSS seen (noise only ever adds time)."""
    child, facts = min(runs, key=lambda run: run[0].wall)
    child.peak_rss = max(run[0].peak_rss for run in runs)
    return child, facts


def measure(rows: int, fmt: str, with_baseline: bool, with_pandas: bool = False, log=print, repeat: int = 1) -> Prepared:
    child, summary = _best([dry_run(rows, fmt, with_pandas, log) for _ in range(repeat)])
    result = Prepared(fmt, rows, child, summary)
    log(f"  pipeline --dry-run {fmt} {rows_label(rows)}: {child.wall:.2f}s, peak RSS {mib(child.peak_rss)} MiB")
    if with_baseline:
        result.baseline, result.baseline_counts = _reference("baseline", "bench.baseline", rows, fmt, log, repeat)
        mismatch = {k: (result.counts[k], result.baseline_counts[k]) for k in COUNTED if result.counts[k] != result.baseline_counts[k]}
        if mismatch:
            log(f"  WARNING: pipeline and baseline disagree (pipeline, baseline): {mismatch}")
        result.by_hand = _by_hand(result, "polars by hand", (), False, log, repeat)
        if rows <= FLOOR_MAX_ROWS:  # pandas hidden exactly when it is from the pipeline: the floor loads what it does
            result.floor = _by_hand(result, "+ stack imports", ("--with-stack",), not with_pandas, log, repeat)
    return result


def _by_hand(result: Prepared, label: str, options: tuple[str, ...], hide_extras: bool, log, repeat: int) -> Child:
    child, counts = _reference(label, "bench.polars_by_hand", result.rows, result.fmt, log, repeat, options, hide_extras)
    if counts["identifiers"] != result.counts["identifiers"]:
        log(f"  WARNING: {label} found {counts['identifiers']:,} identifiers, the pipeline {result.counts['identifiers']:,}")
    return child


def _reference(label: str, module: str, rows: int, fmt: str, log, repeat: int, options: tuple[str, ...] = (),
               hide_extras: bool = False) -> tuple[Child, dict]:
    child, counts = _best([script(module, rows, fmt, log, options, hide_extras) for _ in range(repeat)])
    log(f"  {label:<18} {fmt} {rows_label(rows)}: {child.wall:.2f}s, peak RSS {mib(child.peak_rss)} MiB")
    return child, counts


def _times(ratio: float | None) -> str | None:
    return f"{ratio:.2f}x" if ratio is not None else None


def throughput_table(results: list[Prepared]) -> str:
    rows = []
    for r in results:
        b = r.baseline
        rows.append([
            f"{r.fmt} {rows_label(r.rows)}", f"{r.pipeline.wall:.2f}", per_second(r.rows, r.pipeline.wall), mib(r.pipeline.peak_rss),
            f"{b.wall:.2f}" if b else None, per_second(r.rows, b.wall) if b else None, mib(b.peak_rss) if b else None,
            _times(r.speedup), f"{r.by_hand.wall:.2f}" if r.by_hand else None, _times(r.speedup_of(r.by_hand)),
            f"{r.floor.wall:.2f}" if r.floor else None, _times(r.speedup_of(r.floor)), f"{r.counts['identifiers']:,}",
        ])
    return table(
        "1. Prepare throughput (read, validate, normalise, hash, dedupe, batch; `run --dry-run`)",
        ["input", "pipeline s", "rows/s", "RSS MiB", "baseline s", "rows/s", "RSS MiB", "speed-up", "polars by hand s",
         "its speed-up", "+ stack imports s", "floor speed-up", "identifiers"],
        rows,
        "Wall time of the whole CLI process (interpreter start included; the fastest of --repeat runs, with the\n"
        "highest peak RSS). Baseline: pandas read + Python loop over hashlib + json.dumps per batch\n"
        "(bench/baseline.py), run in the same session on the same file. Polars by hand: the baseline written with\n"
        "polars (bench/polars_by_hand.py: one query and an in-memory unique; no config, reasons, threshold, manifest\n"
        "or JSON), to tell the pipeline's start-up and bookkeeping from the data path. + stack imports: the same\n"
        "script also loading pydantic, PyYAML and pandera (with numpy), as any pipeline on this stack must for its\n"
        "config and its reasons (--with-stack): a floor for such a pipeline, which must also do all it skips; run\n"
        "up to 2M rows only (beyond, its in-memory unique is slower than the pipeline's streaming dedupe).",
    )


def memory_table(results: list[Prepared]) -> str:
    results = sorted(results, key=lambda r: (r.fmt, r.rows))
    rows = []
    for r in results:
        first = next(x for x in results if x.fmt == r.fmt)
        rows.append([f"{r.fmt} {rows_label(r.rows)}", mib(r.pipeline.peak_rss), f"{r.pipeline.peak_rss / first.pipeline.peak_rss:.2f}x",
                     f"{r.pipeline.wall:.2f}"])
    return table("3. Memory growth (peak RSS of the `run --dry-run` process)", ["input", "peak RSS MiB", f"vs smallest", "wall s"], rows)
