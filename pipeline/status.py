"""`rokt-pipeline status`: what a run's ledger says, even for a run that crashed."""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import JobConfig
from pipeline.endpoints.registry import endpoint_for
from pipeline.errors import ConfigError
from pipeline.ledger import PLAN, SUMMARY, read_records
from pipeline.outputs import run_store


def _finished(summary_bytes: bytes | None, plan: dict[str, Any]) -> bool:
    """A summary is written as a run ends; one older than the plan is a finished earlier attempt's, and the
    attempt that wrote the plan after it (a resume) did not finish."""
    if summary_bytes is None:
        return False
    written = plan.get("written_at")
    return written is None or json.loads(summary_bytes).get("finished_at", "") >= written


def run_status(job: JobConfig, run_id: str) -> dict[str, Any]:
    store = run_store(job, run_id)
    plan_bytes = store.read_bytes(PLAN)
    records, torn = read_records(store)
    if plan_bytes is None and not records:
        raise ConfigError(f"no run {run_id!r} at {store.uri}")
    plan = json.loads(plan_bytes) if plan_bytes else {}
    endpoint = endpoint_for(job)
    # Outcomes of requests to the job's current destination (a run id reused for another list starts afresh),
    # keyed the way a resume looks them up (network privacy: subject and request type).
    requests = [r for r in records if "batch" in r and "status" in r and endpoint.same_target(r)]
    one_subject = endpoint.spec.one_subject
    latest: dict[Any, dict[str, Any]] = {}
    ambiguous: set[Any] = set()
    for record in requests:
        key = endpoint.resume_keys_covered(record)[0] if one_subject else record["batch"]
        if latest.get(key, {}).get("status") != "accepted":  # once accepted, it stays accepted
            latest[key] = record
        if record.get("ambiguous"):
            ambiguous.add(key)
    counts: dict[str, int] = {}
    for record in latest.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    planned = plan.get("batches")
    attempted = sum(n for status, n in counts.items() if status != "dry_run")
    return {
        "run_id": run_id,
        "job": job.job,
        "endpoint": plan.get("endpoint", job.destination.endpoint),
        "batches_planned": planned,
        "accepted": counts.get("accepted", 0),
        "failed": counts.get("failed", 0),
        "rejected": counts.get("rejected", 0),
        "dry_run": counts.get("dry_run", 0),
        "pending": None if planned is None else max(planned - attempted, 0),
        "ambiguous": len(ambiguous),
        "manifest_torn_lines": torn,
        "finished": _finished(store.read_bytes(SUMMARY), plan),
        "output_dir": store.uri,
    }
