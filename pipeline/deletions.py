"""What a data-protection officer does with deletion tasks: list them, cancel them, and follow a run's tasks
until each is ACTIONED or CANCELLED (appending state lines to that run's manifest for the audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pipeline.config import DataDeletionDestination, JobConfig
from pipeline.endpoints.data_deletion import DataDeletion, created_task_ids
from pipeline.errors import ConfigError, SendError
from pipeline.http.client import sender_for
from pipeline.ledger import open_ledger, read_records, utc_now
from pipeline.endpoints.registry import endpoint_for
from pipeline.outputs import run_ids, run_store
from pipeline.send.resume import seconds_since_recent_starts

READY_AFTER_DAYS = 12
ACTIONED_BY_DAYS = 30
FINAL_STATES = frozenset({"ACTIONED", "CANCELLED"})


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str  # upper case: the documents show both cases
    created: datetime | None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, item: dict[str, Any]) -> Task:
        return cls(str(item["taskId"]), str(item.get("status", "")).upper(), _parse_time(item.get("creationTime")), item)

    def days_left(self, now: datetime) -> dict[str, float | None]:
        """Days until READY (while PENDING) and until the documented 30-day maximum for ACTIONED."""
        if self.created is None or self.status in FINAL_STATES:
            return {"days_to_ready": None, "days_to_actioned_max": None}
        age = (now - self.created).total_seconds() / 86_400
        return {
            "days_to_ready": round(max(READY_AFTER_DAYS - age, 0), 1) if self.status == "PENDING" else None,
            "days_to_actioned_max": round(max(ACTIONED_BY_DAYS - age, 0), 1),
        }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _connect(job: JobConfig) -> tuple[DataDeletion, Any]:
    if not isinstance(job.destination, DataDeletionDestination):
        raise ConfigError(f"deletions commands need a job with endpoint: data_deletion, not {job.destination.endpoint}")
    endpoint = DataDeletion(job.destination, next(iter(job.source.columns.mapped())))
    return endpoint, sender_for(job, endpoint)


def list_tasks(job: JobConfig, status: str | None = None, recent_starts: list[float] = ()) -> list[Task]:
    """The account's tasks (in `status`, when given). `recent_starts`: how long ago requests of this account were
    made (a run moments ago), counted against the rate limit first."""
    endpoint, sender = _connect(job)
    sender.gates[None].seed(list(recent_starts))
    try:
        tasks = [Task.parse(item) for item in endpoint.list_tasks(sender.fetch)]
    finally:
        sender.close()
    wanted = status.upper() if status else None
    return [t for t in tasks if wanted is None or t.status == wanted]


@dataclass(frozen=True)
class CancelOutcome:
    task_id: str
    cancelled: bool
    http_status: int | None
    message: str


def cancel_tasks(job: JobConfig, task_ids: list[str]) -> list[CancelOutcome]:
    """Each task is reported on its own: a 404 or 410 for one does not stop the others."""
    endpoint, sender = _connect(job)
    outcomes = []
    try:
        for task_id in task_ids:
            try:
                response = sender.fetch(endpoint.cancel_request(task_id))
                outcomes.append(CancelOutcome(task_id, True, response.status_code, "cancelled"))
            except SendError as exc:
                outcomes.append(CancelOutcome(task_id, False, exc.http_status, str(exc)))
    finally:
        sender.close()
    return outcomes


def sync_run(job: JobConfig, run_id: str) -> dict[str, Any]:
    """Refresh the state of every task in a run's manifest and append one state line per task."""
    return sync_runs(job, [run_id])[0]


def sync_runs(job: JobConfig, run_ids_to_sync: list[str]) -> list[dict[str, Any]]:
    """sync_run for several runs with one token and one listing of the account's tasks, shared by all: a sync of
    every open run stays within the API's limits however many there are."""
    stores = {run_id: run_store(job, run_id) for run_id in run_ids_to_sync}
    recent: list[float] = []
    for run_id, store in stores.items():
        records = read_records(store)[0]
        if not records:  # checked before opening the ledger, which would create the run's folder
            raise ConfigError(f"no manifest for run {run_id!r} at {store.uri}")
        recent += seconds_since_recent_starts(records, endpoint_for(job))  # a sync right after a run shares its limit
    if not stores:
        return []
    current = {t.task_id: t for t in list_tasks(job, recent_starts=recent)}
    return [_record_task_states(job, run_id, store, current) for run_id, store in stores.items()]


def _record_task_states(job: JobConfig, run_id: str, store: Any, current: dict[str, Task]) -> dict[str, Any]:
    ledger = open_ledger(store, job.output.ledger_flush_records, job.output.ledger_flush_seconds)
    try:
        task_ids = created_task_ids(ledger.records)
        now = datetime.now(timezone.utc)
        states: dict[str, int] = {}
        for task_id in task_ids:
            task = current.get(task_id)
            status = task.status if task else "NOT_LISTED"
            states[status] = states.get(status, 0) + 1
            line = {"run_id": run_id, "job": job.job, "endpoint": "data_deletion", "record": "task_state",
                    "taskId": task_id, "task_status": status, "checked_at": utc_now()}
            if task:
                line.update({k: task.raw.get(k) for k in ("creationTime", "readyTime", "actionedTime", "cancelledTime")})
                line.update(task.days_left(now))
            ledger.append(line)
    finally:
        ledger.close()
    open_tasks = sum(n for status, n in states.items() if status not in FINAL_STATES)
    return {"run_id": run_id, "tasks": len(task_ids), "by_status": states, "open": open_tasks}


def open_runs(job: JobConfig) -> list[str]:
    """Runs of the job with a deletion task not yet seen ACTIONED or CANCELLED (the ones `sync` still needs)."""
    still_open = []
    for run_id in run_ids(job):
        records, _ = read_records(run_store(job, run_id))
        created = set(created_task_ids(records))
        last_seen = {str(r["taskId"]): str(r.get("task_status", "")) for r in records if r.get("record") == "task_state"}
        if any(last_seen.get(task_id) not in FINAL_STATES for task_id in created):
            still_open.append(run_id)
    return still_open
