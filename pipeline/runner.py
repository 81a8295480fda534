"""One job run, as wiring: open the source, plan, prepare, hand the batches to the sending step, write the summary.

    source (pipeline/sources) -> prepare (pipeline/prepare) -> send (pipeline/send) -> ledger (pipeline/ledger.py)

The only module that knows every stage; what each stage does lives in its own package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import faultpoints
from pipeline.audit.index import INDEX, DeliveryIndexWriter
from pipeline.config import JobConfig
from pipeline.endpoints.base import Endpoint
from pipeline.endpoints.registry import endpoint_for
from pipeline.errors import ConfigError, InputError
from pipeline.ledger import PLAN, REJECTS, SENDING, SUMMARIES, SUMMARY, open_ledger, read_records, utc_now, write_json
from pipeline.outputs import job_store, new_run_id, run_store, valid_run_id
from pipeline.prepare.stream import PreparedStream
from pipeline.progress import Progress, SilentProgress
from pipeline.register import DeliveryRegister, Registration
from pipeline.rejects import RejectsWriter
from pipeline.send import send_batches
from pipeline.sources import open_source
from pipeline.sources.local import SourceFrame
from pipeline.storage import LocalStore, Store
from pipeline.summary import RunSummary

if TYPE_CHECKING:
    from pipeline.sync import SyncPlan

log = logging.getLogger(__name__)

__all__ = ["RunSummary", "fingerprint_digest", "open_stream", "run_job"]


def run_job(
    job: JobConfig, run_id: str | None = None, dry_run: bool = False, progress: Progress | None = None,
    confirmed: bool = False, force: bool = False,
) -> RunSummary:
    """Run a job. `confirmed` is the command line's --yes, for destructive runs beyond the job's safety limit;
    `force` sends an export again that the delivery register says was delivered already."""
    run_id = run_id or new_run_id()
    if not valid_run_id(run_id):
        raise ConfigError(f"--run-id {run_id!r}: use letters, digits and . _ : + @ = - (at most 200 characters)")
    started = time.monotonic()
    endpoint = endpoint_for(job)
    _check_writable(job, job_store(job))
    # The spill holds normalised identifiers: a private temporary folder, removed on every way out.
    with tempfile.TemporaryDirectory(prefix="rokt-pipeline-") as scratch:
        workdir = Path(scratch)
        source = open_source(job.source, workdir)
        fingerprint = fingerprint_digest(source.fingerprint)
        register = None if dry_run or job.destination.sync_mode != "full" else DeliveryRegister(
            job_store(job), endpoint.target, fingerprint)  # incremental and mirror runs keep a state of their own
        earlier = register.earlier() if register is not None and not force else None
        if earlier is not None and earlier.run_id != run_id:
            if earlier.delivered:
                return _already_delivered(job, endpoint, run_id, earlier, source, started)
            log.warning("this export was partly delivered to this destination by run %s (started %s): resuming that "
                        "run's ledger, so nothing it had sent goes again", earlier.run_id, earlier.started_at)
            run_id = earlier.run_id
        store = run_store(job, run_id)
        if dry_run and _has_sent(store):
            raise ConfigError(f"--run-id {run_id}: this run has sent requests; a dry run under its id would replace its "
                              "summary and plan. Dry-run under another --run-id, or none")
        summary = _new_summary(job, endpoint, run_id, dry_run, store, source, fingerprint)
        _run(job, endpoint, summary, store, workdir, source, progress or SilentProgress(), confirmed,
             deadline=None if job.destination.max_duration is None else started + job.destination.max_duration,
             register=register)
    _write_summary(store, summary, started)
    if register is not None:  # from the summary, which is counted from the ledger
        register.finished(run_id, summary.exit_code == 0, summary.destination,
                          {"identifiers": summary.identifiers, "identifiers_left": summary.identifiers_left})
    return summary


def _new_summary(job: JobConfig, endpoint: Endpoint, run_id: str, dry_run: bool, store: Store, source: SourceFrame,
                 fingerprint: str) -> RunSummary:
    return RunSummary(run_id, job.job, endpoint.spec.family, dry_run, store.uri, started_at=utc_now(),
                      source_files=list(source.fingerprint), source_fingerprint=fingerprint,
                      destination=job.destination.describe())


def _already_delivered(job: JobConfig, endpoint: Endpoint, run_id: str, earlier: Registration, source: SourceFrame,
                       started: float) -> RunSummary:
    """A summary, and nothing sent: the register says another run delivered this export here already."""
    store = run_store(job, run_id)
    summary = _new_summary(job, endpoint, run_id, False, store, source, fingerprint_digest(source.fingerprint))
    summary.already_delivered_by = {"run_id": earlier.run_id, "at": earlier.updated_at,
                                    "output_dir": run_store(job, earlier.run_id).uri}
    log.info("already delivered by run %s at %s: nothing sent (--force sends it again)", earlier.run_id, earlier.updated_at)
    _write_summary(store, summary, started)
    return summary


def _write_summary(store: Store, summary: RunSummary, started: float) -> None:
    """summary.json, the latest attempt's, and summaries/<attempt>.json: a resume never overwrites what an earlier
    attempt of the run did."""
    summary.elapsed_seconds = round(time.monotonic() - started, 3)
    summary.finished_at = utc_now()
    summary.attempt = len(store.list(SUMMARIES)) + 1
    write_json(store, f"{SUMMARIES}{summary.attempt:04d}.json", summary.to_dict())
    write_json(store, SUMMARY, summary.to_dict())


def _check_writable(job: JobConfig, store: Store) -> None:
    """A local output folder that cannot be made or written to is a configuration error, found before the input is
    read or anything is sent (not a machine failure at the first write). S3 is left to its first put."""
    if not isinstance(store, LocalStore):
        return
    existing = store.path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user"
    else:
        return
    raise ConfigError(f"output.uri: cannot write the run's outputs under {job.output.uri}: {problem}. Nothing was read or sent.")


def _has_sent(store: Store) -> bool:
    return any(r.get("status", "dry_run") != "dry_run" or r.get("record") == SENDING
               for r in read_records(store)[0] if "batch" in r)


def _run(job: JobConfig, endpoint: Endpoint, summary: RunSummary, store: Store, workdir: Path, source: SourceFrame,
         progress: Progress, confirmed: bool, deadline: float | None, register: DeliveryRegister | None) -> None:
    stream = prepare_stream(job, endpoint, source, store, workdir)
    run_id = summary.run_id
    sync: SyncPlan | None = None
    try:
        if job.destination.sync_mode != "full":  # send only the difference against the destination's state
            from pipeline.sync import plan_sync

            stream = sync = plan_sync(job, endpoint, stream.materialise(workdir / "prepared.parquet"), workdir, run_id,
                                      dry_run=summary.dry_run, confirmed=confirmed)
            summary.sync = sync.report
        if endpoint.spec.needs_whole_set:
            _confirm_whole_set(endpoint, stream, confirmed or summary.dry_run)
        faultpoints.reached("after_prepare")
        endpoint.bind_run(job.job, run_id, summary.dry_run)
        _write_plan(store, summary, endpoint, stream)
        # Said once everything is checked, right before the first request (an error stays one line of its own).
        log.info("%s to %s", "dry run: would send" if summary.dry_run else "sending", job.destination.describe_text(),
                 extra={"fields": {"destination": job.destination.describe(), "dry_run": summary.dry_run}})
        if register is not None:
            register.sending(run_id, summary.destination)
        ledger = open_ledger(store, job.output.ledger_flush_records, job.output.ledger_flush_seconds)
        summary.manifest_torn_lines = ledger.torn_lines
        index = _delivery_index(endpoint, store, workdir)
        try:
            send_batches(job, endpoint, stream, ledger, summary, dry_run=summary.dry_run, progress=progress,
                         deadline=deadline, index=index, on_prepared=lambda: _write_plan(store, summary, endpoint, stream))
        except InputError as exc:
            if not summary.requests and not summary.batches_by_status.get("dry_run"):
                raise  # nothing was sent: a plain input error (exit 2)
            summary.stopped_reason = f"stopped part way: {exc}"
            log.error("%s", summary.stopped_reason)
        finally:
            try:
                ledger.close()
            finally:
                _publish_index(index, store, stream)
        if sync is not None:  # after the ledger is closed (flushed to S3): the state never runs ahead of the ledger
            summary.stopped_reason = sync.advance(ledger.records) or summary.stopped_reason
    finally:
        _copy_counts(summary, stream)
        if stream.complete:
            _write_plan(store, summary, endpoint, stream)
        if not isinstance(store, LocalStore) and (workdir / REJECTS).exists():
            store.upload_file(REJECTS, workdir / REJECTS)


def _delivery_index(endpoint: Endpoint, store: Store, workdir: Path) -> DeliveryIndexWriter | None:
    """A batch run's index of which batch each identifier went in (pipeline/audit/index.py), unless an earlier
    attempt of the run left a whole one (the batches, and so the index, are the same)."""
    if endpoint.spec.one_subject or store.exists(INDEX):
        return None
    return DeliveryIndexWriter(store.scratch_path(INDEX, workdir), endpoint.spec.wire_encoding,
                               durable=isinstance(store, LocalStore))


def _publish_index(index: DeliveryIndexWriter | None, store: Store, stream: PreparedStream | SyncPlan) -> None:
    """Put beside the manifest once it holds every identifier of the run (a run stopped part way leaves it out)."""
    if index is None:
        return
    try:
        if index.close() and stream.complete and index.rows == stream.identifiers:
            store.publish_file(INDEX, index.path)
    finally:
        index.path.unlink(missing_ok=True)  # a partial index never stays in the output folder


def _confirm_whole_set(endpoint: Endpoint, stream: PreparedStream | SyncPlan, confirmed: bool) -> None:
    """Endpoints that act on the whole set (account deletion) may ask for --yes before the first request."""
    stream.prepare_all()
    needs_confirmation = endpoint.confirmation_needed(stream.identifiers)
    if needs_confirmation and not confirmed:
        raise ConfigError(f"{needs_confirmation}. Nothing was sent.")


def _copy_counts(summary: RunSummary, stream: PreparedStream | SyncPlan) -> None:
    summary.rows_read, summary.rows_rejected = stream.rows_read, stream.rows_rejected
    summary.duplicates_dropped, summary.superseded = stream.duplicates_dropped, stream.superseded
    summary.identifiers, summary.reject_reasons = stream.identifiers, stream.reject_reasons
    if stream.batches_total is not None:
        summary.batches = stream.batches_total


def _write_plan(store: Store, summary: RunSummary, endpoint: Endpoint, stream: PreparedStream | SyncPlan) -> None:
    """What the run means to send; the totals are filled in once preparation has read the whole source."""
    write_json(store, PLAN, {
        "run_id": summary.run_id, "job": summary.job, "endpoint": endpoint.spec.family,
        "batches": stream.batches_total, "identifiers": stream.identifiers if stream.complete else None,
        "one_subject": endpoint.spec.one_subject, "written_at": utc_now(), "source_fingerprint": summary.source_fingerprint,
        "target": endpoint.target, "destination": summary.destination,
    })


def open_stream(job: JobConfig, endpoint: Endpoint, store: Store, workdir: Path) -> PreparedStream:
    """The job's source as a stream of batches; rejects.csv is written as it goes."""
    return prepare_stream(job, endpoint, open_source(job.source, workdir), store, workdir)


def prepare_stream(job: JobConfig, endpoint: Endpoint, source: SourceFrame, store: Store, workdir: Path) -> PreparedStream:
    columns = job.source.columns.mapped()
    rejects_path = store.path / REJECTS if isinstance(store, LocalStore) else workdir / REJECTS
    rejects = RejectsWriter(rejects_path, source.files, columns, job.output.rejects_include_values)
    spec = endpoint.spec
    return PreparedStream(
        source, endpoint.row_plan(columns), rejects, spec.limits.batch_size,
        max_reject_fraction=job.source.max_reject_fraction, rejects_location=f"{store.uri}/{REJECTS}", workdir=workdir,
    )


def fingerprint_digest(files: tuple[dict[str, Any], ...]) -> str:
    """One SHA-256 over the input files' URIs, sizes and ETags (or mtimes): ties a run to the exact export."""
    return hashlib.sha256(json.dumps(list(files), sort_keys=True).encode()).hexdigest()
