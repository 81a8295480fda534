"""`rokt-pipeline deletions` (list, cancel, sync the Data Deletion API's tasks) and `state` (show, roll back the sync
state of an incremental or mirror job)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.cli.common import add_common, add_job, job_file
from pipeline.config import load_job
from pipeline.errors import ConfigError
from pipeline.words import plural


def add_commands(commands: Any) -> None:
    state = commands.add_parser("state", help="show or roll back the sync state of an incremental or mirror job")
    state_actions = state.add_subparsers(required=True, metavar="ACTION")
    show = state_actions.add_parser("show", help="the destination's state versions, the current one first")
    add_job(show, "a job file with sync_mode: incremental or mirror")
    add_common(show, json_output="JSON instead of a table")
    show.set_defaults(command=_state_show)
    rollback = state_actions.add_parser("rollback", help="make an earlier state version the current one (nothing is "
                                                         "deleted; the next run diffs against it)")
    add_job(rollback, "a job file with sync_mode: incremental or mirror")
    rollback.add_argument("--to", required=True, metavar="RUN_ID", help="the run whose state version becomes current")
    add_common(rollback)
    rollback.set_defaults(command=_state_rollback)

    deletions = commands.add_parser("deletions", help="list, cancel and follow Data Deletion API tasks")
    actions = deletions.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print the account's deletion tasks with their lifecycle state")
    add_job(listing, "a job file with endpoint: data_deletion")
    listing.add_argument("--status", help="only tasks in this state (pending, ready, actioned, cancelled)")
    add_common(listing, json_output="JSON instead of a table")
    listing.set_defaults(command=_deletions_list)
    cancel = actions.add_parser("cancel", help="cancel tasks still PENDING or READY: deletions cancel JOB TASK_ID...")
    add_job(cancel, "a job file with endpoint: data_deletion")
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID", help="the tasks to cancel (deletions list shows them)")
    add_common(cancel)
    cancel.set_defaults(command=_deletions_cancel)
    sync = actions.add_parser("sync", help="record the current state of each open run's tasks in its manifest (or of "
                                            "one run's, with --run-id)")
    add_job(sync, "a job file with endpoint: data_deletion")
    sync.add_argument("--run-id", help="this run only (default: every run with a task not yet ACTIONED or CANCELLED)")
    add_common(sync, json_output="JSON instead of a line per run")
    sync.set_defaults(command=_deletions_sync)


def _state_show(args: argparse.Namespace) -> int:
    from pipeline.sync.commands import format_state, show_state

    report = show_state(load_job(job_file(args)))
    print(json.dumps(report, indent=2) if args.json else format_state(report))
    return 0


def _state_rollback(args: argparse.Namespace) -> int:
    from pipeline.sync.commands import rollback_state

    print(rollback_state(load_job(job_file(args)), args.to))
    return 0


def _deletions_list(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from pipeline.deletions import list_tasks

    now = datetime.now(timezone.utc)
    tasks = list_tasks(load_job(job_file(args)), args.status)
    rows = [{"taskId": t.task_id, "status": t.status, "creationTime": t.raw.get("creationTime"), **t.days_left(now)} for t in tasks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'TASK ID':<38} {'STATUS':<11} {'CREATED':<26} {'DAYS TO READY':>13} {'DAYS TO ACTIONED (MAX)':>22}")
    for row in rows:
        print(f"{row['taskId']:<38} {row['status']:<11} {str(row['creationTime']):<26} "
              f"{_or_dash(row['days_to_ready']):>13} {_or_dash(row['days_to_actioned_max']):>22}")
    print(plural(len(rows), "task"))
    return 0


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _deletions_cancel(args: argparse.Namespace) -> int:
    from pipeline.deletions import cancel_tasks

    if args.job_option and args.job:  # --config JOB T1 T2: the first task id was taken for the job's place
        job, task_ids = args.job_option, [args.job, *args.task_ids]
    elif args.job or args.job_option:
        job, task_ids = job_file(args), args.task_ids
    else:
        raise ConfigError("deletions cancel: give the job file, then the task ids to cancel")
    outcomes = cancel_tasks(load_job(job), task_ids)
    for outcome in outcomes:
        print(f"{outcome.task_id}: {'cancelled' if outcome.cancelled else 'not cancelled'} "
              f"(HTTP {outcome.http_status}){'' if outcome.cancelled else ': ' + outcome.message}")
    return 0 if all(o.cancelled for o in outcomes) else 1


def _deletions_sync(args: argparse.Namespace) -> int:
    from pipeline.deletions import open_runs, sync_runs

    job = load_job(job_file(args))
    results = sync_runs(job, [args.run_id] if args.run_id else open_runs(job))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result["by_status"].items())) or "no tasks"
        print(f"run {result['run_id']}: {plural(result['tasks'], 'task')}: {states}; {result['open']} still open")
    if not results:
        print("no open deletion runs: every task of every run is ACTIONED or CANCELLED")
    return 0
