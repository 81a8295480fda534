"""`rokt-pipeline state show | rollback`: read and move a job's state pointer."""

from __future__ import annotations

from typing import Any

from pipeline.config import JobConfig
from pipeline.errors import ConfigError
from pipeline.sync.state_store import StateStore, other_states, state_store_for


def _states(job: JobConfig) -> StateStore:
    if job.destination.sync_mode == "full":
        raise ConfigError("destination.sync_mode is full: this job keeps no state (set incremental or mirror)")
    return state_store_for(job)


def show_state(job: JobConfig) -> dict[str, Any]:
    states = _states(job)
    index = states.load()
    return {
        "job": job.job, "state": states.uri, "destination": states.destination, "current": index.current,
        "versions": list(reversed(index.versions)), "rollbacks": list(index.events),
        "pending_runs": [meta["run_id"] for meta in states.pending_runs()],
        "other_destinations": [{"state": uri, "destination": other.destination, "current": other.current}
                               for uri, other in other_states(job)],
    }


def format_state(report: dict[str, Any]) -> str:
    destination = ", ".join(f"{k}={v}" for k, v in report["destination"].items())
    lines = [f"state of job {report['job']} at {report['state']}", f"  destination: {destination}"]
    if not report["versions"]:
        lines.append("  no versions yet: the next run sends everything")
    else:
        lines.append(f"  current version: {report['current'] or '(none: before the first run)'}")
        lines.append(f"  {'':2}{'VERSION (newest first)':<34} {'PARENT':<28} {'IDENTIFIERS':>12} {'REJECTED':>9} "
                     f"{'ADDED':>10} {'REMOVED':>10}  WRITTEN")
        for v in report["versions"]:
            mark = "*" if v["run_id"] == report["current"] else " "
            name = v["run_id"] + (" (pruned)" if v.get("pruned") else "") + (" (caught up)" if v.get("how") == "caught up" else "")
            lines.append(f"  {mark} {name:<34} {v['parent'] or '-':<28} {v['identifiers']:>12,} {v['rejected']:>9,} "
                         f"{v['added']:>10,} {v['removed']:>10,}  {v['written_at']}")
    for event in report["rollbacks"]:
        lines.append(f"  rolled back at {event['at']}: {event['rollback_from']} -> {event['rollback_to']}")
    if report["pending_runs"]:
        lines.append(f"  unfinished runs (folded in by the next run): {', '.join(report['pending_runs'])}")
    for other in report["other_destinations"]:
        lines.append(f"  another destination's state under this job: {other['state']} (current {other['current']})")
    return "\n".join(lines)


def rollback_state(job: JobConfig, to: str) -> str:
    states = _states(job)
    before, after = states.rollback(to)
    old, new = before.version(before.current), after.version(to)
    assert new is not None
    if before.current == to:
        return f"state version {to} is already the current one at {states.uri}; nothing changed"
    was = f"{before.current} ({old['identifiers']:,} identifiers)" if old else "(none)"
    return (f"rolled back the state at {states.uri}: the current version was {was}, now it is {to} "
            f"({new['identifiers']:,} identifiers, {new['rejected']:,} rejected). The next run diffs against {to}: "
            "what later runs added is sent again, and in mirror mode what they removed is excluded again if it is "
            "still absent from the file.")
