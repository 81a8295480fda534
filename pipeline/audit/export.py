"""`rokt-pipeline audit export`: a job's outputs as Parquet tables for the warehouse, with a stable schema.

Four tables, one file each, columns and types fixed by TABLES (docs/audit-tables.md is generated from it, and a test
keeps the two the same): `runs` (one row per attempt of a run), `manifest` (one row per manifest line), `reject_reasons`
(rows rejected per reason and attempt) and `delivery_index` (which batch each identifier went in, by the first 32 hex
characters of its SHA-256, which a warehouse computes from its own data to join). No raw identifier is in any of them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.audit.index import BATCH, INDEX, KEY
from pipeline.audit.runs import attempts
from pipeline.config import JobOutputs, describe_destination
from pipeline.ledger import read_records
from pipeline.outputs import run_ids, run_store, store_at


Column = tuple[str, pl.DataType, str]  # name, type, meaning

TABLES: dict[str, tuple[str, list[Column]]] = {
    "runs": ("One row per attempt of a run (a resume under the same run id is the run's next attempt).", [
        ("job", pl.String(), "the job's name"),
        ("run_id", pl.String(), "the run (its folder under the job's outputs)"),
        ("attempt", pl.Int64(), "1 for the run's first attempt, 2 for its first resume, ..."),
        ("started_at", pl.String(), "when the attempt started (ISO 8601, UTC)"),
        ("finished_at", pl.String(), "when it ended"),
        ("dry_run", pl.Boolean(), "true: nothing was sent"),
        ("endpoint", pl.String(), "audience_import, data_deletion, nurture_unsubscribe, network_privacy, ..."),
        ("destination", pl.String(), "where the requests went, in words (URL, account, list, action)"),
        ("destination_url", pl.String(), "the API's base URL"),
        ("production", pl.Boolean(), "true when the URL is Rokt's own"),
        ("rows_read", pl.Int64(), "rows of the source read"),
        ("rows_rejected", pl.Int64(), "rows quarantined in rejects.csv"),
        ("duplicates_dropped", pl.Int64(), "rows that repeated an identifier already in the file"),
        ("identifiers", pl.Int64(), "valid, distinct identifiers the run had to deliver"),
        ("identifiers_accepted", pl.Int64(), "identifiers accepted by the API in this attempt"),
        ("identifiers_left", pl.Int64(), "identifiers not accepted in this attempt nor an earlier one"),
        ("requests", pl.Int64(), "HTTP requests made, retries included"),
        ("retries", pl.Int64(), "of which retries"),
        ("ambiguous", pl.Int64(), "requests whose answer was lost after the API may have acted"),
        ("stopped_reason", pl.String(), "why the attempt stopped early, if it did"),
        ("already_delivered_by", pl.String(), "the run that had delivered this export already (nothing was sent)"),
        ("source_fingerprint", pl.String(), "SHA-256 over the input files' URIs, sizes and versions"),
    ]),
    "manifest": ("One row per manifest line: each request's outcome, and the lines that are not outcomes (`record`).", [
        ("job", pl.String(), "the job's name"),
        ("run_id", pl.String(), "the run"),
        ("record", pl.String(), "outcome, or sending / unrecorded_attempts / task_state"),
        ("endpoint", pl.String(), "the endpoint family"),
        ("target", pl.String(), "digest of the destination (runs.destination says it in words)"),
        ("batch", pl.Int64(), "the batch's number in the run (stable for the same input and batch size)"),
        ("records", pl.Int64(), "identifiers in the request"),
        ("digest", pl.String(), "SHA-256 of the request's identifiers, in order"),
        ("subject", pl.String(), "one-subject endpoints: SHA-256 (hex) of the identifier"),
        ("request_type", pl.String(), "network privacy: NETWORK_OPT_OUT or NETWORK_DATA_DELETION"),
        ("action", pl.String(), "audience import: include or exclude"),
        ("status", pl.String(), "accepted, rejected, failed, dry_run (outcomes only)"),
        ("http_status", pl.Int64(), "the last answer's HTTP status"),
        ("attempts", pl.Int64(), "attempts the request took"),
        ("ambiguous", pl.Boolean(), "the API may have acted on it more than once"),
        ("started_at", pl.String(), "when its first attempt left"),
        ("finished_at", pl.String(), "when its outcome was recorded"),
        ("error", pl.String(), "why it was not accepted"),
        ("request_id", pl.String(), "the API's id for its last answer (what Rokt support asks for)"),
        ("ids", pl.String(), "every id the API returned, as JSON (unsubscribe id, requestId, taskId, operationId, ...)"),
        ("details", pl.String(), "the line's other fields, as JSON"),
    ]),
    "reject_reasons": ("Rows rejected per reason, per attempt (rejects.csv has them row by row).", [
        ("job", pl.String(), "the job's name"),
        ("run_id", pl.String(), "the run"),
        ("attempt", pl.Int64(), "the attempt"),
        ("reason", pl.String(), "why the rows were rejected"),
        ("rows", pl.Int64(), "how many"),
    ]),
    "delivery_index": ("Which batch each identifier of a batch run went in.", [
        ("job", pl.String(), "the job's name"),
        ("run_id", pl.String(), "the run"),
        ("batch", pl.Int64(), "the batch (manifest.batch)"),
        ("sha256_prefix", pl.String(), "the first 32 hex characters of the SHA-256 of the normalised identifier"),
    ]),
}

_MANIFEST_COLUMNS = {name for name, _, _ in TABLES["manifest"][1]}


def export(outputs: JobOutputs, to: str) -> dict[str, int]:
    """Write the four tables under `to` (a folder or an s3:// prefix); returns the rows of each."""
    target = store_at(to, outputs.output)
    counts = {}
    with tempfile.TemporaryDirectory(prefix="rokt-audit-") as scratch:
        folder = Path(scratch)
        for table, frame in _tables(outputs, folder).items():
            path = folder / f"{table}.parquet"
            frame.write_parquet(path)
            target.upload_file(path.name, path)
            counts[table] = frame.height
    return counts


def _tables(outputs: JobOutputs, scratch: Path) -> dict[str, pl.DataFrame]:
    runs, manifest, reasons, indexes = [], [], [], []
    for run_id in run_ids(outputs):
        store = run_store(outputs, run_id)
        history = attempts(store)
        runs += [_run_row(outputs.job, run_id, summary) for summary in history]
        reasons += [{"job": outputs.job, "run_id": run_id, "attempt": summary.get("attempt") or 1, "reason": reason,
                     "rows": rows} for summary in history for reason, rows in (summary.get("reject_reasons") or {}).items()]
        manifest += [_manifest_row(outputs.job, run_id, line) for line in read_records(store)[0]]
        index = store.local_copy(INDEX, scratch)  # read whole before the next run's copy takes its place
        if index is not None:
            indexes.append(pl.read_parquet(index).select(pl.lit(outputs.job).alias("job"), pl.lit(run_id).alias("run_id"),
                                        pl.col(BATCH).cast(pl.Int64), pl.col(KEY).bin.encode("hex").alias("sha256_prefix")))
    frames = {"runs": runs, "manifest": manifest, "reject_reasons": reasons}
    tables = {name: pl.DataFrame(rows, schema=_schema(name)) for name, rows in frames.items()}
    tables["delivery_index"] = pl.concat(indexes) if indexes else pl.DataFrame(schema=_schema("delivery_index"))
    return {name: frame.select(list(_schema(name))).cast(_schema(name)) for name, frame in tables.items()}


def _schema(table: str) -> dict[str, pl.DataType]:
    return {name: dtype for name, dtype, _ in TABLES[table][1]}


def _run_row(job: str, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    destination = summary.get("destination") or {}
    delivered_by = summary.get("already_delivered_by") or {}
    row = {name: summary.get(name) for name in _schema("runs")}
    return row | {"job": job, "run_id": run_id, "attempt": summary.get("attempt") or 1,
                  "destination": describe_destination(destination) if destination else None,
                  "destination_url": destination.get("url"), "production": destination.get("production"),
                  "already_delivered_by": delivered_by.get("run_id")}


def _manifest_row(job: str, run_id: str, line: dict[str, Any]) -> dict[str, Any]:
    ids = line.get("ids") if isinstance(line.get("ids"), dict) else {}
    row = {name: line.get(name) for name in _MANIFEST_COLUMNS}
    details = {key: value for key, value in line.items() if key not in _MANIFEST_COLUMNS and key != "run_id"}
    return row | {"job": job, "run_id": run_id, "record": line.get("record", "outcome"),
                  "request_id": ids.get("request_id"), "ids": json.dumps(ids, sort_keys=True),
                  "details": json.dumps(details, sort_keys=True, default=str)}


def schema_markdown() -> str:
    """docs/audit-tables.md: the tables' columns, types and meanings, from TABLES (tests/unit keep it current)."""
    lines = ["# Audit tables", "",
             "`rokt-pipeline audit export JOB --to DIR_OR_S3` writes a job's outputs as four Parquet files with this",
             "schema, so a team can load them into Snowflake, BigQuery or Redshift and join them with its own data. The",
             "columns and their types are stable: a change is a new column, never a renamed or retyped one. No raw",
             "identifier is in any table. (Generated from `pipeline/audit/export.py`; a test fails when this page is stale.)",
             ""]
    for table, (meaning, columns) in TABLES.items():
        lines += [f"## `{table}.parquet`", "", meaning, "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | {dtype} | {text} |" for name, dtype, text in columns]
        lines.append("")
    return "\n".join(lines)
