"""`rokt-pipeline status` and `runs`: what a job's runs did, from their outputs alone (also a run that crashed).

A run is its folder `<output.uri>/<job>/<run_id>/`: plan.json (written before the first request), the manifest,
summary.json (the latest attempt's) and summaries/<attempt>.json (every attempt's).
"""

from __future__ import annotations

from typing import Any, Callable

from pipeline.config import JobOutputs
from pipeline.endpoints.base import EndpointBase
from pipeline.endpoints.registry import endpoint_class
from pipeline.errors import ConfigError
from pipeline.ledger import PLAN, SUMMARIES, SUMMARY, read_json, read_records
from pipeline.outputs import run_ids, run_store
from pipeline.storage import Store
from pipeline.summary import unfinished_batches


def attempts(store: Store) -> list[dict[str, Any]]:
    """Every attempt's summary, first first (a run written before attempts were kept: its one summary.json)."""
    found = [summary for name in store.list(SUMMARIES) if (summary := read_json(store, name)) is not None]
    if not found and (latest := read_json(store, SUMMARY)) is not None:
        found = [latest]
    return sorted(found, key=lambda summary: summary.get("attempt") or 0)


def _finished(latest: dict[str, Any] | None, plan: dict[str, Any]) -> bool:
    """A summary is written as an attempt ends; one older than the plan is an earlier attempt's, and the attempt that
    wrote the plan after it (a resume) did not finish."""
    if latest is None:
        return False
    written = plan.get("written_at")
    return written is None or latest.get("finished_at", "") >= written


def request_key(record: dict[str, Any], endpoint: type[EndpointBase]) -> Any:
    """What names one request across attempts, as a resume names it: its batch, or (one subject a request) its
    resume key (for network privacy the request type too: an opt-out and a deletion of one person are two)."""
    return endpoint.resume_keys_covered(record)[0] if endpoint.one_subject else record["batch"]


def latest_per_request(outcomes: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, dict[str, Any]]:
    """Each request's accepted outcome if any attempt was accepted (once accepted, it stays accepted), else its last."""
    latest: dict[Any, dict[str, Any]] = {}
    for record in outcomes:
        request = key(record)
        if latest.get(request, {}).get("status") != "accepted":
            latest[request] = record
    return latest


def run_status(outputs: JobOutputs, run_id: str) -> dict[str, Any]:
    store = run_store(outputs, run_id)
    plan = read_json(store, PLAN)
    records, torn = read_records(store)
    history = attempts(store)
    if plan is None and not records and not history:
        raise ConfigError(f"no run {run_id!r} at {store.uri}")
    plan = plan or {}
    target = plan.get("target")
    # Outcomes of requests to the plan's destination (a run id reused for another list starts afresh), keyed the
    # way a resume looks them up.
    requests = [r for r in records if "batch" in r and "status" in r and (target is None or r.get("target", target) == target)]
    endpoint = endpoint_class(outputs.endpoint)
    latest = latest_per_request(requests, lambda record: request_key(record, endpoint))
    ambiguous = {request_key(record, endpoint) for record in requests if record.get("ambiguous")}
    counts: dict[str, int] = {}
    for record in latest.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    planned = plan.get("batches")
    attempted = sum(n for status, n in counts.items() if status != "dry_run")
    last = history[-1] if history else None
    return {
        "run_id": run_id,
        "job": outputs.job,
        "endpoint": plan.get("endpoint", outputs.endpoint),
        "destination": plan.get("destination") or (last or {}).get("destination"),
        "batches_planned": planned,
        "accepted": counts.get("accepted", 0),
        "failed": counts.get("failed", 0),
        "rejected": counts.get("rejected", 0),
        "dry_run": counts.get("dry_run", 0),
        "pending": None if planned is None else max(planned - attempted, 0),
        "ambiguous": len(ambiguous),
        "manifest_torn_lines": torn,
        "finished": _finished(last, plan) if plan else last is not None,
        "attempts": [_attempt_line(summary) for summary in history],
        "already_delivered_by": (last or {}).get("already_delivered_by"),
        "output_dir": store.uri,
    }


def _attempt_line(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("attempt", "started_at", "finished_at", "dry_run", "identifiers", "identifiers_accepted", "identifiers_left",
            "requests", "retries", "batches_by_status", "stopped_reason", "max_duration_reached")
    return {key: summary.get(key) for key in keys}


def list_runs(outputs: JobOutputs) -> list[dict[str, Any]]:
    """Every run of the job, newest first, with its state in a word."""
    rows = []
    for run_id in run_ids(outputs):
        store = run_store(outputs, run_id)
        history = attempts(store)
        plan = read_json(store, PLAN) or {}
        if not history and not plan:
            continue  # not a run's folder
        last = history[-1] if history else {}
        rows.append({
            "run_id": run_id,
            "started_at": (history[0] if history else {}).get("started_at") or plan.get("written_at"),
            "finished_at": last.get("finished_at"),
            "attempts": len(history),
            "state": _state(last, plan),
            "endpoint": plan.get("endpoint") or last.get("endpoint") or outputs.endpoint,
            "destination": plan.get("destination") or last.get("destination"),
            "identifiers": last.get("identifiers"),
            "identifiers_accepted": sum(summary.get("identifiers_accepted") or 0 for summary in history),
            "identifiers_left": last.get("identifiers_left"),
        })
    return sorted(rows, key=lambda row: row["started_at"] or "", reverse=True)


def _state(last: dict[str, Any], plan: dict[str, Any]) -> str:
    if not last or not _finished(last, plan):
        return "unfinished (crashed, or still running)"
    if last.get("already_delivered_by"):
        return f"nothing sent: delivered by run {last['already_delivered_by']['run_id']}"
    if last.get("dry_run"):
        return "dry run"
    if last.get("max_duration_reached"):
        return "out of time (resume with its run id)"
    if last.get("stopped_reason"):
        return "stopped"
    return "failed in part" if unfinished_batches(last.get("batches_by_status") or {}) else "delivered"
