"""Item 4: one-subject endpoints (nurture unsubscribe) against the sandbox with 50 ms of injected latency.

One email per request, so throughput is bounded by concurrency / latency; the figure is the share of
that ideal the pipeline reaches. Skipped, with a message, while `nurture_unsubscribe` is not an endpoint
the config and the sandbox know.
"""

from __future__ import annotations

import ast
import json
import re
import typing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from bench.data import DATA_DIR, ROOT
from bench.measure import SANDBOX_ENV, Child, mib, pipeline_argv, run_child, run_summary, write_job
from bench.table import table

ENDPOINT = "nurture_unsubscribe"
LATENCY_SECONDS = 0.05
CONCURRENCIES = (1, 4, 8, 16)
# An extra level whose ideal (16 / 0.1 s = 160/s) stays under the endpoint's configurable rate cap (200/s),
# so the client's own overhead shows apart from the cap.
EXTRA_LEVEL = (16, 0.1)
SECONDS_PER_LEVEL = 4.0  # requests per level = ideal rate x this


def known_endpoints() -> set[str]:
    from pipeline.config import Destination

    union = typing.get_args(Destination)[0]
    return {typing.get_args(cls.model_fields["endpoint"].annotation)[0] for cls in typing.get_args(union)}


def _destination_class():
    from pipeline.config import Destination

    for cls in typing.get_args(typing.get_args(Destination)[0]):
        if typing.get_args(cls.model_fields["endpoint"].annotation)[0] == ENDPOINT:
            return cls
    return None


def unavailable_reason() -> str | None:
    if ENDPOINT not in known_endpoints():
        return f"skipped: `{ENDPOINT}` is not yet a known endpoint (pipeline.config.Destination has {sorted(known_endpoints())})"
    from pipeline.sandbox import server

    if ENDPOINT not in getattr(server, "DEFAULT_LIMITS", {}):
        return f"skipped: the sandbox does not serve `{ENDPOINT}` yet"
    if _example_destination() is None:
        return f"skipped: no example job with `endpoint: {ENDPOINT}` under configs/ to copy the destination from"
    return None


def _example_destination() -> dict[str, Any] | None:
    """The destination block of the project's own example job (configs/demo/ first: it targets the sandbox)."""
    candidates = sorted((ROOT / "configs" / "demo").glob("*.yaml")) + sorted((ROOT / "configs").glob("*.yaml"))
    for path in candidates:
        job = yaml.safe_load(path.read_text())
        if isinstance(job, dict) and (job.get("destination") or {}).get("endpoint") == ENDPOINT:
            return dict(job["destination"])
    return None


def _sandbox_env() -> dict[str, str]:
    """The demo's sandbox credentials (scripts/demo.py keeps the list for every family)."""
    env = dict(SANDBOX_ENV)
    demo = ROOT / "scripts" / "demo.py"
    if demo.exists():
        match = re.search(r"SANDBOX_ENV\s*=\s*(\{.*?\})", demo.read_text(), re.S)
        if match:
            env.update(ast.literal_eval(match.group(1)))
    return env


def _emails(count: int) -> Path:
    path = DATA_DIR / f"unsubscribe-{count}.csv"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"Email Address": [f"unsubscribe.{i}@mail{i % 97}.com" for i in range(count)]}).write_csv(path)
    return path


@dataclass
class Level:
    concurrency: int
    latency: float
    requests: int
    child: Child
    span: float  # first request start -> last answer, from the manifest
    statuses: dict
    violations: int
    rps_limit: float

    @property
    def ideal(self) -> float:
        return min(self.concurrency / self.latency, self.rps_limit)

    @property
    def throughput(self) -> float:
        return self.requests / self.span

    @property
    def share(self) -> float:
        """Of the issue's ideal, concurrency / latency."""
        return self.throughput / (self.concurrency / self.latency)

    @property
    def share_reachable(self) -> float:
        """Of what the config lets a job reach: the ideal capped by the endpoint's maximum rate."""
        return self.throughput / self.ideal


def _epoch(utc_iso: str) -> float:
    return datetime.fromisoformat(utc_iso.replace("Z", "+00:00")).timestamp()


def measure(with_pandas: bool = False, concurrencies=CONCURRENCIES, log=print) -> list[Level]:
    levels = [(c, LATENCY_SECONDS) for c in concurrencies] + ([EXTRA_LEVEL] if EXTRA_LEVEL else [])
    return _measure(levels, with_pandas, log)


def _measure(plan: list[tuple[int, float]], with_pandas: bool, log) -> list[Level]:
    from pipeline.sandbox.process import start_sandbox_process

    destination_class = _destination_class()
    # The most the config allows for this endpoint (max_limits; documented_limits before it was split).
    documented = getattr(destination_class, "max_limits", None) or destination_class.documented_limits
    example = _example_destination()
    assert example is not None
    env = {**_sandbox_env()}
    levels = []
    sandbox = start_sandbox_process("--no-keep-identifiers")
    try:
        env["ROKT_SANDBOX_URL"] = sandbox.url
        for concurrency, latency in plan:
            sandbox.reset()
            # Lift the sandbox's own limits so only latency and the client's concurrency remain.
            sandbox.limits({ENDPOINT: {"requests_per_second": 100_000, "concurrency": 1_000}})
            sandbox.faults({"family": ENDPOINT, "latency_seconds": latency})
            count = max(60, round(SECONDS_PER_LEVEL * min(concurrency / latency, documented.per_second)))
            destination = {
                **example, "base_url": "${ROKT_SANDBOX_URL}",
                "limits": {"batch_size": 1, "concurrency": min(concurrency, documented.concurrency),
                           "requests_per_second": documented.per_second},
            }
            job = {"job": f"bench-unsubscribe-c{concurrency}-{latency * 1000:.0f}ms", "source": {"uri": str(_emails(count)), "columns": {"email": "Email Address"}},
                   "destination": destination, "output": {"uri": str(ROOT / ".bench" / "runs" / "out")}}
            path = write_job(f"unsubscribe-c{concurrency}-{latency * 1000:.0f}ms", job)
            child = run_child(pipeline_argv("run", str(path), "--log-format", "json", with_pandas=with_pandas), env=env).check()
            summary = run_summary(child)
            lines = [json.loads(line) for line in (Path(summary["_folder"]) / "manifest.jsonl").read_text().splitlines() if line.strip()]
            manifest = [line for line in lines if "status" in line]  # outcomes, not the lines recording a sending
            span = max(_epoch(r["finished_at"]) for r in manifest) - min(_epoch(r["started_at"]) for r in manifest)
            state = sandbox.state()
            level = Level(concurrency, latency, len(manifest), child, span, summary["batches_by_status"], len(state["violations"]),
                          documented.per_second)
            if documented.concurrency < concurrency:
                log(f"  note: {ENDPOINT} allows at most concurrency {documented.concurrency}; ran at that")
            if documented.per_second < concurrency / latency:
                log(f"  note: {ENDPOINT} allows at most {documented.per_second:g} requests/s, below the ideal "
                    f"{concurrency / latency:g}/s at concurrency {concurrency}")
            log(f"  unsubscribe c={concurrency}, {latency * 1000:.0f} ms: {level.requests} requests in {span:.2f}s = "
                f"{level.throughput:,.0f}/s, {level.share:.0%} of {concurrency / latency:,.0f}/s")
            levels.append(level)
    finally:
        sandbox.stop()
    return levels


def one_subject_table(levels: list[Level] | None, reason: str | None) -> str:
    title = f"4. One-subject endpoint: {ENDPOINT} with injected server latency"
    if levels is None:
        return f"\n### {title}\n\n{reason}"
    rows = [[lv.concurrency, f"{lv.latency * 1000:.0f}", lv.requests, f"{lv.span:.2f}", f"{lv.throughput:,.0f}", f"{lv.concurrency / lv.latency:,.0f}",
             f"{lv.share:.0%}", f"{lv.rps_limit:g}", f"{lv.share_reachable:.0%}", mib(lv.child.peak_rss), lv.violations,
             ", ".join(f"{n} {s}" for s, n in lv.statuses.items())] for lv in levels]
    return table(title, ["concurrency", "latency ms", "requests", "span s", "requests/s", "ideal/s", "share", "max rps", "share of reachable",
                         "RSS MiB", "violations", "statuses"], rows,
                 "ideal = concurrency / latency (the issue's); max rps = the highest requests_per_second the config accepts\n"
                 "for the endpoint (set in each job); reachable = min(ideal, max rps). span = first request start to last\n"
                 "answer (manifest).")
