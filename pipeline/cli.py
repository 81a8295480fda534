"""`rokt-pipeline run | validate | sandbox`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from pipeline.config import load_job
from pipeline.errors import PipelineError
from pipeline.logs import configure_logging

log = logging.getLogger("pipeline.cli")


class Terminated(BaseException):
    """SIGTERM, the way Kubernetes, systemd or a batch scheduler stops a job: handled like Ctrl-C, so the requests
    already sent are answered and recorded before the process ends (a BaseException, as KeyboardInterrupt is)."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run_and_exit() -> None:
    """The console entry point: main(), then leave the process without tearing the interpreter down.

    Everything a command writes is closed before main() returns; what is still buffered is flushed here.
    Python's teardown of polars, numpy and a large run's data took 0.15-0.3 s after every command (a seventh
    of a 1M-row dry run) and does nothing the next process needs.
    """
    signal.signal(signal.SIGTERM, _terminated)  # here, not in main(): a process-wide choice, not a library's
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "verbose", False))
    try:
        return args.command(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: run again with the same --run-id to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: run again with the same --run-id to resume", file=sys.stderr)
        return 143
    except OSError as exc:  # the machine, not the data: a full disk, a permission, a vanished directory
        print(f"error: {exc}; fix that and run again with the same --run-id to resume", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: say so plainly; details only when asked for
        if getattr(args, "verbose", False):
            log.exception("unexpected error")
        print(f"error: unexpected {type(exc).__name__}; rerun with --verbose for details", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rokt-pipeline", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a job: read, validate, hash, send, record")
    run.add_argument("job", help="the job's YAML file")
    run.add_argument("--run-id", help="resume or name a run; batches already accepted under it are skipped")
    run.add_argument("--dry-run", action="store_true", help="everything but the HTTP calls")
    run.add_argument("--yes", action="store_true", help="confirm a destructive run beyond the job's safety limit")
    run.add_argument("--source-uri", help="read this file, folder, glob or s3:// URI instead of source.uri (e.g. the export an upstream task just wrote)")
    _common(run)
    run.set_defaults(command=_run)

    validate = commands.add_parser("validate", help="check the job file and its input; nothing is sent")
    validate.add_argument("job")
    _common(validate)
    validate.set_defaults(command=_validate)

    status = commands.add_parser("status", help="summarise a run from its ledger (also a crashed one)")
    status.add_argument("--config", required=True, help="the job file")
    status.add_argument("--run-id", required=True)
    status.add_argument("--json", action="store_true")
    _common(status)
    status.set_defaults(command=_status)

    state = commands.add_parser("state", help="show or roll back the sync state of an incremental or mirror job")
    state_actions = state.add_subparsers(required=True, metavar="ACTION")
    show = state_actions.add_parser("show", help="the destination's state versions, the current one first")
    show.add_argument("--config", required=True, help="the job file")
    show.add_argument("--json", action="store_true")
    _common(show)
    show.set_defaults(command=_state_show)
    rollback = state_actions.add_parser("rollback", help="make an earlier state version the current one")
    rollback.add_argument("--config", required=True, help="the job file")
    rollback.add_argument("--to", required=True, metavar="RUN_ID", help="the run whose state version becomes current")
    _common(rollback)
    rollback.set_defaults(command=_state_rollback)

    deletions = commands.add_parser("deletions", help="list, cancel and follow Data Deletion API tasks")
    actions = deletions.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print the account's deletion tasks with their lifecycle state")
    listing.add_argument("--config", required=True, help="a job file with endpoint: data_deletion")
    listing.add_argument("--status", help="only tasks in this state (pending, ready, actioned, cancelled)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    _common(listing)
    listing.set_defaults(command=_deletions_list)
    cancel = actions.add_parser("cancel", help="cancel tasks still PENDING or READY")
    cancel.add_argument("--config", required=True)
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    _common(cancel)
    cancel.set_defaults(command=_deletions_cancel)
    sync = actions.add_parser("sync", help="append the current state of a run's tasks to its manifest")
    sync.add_argument("--config", required=True)
    sync.add_argument("--run-id", required=True)
    _common(sync)
    sync.set_defaults(command=_deletions_sync)

    sandbox = commands.add_parser("sandbox", help="serve the local emulator of the Rokt APIs")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8787)
    sandbox.add_argument("--public-key", default="rpub-sandbox")
    sandbox.add_argument("--secret-key", default="rsec-sandbox")
    sandbox.add_argument("--api-key", default="sandbox-legacy-api-key", help="legacy audience import API key")
    sandbox.add_argument("--app-id", default="sandbox-app-id", help="Data Deletion OAuth app id")
    sandbox.add_argument("--app-secret", default="sandbox-app-secret")
    sandbox.add_argument("--webhook-api-key", default="sandbox-webhook-api-key", help="Nurture Unsubscribe API key")
    sandbox.add_argument("--partner-token", default="sandbox-partner-token", help="Partnerships API bearer token")
    sandbox.add_argument("--faults", help='fault plan as JSON, e.g. \'{"rates": [{"rate": 0.1, "status": 503, "retry_after": 1}]}\'')
    sandbox.add_argument("--latency-ms", type=float, default=0, help="added to every answer")
    sandbox.add_argument("--no-keep-identifiers", action="store_true", help="count identifiers but do not keep them (large runs)")
    _common(sandbox)
    sandbox.set_defaults(command=_sandbox)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


def _run(args: argparse.Namespace) -> int:
    from pipeline.progress import LogProgress, TerminalProgress
    from pipeline.runner import run_job

    job = load_job(args.job, overrides={"source.uri": args.source_uri} if args.source_uri else None)
    progress = TerminalProgress() if sys.stderr.isatty() and args.log_format == "text" else LogProgress()
    summary = run_job(job, run_id=args.run_id, dry_run=args.dry_run, progress=progress, confirmed=args.yes)
    statuses = ", ".join(f"{n} {status}" for status, n in summary.batches_by_status.items()) or "no batches"
    line = (
        f"run {summary.run_id}: {summary.rows_read:,} rows read, {summary.rows_rejected:,} rejected, "
        f"{summary.duplicates_dropped:,} duplicates; {summary.identifiers_accepted:,} of {summary.identifiers:,} "
        f"identifiers accepted; batches: {statuses}; {summary.retries} retries; {summary.elapsed_seconds:.1f}s"
    )
    if summary.estimated_send_seconds is not None:
        line += f"; estimated send time at the configured limits: {summary.estimated_send_seconds:.1f}s"
    log.info("%s", line)
    print(line)
    if summary.sync is not None:
        from pipeline.sync.report import describe_outcome, describe_plan

        print(describe_plan(summary.sync, summary.dry_run))
        if not summary.dry_run:
            print(describe_outcome(summary.sync))
    print(f"output: {summary.output_dir}")
    if summary.exit_code:
        print(f"not everything was accepted ({summary.identifiers_left:,} identifiers left): see the manifest in {summary.output_dir}; "
              f"rerun with --run-id {summary.run_id} to resume", file=sys.stderr)
    return summary.exit_code


def _validate(args: argparse.Namespace) -> int:
    from pipeline.endpoints.registry import endpoint_for
    from pipeline.runner import open_stream
    from pipeline.storage import LocalStore

    job = load_job(args.job)
    endpoint = endpoint_for(job)
    with tempfile.TemporaryDirectory(prefix="rokt-validate-") as scratch:
        stream = open_stream(job, endpoint, LocalStore(Path(scratch)), Path(scratch))
        stream.max_reject_fraction = 1.0  # read everything and name every reason; the threshold is judged below
        batches = sum(1 for _ in stream.batches())  # everything but sending
    report = {
        "job": job.job, "endpoint": endpoint.spec.family, "files": list(stream.source.files),
        "rows_read": stream.rows_read, "rows_rejected": stream.rows_rejected, "duplicates": stream.duplicates_dropped,
        "superseded": stream.superseded, "identifiers": stream.identifiers, "requests": batches,
        "reject_reasons": stream.reject_reasons,
    }
    print(json.dumps(report, indent=2))
    limit = job.source.max_reject_fraction
    if stream.rows_rejected > limit * stream.rows_read:
        print(f"error: {stream.rows_rejected:,} of {stream.rows_read:,} rows are invalid, above source.max_reject_fraction={limit}: "
              "a run would send nothing (reasons above)", file=sys.stderr)
        return 2
    print(f"ok: {stream.identifiers:,} identifiers would be sent to {endpoint.spec.family} in {batches:,} requests; nothing was sent")
    return 0


def _status(args: argparse.Namespace) -> int:
    from pipeline.status import run_status

    report = run_status(load_job(args.config), args.run_id)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    planned = "?" if report["batches_planned"] is None else report["batches_planned"]
    pending = "?" if report["pending"] is None else report["pending"]
    print(f"run {report['run_id']} ({report['endpoint']}): {planned} planned; {report['accepted']} accepted, "
          f"{pending} pending, {report['failed']} failed, {report['rejected']} rejected, {report['ambiguous']} ambiguous"
          f"{'' if report['finished'] else '; the run did not finish (resume it with the same --run-id)'}"
          f"{'; ' + str(report['manifest_torn_lines']) + ' torn manifest line(s) ignored' if report['manifest_torn_lines'] else ''}")
    return 0


def _state_show(args: argparse.Namespace) -> int:
    from pipeline.sync.commands import format_state, show_state

    report = show_state(load_job(args.config))
    print(json.dumps(report, indent=2) if args.json else format_state(report))
    return 0


def _state_rollback(args: argparse.Namespace) -> int:
    from pipeline.sync.commands import rollback_state

    print(rollback_state(load_job(args.config), args.to))
    return 0


def _deletions_list(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from pipeline.deletions import list_tasks

    now = datetime.now(timezone.utc)
    tasks = list_tasks(load_job(args.config), args.status)
    rows = [{"taskId": t.task_id, "status": t.status, "creationTime": t.raw.get("creationTime"), **t.days_left(now)} for t in tasks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'TASK ID':<38} {'STATUS':<11} {'CREATED':<26} {'DAYS TO READY':>13} {'DAYS TO ACTIONED (MAX)':>22}")
    for row in rows:
        print(f"{row['taskId']:<38} {row['status']:<11} {str(row['creationTime']):<26} "
              f"{_or_dash(row['days_to_ready']):>13} {_or_dash(row['days_to_actioned_max']):>22}")
    print(f"{len(rows)} task(s)")
    return 0


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _deletions_cancel(args: argparse.Namespace) -> int:
    from pipeline.deletions import cancel_tasks

    outcomes = cancel_tasks(load_job(args.config), args.task_ids)
    for outcome in outcomes:
        print(f"{outcome.task_id}: {'cancelled' if outcome.cancelled else 'not cancelled'} "
              f"(HTTP {outcome.http_status}){'' if outcome.cancelled else ': ' + outcome.message}")
    return 0 if all(o.cancelled for o in outcomes) else 1


def _deletions_sync(args: argparse.Namespace) -> int:
    from pipeline.deletions import sync_run

    result = sync_run(load_job(args.config), args.run_id)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result["by_status"].items())) or "no tasks"
    print(f"run {result['run_id']}: {result['tasks']} task(s): {states}; {result['open']} still open")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox.server import Sandbox
    from pipeline.sandbox.state import Credentials

    credentials = Credentials(args.public_key, args.secret_key, args.api_key, args.app_id, args.app_secret,
                              args.webhook_api_key, args.partner_token)
    sandbox = Sandbox(args.host, args.port, credentials, keep_identifiers=not args.no_keep_identifiers)
    if args.faults:
        sandbox.faults.configure(json.loads(args.faults))
    if args.latency_ms:
        sandbox.faults.configure({"latency_seconds": args.latency_ms / 1000})
    print(f"sandbox listening on {sandbox.url} (admin: {sandbox.url}/_sandbox/state)", flush=True)
    try:
        sandbox.server.serve_forever()
    except (KeyboardInterrupt, Terminated):
        pass
    finally:
        sandbox.server.server_close()
    return 0


if __name__ == "__main__":
    run_and_exit()
