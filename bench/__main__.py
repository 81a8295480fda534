"""`python -m bench`: the performance suite of issue 8. Prints tables; never asserts a timing.

    python -m bench                 # the issue's sizes: 1M and 10M rows, memory at 1M/5M/10M, end to end at 10M
    python -m bench --quick         # 1M rows everywhere (about a minute)
    python -m bench --only prepare,memory --sizes 1M,10M

Inputs are generated once under .bench/data/ (git-ignored); every run goes under .bench/runs/.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

import polars as pl

from bench import encodings, end_to_end, one_subject, prepare
from bench.data import BENCH_DIR, ROOT
from bench.measure import RUNS_DIR
from bench.table import rows_label, table

SECTIONS = ("prepare", "memory", "e2e", "unsubscribe", "hashing")
GIB = 2**30


def _rows(text: str) -> int:
    text = text.strip().upper().replace("_", "")
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale != 1 else text) * scale)


def _row_list(text: str) -> list[int]:
    return [_rows(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M rows everywhere; a quick look, not the issue's figures")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--sizes", help="rows for item 1 (default 1M,10M; --quick 1M)")
    parser.add_argument("--formats", default="csv,parquet", help="formats for item 1 (default csv,parquet)")
    parser.add_argument("--baseline-sizes", help="sizes at which the pandas baseline also runs (default: every size)")
    parser.add_argument("--memory-sizes", help="rows for item 3, CSV (default 1M,5M,10M; --quick 1M,3M)")
    parser.add_argument("--e2e-rows", help="rows for item 2 (default 10M; --quick 1M)")
    parser.add_argument("--hash-rows", help="rows for item 5 (default 2M; --quick 1M)")
    parser.add_argument("--repeat", type=int, default=1, help="run each prepare measurement N times and keep the fastest")
    parser.add_argument("--with-pandas", action="store_true",
                        help="run the pipeline with the .venv's pandas and hypothesis importable (pandera then imports them; see bench/_launch.py)")
    parser.add_argument("--clean", action="store_true", help="delete .bench/ (generated data and runs) and exit")
    args = parser.parse_args(argv)
    quick = args.quick
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    args.sizes = _row_list(args.sizes or ("1M" if quick else "1M,10M"))
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    args.baseline_sizes = _row_list(args.baseline_sizes) if args.baseline_sizes else args.sizes
    args.memory_sizes = _row_list(args.memory_sizes or ("1M,3M" if quick else "1M,5M,10M"))
    args.e2e_rows = _rows(args.e2e_rows or ("1M" if quick else "10M"))
    args.hash_rows = _rows(args.hash_rows or ("1M" if quick else "2M"))
    return args


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    import polars_hash  # noqa: F401

    from importlib.metadata import version

    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM; "
            f"Python {platform.python_version()}, polars {pl.__version__}, polars-hash {version('polars-hash')}, "
            f"pandera {version('pandera')}; {_revision()}; load average {os.getloadavg()[0]:.2f}")


def _revision() -> str:
    """The commit measured, and whether pipeline/ had uncommitted changes (they are measured too)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pipeline"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "commit unknown"
    return f"commit {commit}" + (" + uncommitted changes in pipeline/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clean:
        shutil.rmtree(BENCH_DIR, ignore_errors=True)
        print(f"removed {BENCH_DIR}")
        return 0
    shutil.rmtree(RUNS_DIR, ignore_errors=True)  # outputs of earlier runs; generated inputs are kept
    started = time.perf_counter()
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command.strip()}\n{machine()}\n")
    tables: list[str] = []
    targets: list[list[object]] = []

    def log(message: str) -> None:
        print(message, flush=True)

    def target(name: str, figure: str, met: bool | None) -> None:
        targets.append([name, figure, "n/a" if met is None else ("met" if met else "MISSED")])

    prepared: list[prepare.Prepared] = []
    if "prepare" in args.only:
        log("1. prepare throughput")
        for rows in args.sizes:
            for fmt in args.formats:
                prepared.append(prepare.measure(rows, fmt, rows in args.baseline_sizes, args.with_pandas, log, args.repeat))
        tables.append(prepare.throughput_table(prepared))
        compared = [p for p in prepared if p.speedup is not None]
        if compared:
            worst = min(compared, key=lambda p: p.speedup)
            floor_speedup = worst.speedup_of(worst.floor)
            floor = f"; the stack's floor there: {floor_speedup:.2f}x" if floor_speedup else ""
            target(">= 5x the hand-written baseline", f"{worst.speedup:.2f}x at worst ({worst.fmt} {rows_label(worst.rows)}{floor})",
                   worst.speedup >= 5)
        for p in prepared:
            if p.fmt == "csv" and p.rows == 10_000_000:
                target("10M rows from CSV in < 6 s wall", f"{p.pipeline.wall:.2f} s", p.pipeline.wall < 6)

    if "memory" in args.only:
        log("3. memory growth")
        memory = [p for p in prepared if p.fmt == "csv" and p.rows in args.memory_sizes]
        for rows in args.memory_sizes:
            if not any(p.rows == rows for p in memory):
                memory.append(prepare.measure(rows, "csv", False, args.with_pandas, log, args.repeat))
        memory += [p for p in prepared if p.fmt != "csv"]
        tables.append(prepare.memory_table(memory))
        csv_runs = sorted((p for p in memory if p.fmt == "csv"), key=lambda p: p.rows)
        largest, smallest = csv_runs[-1], csv_runs[0]
        if largest.rows >= 10_000_000:
            target("peak RSS < 1 GiB at 10M rows (dry run, CSV)", f"{largest.pipeline.peak_rss / 2**20:,.0f} MiB",
                   largest.pipeline.peak_rss < GIB)
        if len(csv_runs) > 1:
            growth = largest.pipeline.peak_rss / smallest.pipeline.peak_rss
            target(f"peak RSS at {rows_label(largest.rows)} <= 1.3x {rows_label(smallest.rows)}", f"{growth:.2f}x", growth <= 1.3)

    if "e2e" in args.only:
        log("2. end to end")
        result = end_to_end.measure(args.e2e_rows, "csv", args.with_pandas, log)
        tables.append(end_to_end.e2e_table([result]))
        label = rows_label(args.e2e_rows)
        target(f"end to end within 1.10x the rate floor ({label})", f"{result.ratio:.2f}x ({result.child.wall:.1f} s vs {result.floor:.1f} s)",
               result.ratio <= 1.10)
        target(f"first request within ~2 s of start ({label})", f"{result.first_request_manifest:.2f} s",
               result.first_request_manifest <= 2.0)
        if args.e2e_rows >= 10_000_000:
            target("peak RSS < 1 GiB at 10M rows (end to end)", f"{result.child.peak_rss / 2**20:,.0f} MiB", result.child.peak_rss < GIB)

    if "unsubscribe" in args.only:
        log("4. one-subject endpoints")
        reason = one_subject.unavailable_reason()
        levels = None
        if reason:
            log(f"  {reason}")
        else:
            levels = one_subject.measure(args.with_pandas, log=log)
            top = max((lv for lv in levels if lv.latency == one_subject.LATENCY_SECONDS), key=lambda lv: lv.concurrency)
            target(f"one-subject >= 85% of ideal at concurrency {top.concurrency}", f"{top.share:.0%} ({top.share_reachable:.0%} of the "
                   f"{top.ideal:g}/s the config's rate cap allows)", top.share >= 0.85)
        if reason:
            target("one-subject >= 85% of ideal at concurrency 16", reason.split(":")[0], None)
        tables.append(one_subject.one_subject_table(levels, reason))

    if "hashing" in args.only:
        log("5. hash encodings")
        tables.append(encodings.encodings_table(encodings.measure(args.hash_rows, log)))

    if targets:
        tables.append(table("Targets (issue 8, on this machine)", ["target", "measured", "result"], targets))
    report = "\n".join(tables) + (f"\n\nsuite wall time {time.perf_counter() - started:.0f} s; "
                                   f"load average at the end {os.getloadavg()[0]:.2f}\n")
    print(report)
    (BENCH_DIR / "last-report.md").write_text(f"$ {command.strip()}\n{machine()}\n{report}")
    print(f"(also written to {(BENCH_DIR / 'last-report.md').relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
