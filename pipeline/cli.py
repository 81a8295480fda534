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
from pipeline.sandbox.credentials import Credentials

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
    run.add_argument("--force", action="store_true",
                     help="send the export again although an earlier run delivered it to this destination already")
    run.add_argument("--source-uri", help="read this file, folder, glob or s3:// URI instead of source.uri (e.g. the export an upstream task just wrote)")
    run.add_argument("--max-duration", metavar="DURATION",
                     help="stop starting requests after this long (45m, 1h30m, 90s): those in flight finish and are "
                          "recorded, and the run exits 75; the same --run-id carries on (overrides destination.max_duration)")
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
    sync = actions.add_parser("sync", help="append the current state of a run's tasks to its manifest (every open "
                                            "run's, with one token and one listing, unless --run-id names one)")
    sync.add_argument("--config", required=True)
    sync.add_argument("--run-id", help="this run only (default: every run with a task not yet ACTIONED or CANCELLED)")
    _common(sync)
    sync.set_defaults(command=_deletions_sync)

    defaults = Credentials()
    sandbox = commands.add_parser(
        "sandbox", help="serve the local emulator of the Rokt APIs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A local emulator of every Rokt endpoint the connector sends to, with the published limits and "
                    "fault injection.\n\nThe credentials it accepts (each can be changed below):\n  "
                    + "\n  ".join(defaults.described()))
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8787)
    sandbox.add_argument("--public-key", default=defaults.public_key, help="audience import v3 public key")
    sandbox.add_argument("--secret-key", default=defaults.secret_key, help="audience import v3 secret key")
    sandbox.add_argument("--api-key", default=defaults.legacy_api_key, help="legacy audience import API key")
    sandbox.add_argument("--app-id", default=defaults.app_id, help="Data Deletion OAuth app id")
    sandbox.add_argument("--app-secret", default=defaults.app_secret, help="Data Deletion OAuth app secret")
    sandbox.add_argument("--webhook-api-key", default=defaults.webhook_api_key, help="Nurture Unsubscribe API key")
    sandbox.add_argument("--partner-token", default=defaults.partner_token, help="Partnerships API fixed bearer token")
    sandbox.add_argument("--partner-client-id", default=defaults.partner_client_id, help="Partnerships API client id")
    sandbox.add_argument("--partner-client-secret", default=defaults.partner_client_secret, help="Partnerships API client secret")
    sandbox.add_argument("--partner-token-lifetime", type=float, default=300.0,
                         help="seconds a Partnerships access token lives (default 300, as published)")
    sandbox.add_argument("--minute-seconds", type=float, default=60.0,
                         help="how long a per-minute limit's minute lasts (tests shorten it; the client must be run with "
                              "ROKT_PIPELINE_TEST_MINUTE_SECONDS set to the same)")
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
    from pipeline.http.limits import describe_send_time
    from pipeline.progress import LogProgress, TerminalProgress
    from pipeline.runner import run_job

    overrides = {"source.uri": args.source_uri} if args.source_uri else {}
    if args.max_duration:
        overrides["destination.max_duration"] = args.max_duration
    job = load_job(args.job, overrides=overrides)
    if job.destination.effective_limits.requests_per_minute is not None:
        _warn_about_a_test_minute()
    progress = TerminalProgress() if sys.stderr.isatty() and args.log_format == "text" else LogProgress()
    summary = run_job(job, run_id=args.run_id, dry_run=args.dry_run, progress=progress, confirmed=args.yes,
                      force=args.force)
    if summary.already_delivered_by is not None:
        earlier = summary.already_delivered_by
        print(f"run {summary.run_id}: nothing sent: this export was already delivered to {job.destination.describe_text()} "
              f"by run {earlier['run_id']} at {earlier['at']} (its outputs: {earlier['output_dir']}); --force sends it again")
        return 0
    statuses = ", ".join(f"{n} {status}" for status, n in summary.batches_by_status.items()) or "no batches"
    line = (
        f"run {summary.run_id}: {summary.rows_read:,} rows read, {summary.rows_rejected:,} rejected, "
        f"{summary.duplicates_dropped:,} duplicates; {summary.identifiers_accepted:,} of {summary.identifiers:,} "
        f"identifiers accepted; batches: {statuses}; {summary.retries} retries; {summary.elapsed_seconds:.1f}s"
    )
    rate = summary.sending_rate
    if rate and rate["throttled_answers"]:
        unit = "/min" if rate["unit"] == "per_minute" else "/s"
        line += (f"; {rate['throttled_answers']} 'slow down' answers: slowed to {rate['lowest']:g}{unit} at worst, "
                 f"{rate['at_end']:g}{unit} at the end (limit {rate['limit']:g}{unit})")
    if summary.dry_run:
        limits = job.destination.effective_limits
        to_send = summary.batches - summary.batches_by_status.get("already_accepted", 0)
        line += f"; would send {describe_send_time(to_send, limits)}"
    log.info("%s", line)
    print(line)
    if summary.sync is not None:
        from pipeline.sync.report import describe_outcome, describe_plan

        print(describe_plan(summary.sync, summary.dry_run))
        if not summary.dry_run:
            print(describe_outcome(summary.sync))
    print(f"output: {summary.output_dir}")
    if summary.max_duration_reached:
        print(f"out of time: {summary.identifiers_left:,} identifiers are left to send; rerun with --run-id "
              f"{summary.run_id} to carry on", file=sys.stderr)
    elif summary.exit_code:
        print(f"not everything was accepted ({summary.identifiers_left:,} identifiers left): see the manifest in {summary.output_dir}; "
              f"rerun with --run-id {summary.run_id} to resume", file=sys.stderr)
    return summary.exit_code


def _warn_about_a_test_minute() -> None:
    from pipeline.http.limits import TEST_MINUTE_SECONDS, minute_seconds

    if minute_seconds() != 60:
        log.warning("%s is set: per-minute limits count a minute of %gs. That is for tests against a sandbox started "
                    "with the same --minute-seconds, never for Rokt's API", TEST_MINUTE_SECONDS, minute_seconds())


def _validate(args: argparse.Namespace) -> int:
    from pipeline.endpoints.registry import endpoint_for
    from pipeline.http.limits import describe_send_time
    from pipeline.runner import open_stream
    from pipeline.storage import LocalStore

    job = load_job(args.job)
    endpoint = endpoint_for(job)
    with tempfile.TemporaryDirectory(prefix="rokt-validate-") as scratch:
        stream = open_stream(job, endpoint, LocalStore(Path(scratch)), Path(scratch))
        stream.max_reject_fraction = 1.0  # read everything and name every reason; the threshold is judged below
        batches = sum(1 for _ in stream.batches())  # everything but sending
    report = {
        "job": job.job, "endpoint": endpoint.spec.family, "destination": job.destination.describe(),
        "files": list(stream.source.files),
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
    print(f"destination: {job.destination.describe_text()}")
    print(f"ok: {stream.identifiers:,} identifiers would be sent to {endpoint.spec.family} as "
          f"{describe_send_time(batches, job.destination.effective_limits)}; nothing was sent")
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
    from pipeline.deletions import open_runs, sync_runs

    job = load_job(args.config)
    results = sync_runs(job, [args.run_id] if args.run_id else open_runs(job))
    for result in results:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result["by_status"].items())) or "no tasks"
        print(f"run {result['run_id']}: {result['tasks']} task(s): {states}; {result['open']} still open")
    if not results:
        print("no open deletion runs: every task of every run is ACTIONED or CANCELLED")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox.server import Sandbox

    credentials = Credentials(args.public_key, args.secret_key, args.api_key, args.app_id, args.app_secret,
                              args.webhook_api_key, args.partner_token, args.partner_client_id, args.partner_client_secret)
    sandbox = Sandbox(args.host, args.port, credentials, keep_identifiers=not args.no_keep_identifiers,
                      minute_seconds=args.minute_seconds)
    sandbox.state.extension_defaults["partnerships"] = {"token_lifetime": args.partner_token_lifetime}
    sandbox.state.reset()
    if args.faults:
        sandbox.faults.configure(json.loads(args.faults))
    if args.latency_ms:
        sandbox.faults.configure({"latency_seconds": args.latency_ms / 1000})
    # The first line is what scripts read for the URL (pipeline/sandbox/process.py); the credentials follow.
    print(f"sandbox listening on {sandbox.url} (admin: {sandbox.url}/_sandbox/state)", flush=True)
    print("credentials it accepts:\n  " + "\n  ".join(credentials.described()), flush=True)
    if args.minute_seconds != 60:
        print(f"per-minute limits count a minute of {args.minute_seconds:g}s (ROKT_PIPELINE_TEST_MINUTE_SECONDS="
              f"{args.minute_seconds:g} for the client)", flush=True)
    try:
        sandbox.server.serve_forever()
    except (KeyboardInterrupt, Terminated):
        pass
    finally:
        sandbox.server.server_close()
    return 0


if __name__ == "__main__":
    run_and_exit()
