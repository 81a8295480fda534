"""Item 2: a real audience import of a generated file into the sandbox, at the documented limits."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.data import dataset
from bench.measure import SANDBOX_ENV, Child, audience_job, mib, pipeline_argv, run_child, run_summary, write_job
from bench.table import rows_label, table
from pipeline.sandbox.process import start_sandbox_process

REQUESTS_PER_SECOND = 4  # documented maxima, the job's defaults
BATCH_SIZE = 100_000


@dataclass
class EndToEnd:
    rows: int
    child: Child
    summary: dict
    requests: int
    first_request_manifest: float  # seconds from process spawn to the first manifest started_at
    first_request_sandbox: float  # ... to the sandbox recording the first accepted request
    send_span: float  # first request received -> last request received, at the sandbox
    statuses: dict
    violations: int
    throttled: int
    violation_kinds: dict

    @property
    def floor(self) -> float:
        """The issue's rate floor: requests at 4/s."""
        return self.requests / REQUESTS_PER_SECOND

    @property
    def ratio(self) -> float:
        return self.child.wall / self.floor


def _epoch(utc_iso: str) -> float:
    return datetime.fromisoformat(utc_iso.replace("Z", "+00:00")).timestamp()


def measure(rows: int, fmt: str = "csv", with_pandas: bool = False, log=print) -> EndToEnd:
    source = dataset(rows, fmt, log)
    sandbox = start_sandbox_process("--no-keep-identifiers")
    try:
        job = audience_job(f"bench-e2e-{fmt}-{rows_label(rows)}", source, base_url="${ROKT_SANDBOX_URL}")
        path = write_job(f"e2e-{fmt}-{rows}", job)
        env = {**SANDBOX_ENV, "ROKT_SANDBOX_URL": sandbox.url}
        child = run_child(pipeline_argv("run", str(path), "--log-format", "json", with_pandas=with_pandas), env=env).check()
        state = sandbox.state()
    finally:
        sandbox.stop()
    summary = run_summary(child)
    manifest = [json.loads(line) for line in (Path(summary["_folder"]) / "manifest.jsonl").read_text().splitlines() if line.strip()]
    received = sorted(r["at"] for r in state["received"] if r["family"] == "audience_import")
    first_manifest = min(_epoch(r["started_at"]) for r in manifest) - child.started
    result = EndToEnd(
        rows=rows, child=child, summary=summary, requests=len(manifest),
        first_request_manifest=first_manifest,
        first_request_sandbox=received[0] - child.started if received else math.nan,
        send_span=received[-1] - received[0] if received else math.nan,
        statuses=summary["batches_by_status"],
        violations=len(state["violations"]),
        throttled=sum(1 for a in state["attempts"] if a.get("status") == 429),
        violation_kinds=dict(Counter(v["violation"] for v in state["violations"])),
    )
    log(f"  end to end {fmt} {rows_label(rows)}: {child.wall:.2f}s for {result.requests} requests "
        f"(floor {result.floor:.2f}s), first request after {result.first_request_manifest:.2f}s, peak RSS {mib(child.peak_rss)} MiB")
    if result.violations:
        log(f"  the sandbox saw limit violations: {result.violation_kinds}; retries {summary.get('retries')}")
    return result


def e2e_table(results: list[EndToEnd]) -> str:
    rows = [[
        f"csv {rows_label(r.rows)}", f"{r.summary['identifiers']:,}", r.requests, f"{r.child.wall:.2f}", f"{r.floor:.2f}",
        f"{r.ratio:.2f}x", f"{r.first_request_manifest:.2f}", f"{r.first_request_sandbox:.2f}", f"{r.send_span:.2f}",
        mib(r.child.peak_rss), f"{r.violations}/{r.throttled}",
        ", ".join(f"{n} {s}" for s, n in r.statuses.items()),
    ] for r in results]
    return table(
        "2. End-to-end audience import into the sandbox (4 requests/s, 4 in flight, 100,000 per request)",
        ["input", "identifiers", "requests", "wall s", "floor s", "vs floor", "1st request s", "1st received s",
         "send span s", "RSS MiB", "violations/429", "batches"],
        rows,
        "floor = requests / 4 per second (the issue's rate floor). 1st request = first manifest started_at minus\n"
        "process spawn; 1st received = the sandbox's record of the first accepted request; send span = first to\n"
        "last request received by the sandbox.",
    )
