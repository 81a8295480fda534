"""`rokt-pipeline run` and `validate`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cli.common import add_common, add_job, job_file
from pipeline.config import JobConfig, load_job
from pipeline.words import plural

log = logging.getLogger("pipeline.cli")


def add_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run a job: read, validate, hash, send, record")
    add_job(run)
    run.add_argument("--run-id", help="resume or name a run; batches already accepted under it are skipped")
    run.add_argument("--dry-run", action="store_true", help="everything but the HTTP calls")
    run.add_argument("--yes", action="store_true", help="confirm a destructive run beyond the job's safety limit")
    run.add_argument("--force", action="store_true",
                     help="send the export again although an earlier run delivered it to this destination already")
    run.add_argument("--source-uri", help="read this file, folder, glob or s3:// URI instead of source.uri (e.g. the export an upstream task just wrote)")
    run.add_argument("--max-duration", metavar="DURATION",
                     help="stop starting requests after this long (45m, 1h30m, 90s): those in flight finish and are "
                          "recorded, and the run exits 75; the same --run-id carries on (overrides destination.max_duration)")
    add_common(run)
    run.set_defaults(command=_run)

    validate = commands.add_parser("validate", help="check the job file and its input, say where the data would go; "
                                                    "nothing is sent")
    add_job(validate)
    add_common(validate, json_output="the report as JSON (counts, reject reasons, destination) and nothing else")
    validate.set_defaults(command=_validate)


def _run(args: argparse.Namespace) -> int:
    from pipeline.progress import LogProgress, TerminalProgress
    from pipeline.runner import run_job

    overrides = {"source.uri": args.source_uri} if args.source_uri else {}
    if args.max_duration:
        overrides["destination.max_duration"] = args.max_duration
    job = load_job(job_file(args), overrides=overrides)
    if job.destination.effective_limits.requests_per_minute is not None:
        _warn_about_a_test_minute()
    on_terminal = sys.stderr.isatty() and args.log_format == "text"
    progress = TerminalProgress() if on_terminal else LogProgress()
    summary = run_job(job, run_id=args.run_id, dry_run=args.dry_run, progress=progress, confirmed=args.yes,
                      force=args.force)
    if summary.already_delivered_by is not None:
        earlier = summary.already_delivered_by
        print(f"run {summary.run_id}: nothing sent: this export was already delivered to {job.destination.describe_text()} "
              f"by run {earlier['run_id']} at {earlier['at']} (its outputs: {earlier['output_dir']}); --force sends it again")
        return 0
    line = _summary_line(job, summary)
    if not on_terminal:  # there it is printed just below; in a log it is the run's last word
        log.info("%s", line, extra={"fields": {"summary": _summary_fields(summary)}})
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


def _summary_line(job: JobConfig, summary: Any) -> str:
    from pipeline.http.limits import describe_send_time

    line = (f"run {summary.run_id}: {plural(summary.rows_read, 'row')} read, {summary.rows_rejected:,} rejected, "
            f"{plural(summary.duplicates_dropped, 'duplicate')}; ")
    if summary.dry_run:
        to_send = summary.batches - summary.batches_by_status.get("already_accepted", 0)
        return line + (f"dry run: would send {plural(summary.identifiers, 'identifier')} as "
                       f"{describe_send_time(to_send, job.destination.effective_limits)}; {summary.elapsed_seconds:.1f}s")
    statuses = ", ".join(f"{n:,} {status}" for status, n in summary.batches_by_status.items()) or "no batches"
    line += (f"{summary.identifiers_accepted:,} of {plural(summary.identifiers, 'identifier')} accepted; batches: "
             f"{statuses}; {plural(summary.retries, 'retry', 'retries')}; {summary.elapsed_seconds:.1f}s")
    rate = summary.sending_rate
    if rate and rate["throttled_answers"]:
        unit = "/min" if rate["unit"] == "per_minute" else "/s"
        line += (f"; {plural(rate['throttled_answers'], chr(39) + 'slow down' + chr(39) + ' answer')}: slowed to "
                 f"{rate['lowest']:g}{unit} at worst, {rate['at_end']:g}{unit} at the end (limit {rate['limit']:g}{unit})")
    return line


def _summary_fields(summary: Any) -> dict[str, Any]:
    """The run's counts as JSON log keys (what summary.json holds, less the long lists)."""
    keys = ("run_id", "job", "dry_run", "rows_read", "rows_rejected", "duplicates_dropped", "identifiers",
            "identifiers_accepted", "identifiers_left", "batches", "batches_by_status", "requests", "retries",
            "elapsed_seconds", "exit_code", "stopped_reason", "output_dir")
    found = summary.to_dict() | {"exit_code": summary.exit_code}
    return {key: found[key] for key in keys if key in found}


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

    job = load_job(job_file(args))
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
    limit = job.source.max_reject_fraction
    too_many = stream.rows_rejected > limit * stream.rows_read
    if args.json:
        print(json.dumps(report | {"ok": not too_many}, indent=2))
        return 2 if too_many else 0
    _print_report(report)
    if too_many:
        print(f"error: {stream.rows_rejected:,} of {stream.rows_read:,} rows are invalid, above source.max_reject_fraction={limit}: "
              "a run would send nothing (reasons above)", file=sys.stderr)
        return 2
    print(f"destination: {job.destination.describe_text()}")
    print(f"ok: {plural(stream.identifiers, 'identifier')} would be sent to {endpoint.spec.family} as "
          f"{describe_send_time(batches, job.destination.effective_limits)}; nothing was sent")
    return 0


def _print_report(report: dict[str, Any]) -> None:
    print(f"job {report['job']} ({report['endpoint']}), {plural(len(report['files']), 'file')}:")
    for file in report["files"]:
        print(f"  {file['uri'] if isinstance(file, dict) and 'uri' in file else file}")
    print(f"{plural(report['rows_read'], 'row')} read, {report['rows_rejected']:,} rejected, "
          f"{plural(report['duplicates'], 'duplicate')}"
          f"{', ' + plural(report['superseded'], 'row') + ' superseded' if report['superseded'] else ''}: "
          f"{plural(report['identifiers'], 'identifier')} in {plural(report['requests'], 'request')}")
    if report["reject_reasons"]:
        print("rejected (rows, reason; a run's rejects.csv names each row):")
        width = len(f"{max(report['reject_reasons'].values()):,}")
        for reason, count in sorted(report["reject_reasons"].items(), key=lambda item: (-item[1], item[0])):
            print(f"  {count:>{width},}  {reason}")
