"""`rokt-pipeline status`, `runs`, `lookup` and `audit export`: what the runs did, read from their outputs alone.

None of them needs a secret: the job file is read for its name, its outputs and the kind of identifiers it sends.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from pipeline.cli.common import add_common, add_job, job_file
from pipeline.config import describe_destination, load_job_outputs
from pipeline.words import plural


def add_commands(commands: Any) -> None:
    status = commands.add_parser("status", help="summarise a run from its ledger (also a crashed one), with its attempts")
    add_job(status)
    status.add_argument("--run-id", required=True, help="the run to summarise (rokt-pipeline runs JOB lists them)")
    add_common(status, json_output="the report as JSON")
    status.set_defaults(command=_status)

    runs = commands.add_parser("runs", help="every run of the job, newest first, with its state")
    add_job(runs)
    add_common(runs, json_output="JSON instead of a table")
    runs.set_defaults(command=_runs)

    lookup = commands.add_parser(
        "lookup", help="where one person's identifier went: run, destination, batch, status, time, Rokt's ids",
        description="Normalises, validates and hashes what it is given exactly as a run does, and looks for its SHA-256 "
                    "in the job's outputs. Exit 0 when found, 1 when not, 2 on bad input. The address is never printed "
                    "nor stored. Give '-' to read the value from standard input, so that it stays out of the command "
                    "line (ps, shell history, a scheduler's logged command).")
    add_job(lookup)
    lookup.add_argument("--email", help="an email address, as written anywhere (it is normalised as a run does); "
                                        "- reads it from standard input")
    lookup.add_argument("--sha256", help="the SHA-256 of a normalised address, hex or base64")
    lookup.add_argument("--phone", help="a phone number (network privacy jobs), in any layout; - reads it from "
                                        "standard input")
    lookup.add_argument("--run-id", help="this run only (default: every run of the job)")
    add_common(lookup, json_output="the findings as JSON")
    lookup.set_defaults(command=_lookup)

    audit = commands.add_parser("audit", help="the audit trail as tables for the warehouse")
    actions = audit.add_subparsers(required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write the job's runs, manifest lines, reject reasons and delivery "
                                               "index as Parquet tables (docs/audit-tables.md)")
    add_job(export)
    export.add_argument("--to", required=True, metavar="DIR_OR_S3", help="a folder or an s3:// prefix")
    export.add_argument("--format", choices=("parquet",), default="parquet", help="the tables' file format (parquet)")
    add_common(export)
    export.set_defaults(command=_audit_export)


def _status(args: argparse.Namespace) -> int:
    from pipeline.audit.runs import run_status

    report = run_status(load_job_outputs(job_file(args)), args.run_id)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    planned = "?" if report["batches_planned"] is None else report["batches_planned"]
    pending = "?" if report["pending"] is None else report["pending"]
    print(f"run {report['run_id']} ({report['endpoint']}): {planned} planned; {report['accepted']} accepted, "
          f"{pending} pending, {report['failed']} failed, {report['rejected']} rejected, {report['ambiguous']} ambiguous"
          f"{'' if report['finished'] else '; the run did not finish (resume it with the same --run-id)'}"
          f"{'; ' + plural(report['manifest_torn_lines'], 'torn manifest line') + ' ignored' if report['manifest_torn_lines'] else ''}")
    if report["destination"]:
        print(f"  destination: {describe_destination(report['destination'])}")
    for attempt in report["attempts"]:
        statuses = ", ".join(f"{n} {s}" for s, n in (attempt["batches_by_status"] or {}).items()) or "nothing sent"
        ending = f"; stopped: {attempt['stopped_reason']}" if attempt["stopped_reason"] else ""
        print(f"  attempt {attempt['attempt']}: {attempt['started_at']} to {attempt['finished_at']}: {statuses}; "
              f"{attempt['identifiers_accepted'] or 0:,} accepted, {attempt['identifiers_left'] or 0:,} left{ending}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from pipeline.audit.runs import list_runs

    rows = list_runs(load_job_outputs(job_file(args)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'RUN ID':<44} {'STARTED':<25} {'ATTEMPTS':>8} {'ACCEPTED':>10} {'LEFT':>8}  STATE")
    for row in rows:
        left = "-" if row["identifiers_left"] is None else f"{row['identifiers_left']:,}"
        print(f"{row['run_id']:<44} {str(row['started_at']):<25} {row['attempts']:>8} "
              f"{row['identifiers_accepted']:>10,} {left:>8}  {row['state']}")
    print(plural(len(rows), "run"))
    return 0


def _lookup(args: argparse.Namespace) -> int:
    from pipeline.audit.lookup import lookup, subject_of

    outputs = load_job_outputs(job_file(args))
    subject = subject_of(outputs, _from_stdin(args.email), _from_stdin(args.sha256), _from_stdin(args.phone))
    findings = lookup(outputs, subject, args.run_id)
    if args.json:
        print(json.dumps({"subject": subject.digest, "rejected_because": subject.rejected_because,
                          "found": [asdict(finding) for finding in findings]}, indent=2))
        return 0 if findings else 1
    if subject.rejected_because:
        print(f"not found: a run rejects this {subject.kind} ({subject.rejected_because}), so it is never sent")
        return 1
    if not findings:
        print(f"not found: no run of {outputs.job} sent {subject.shown}")
        return 1
    for finding in findings:
        where = f"batch {finding.batch}" if finding.batch is not None else (finding.request_type or "its own request")
        ids = ", ".join(f"{key} {value}" for key, value in finding.ids.items()) or "none returned"
        flags = " (ambiguous: the API may have acted on it twice)" if finding.ambiguous else ""
        print(f"run {finding.run_id}: {subject.shown} {finding.status}{flags} at {finding.at}, {where}; "
              f"to {finding.destination}; ids: {ids}")
    return 0


def _from_stdin(value: str | None) -> str | None:
    """'-' stands for the first line of standard input."""
    return sys.stdin.readline().rstrip("\r\n") if value == "-" else value


def _audit_export(args: argparse.Namespace) -> int:
    from pipeline.audit.export import export

    counts = export(load_job_outputs(job_file(args)), args.to)
    tables = ", ".join(f"{table}.parquet ({rows:,} rows)" for table, rows in counts.items())
    print(f"wrote {tables} to {args.to}", file=sys.stdout)
    return 0
