"""One job run: source -> validate -> normalise + hash -> dedupe -> batch -> send -> ledger.

The only module that knows every stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline import faultpoints
from pipeline.batching import Batch
from pipeline.config import JobConfig
from pipeline.endpoints.base import Endpoint
from pipeline.endpoints.registry import endpoint_for
from pipeline.errors import ConfigError, InputError, SendError
from pipeline.http.stop import StopSwitch
from pipeline.ledger import (
    PLAN, REJECTS, SENDING, SUMMARY, UNRECORDED_ATTEMPTS, LedgerBase, open_ledger, read_records, utc_now, write_json,
)
from pipeline.prepare.stream import PreparedStream
from pipeline.progress import Progress, SilentProgress
from pipeline.rejects import RejectsWriter
from pipeline.sources import open_source
from pipeline.storage import LocalStore, S3Store, Store, is_s3, split_s3_uri

if TYPE_CHECKING:
    from pipeline.http.client import Delivery, Sender
    from pipeline.sync import SyncPlan

log = logging.getLogger(__name__)

# The main thread waits for the workers in steps this long, never in one blocking call: the kernel may hand
# Ctrl-C or SIGTERM to any thread, and Python runs the handler only once the main thread next wakes up (a
# blocking join ran it after the last request was answered, so the queued ones were sent too).
_SIGNAL_CHECK_SECONDS = 0.1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}$")


@dataclass
class RunSummary:
    run_id: str
    job: str
    endpoint: str
    dry_run: bool
    output_dir: str
    rows_read: int = 0
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    superseded: int = 0
    identifiers: int = 0
    identifiers_sent: int = 0
    identifiers_accepted: int = 0
    identifiers_left: int = 0  # valid identifiers not accepted in this run or an earlier one with the same run id
    requests: int = 0
    retries: int = 0
    ambiguous: int = 0
    batches: int = 0
    batches_by_status: dict[str, int] = field(default_factory=dict)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    estimated_send_seconds: float | None = None
    stopped_reason: str | None = None
    manifest_torn_lines: int = 0
    source_fingerprint: str = ""
    source_files: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    sync: dict[str, Any] | None = None  # incremental / mirror: the plan against the destination's state, and its outcome

    @property
    def exit_code(self) -> int:
        unfinished = sum(n for status, n in self.batches_by_status.items() if status not in ("accepted", "already_accepted", "dry_run"))
        return 1 if unfinished or self.stopped_reason else 0

    @property
    def manifest(self) -> str:
        """Where the ledger lines are: a file locally, segment objects on S3."""
        return f"{self.output_dir}/manifest/" if is_s3(self.output_dir) else f"{self.output_dir}/manifest.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"manifest": self.manifest}


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def valid_run_id(run_id: str) -> bool:
    """What the ledger accepts as a run id (it names a folder or an S3 prefix)."""
    return bool(_RUN_ID.match(run_id)) and ".." not in run_id


def job_store(job: JobConfig) -> Store:
    """<output.uri>/<job>/: every run of the job, local or S3."""
    output = job.output
    if is_s3(output.uri):
        from pipeline.s3 import put_args, s3_client

        bucket, prefix = split_s3_uri(output.uri)
        return S3Store(bucket, prefix.strip("/"), s3_client(output.s3), put_args(output)).child(job.job)
    return LocalStore(Path(output.uri) / job.job)


def run_store(job: JobConfig, run_id: str) -> Store:
    """Where this run's manifest, summary and rejects live: <output.uri>/<job>/<run_id>/."""
    return job_store(job).child(run_id)


def run_ids(job: JobConfig) -> list[str]:
    """Every run id with outputs under the job's folder."""
    return sorted({name.split("/", 1)[0] for name in job_store(job).list() if "/" in name and not name.startswith("_")})


def run_job(
    job: JobConfig, run_id: str | None = None, dry_run: bool = False, progress: Progress | None = None,
    confirmed: bool = False,
) -> RunSummary:
    """Run a job. `confirmed` is the command line's --yes, for destructive runs beyond the job's safety limit."""
    run_id = run_id or new_run_id()
    if not valid_run_id(run_id):
        raise ConfigError(f"--run-id {run_id!r}: use letters, digits and . _ : + @ = - (at most 200 characters)")
    started = time.monotonic()
    endpoint = endpoint_for(job)
    store = run_store(job, run_id)
    _check_writable(job, store)
    if dry_run and any(r.get("status", "dry_run") != "dry_run" or r.get("record") == SENDING
                       for r in read_records(store)[0] if "batch" in r):
        raise ConfigError(f"--run-id {run_id}: this run has sent requests; a dry run under its id would replace its "
                          "summary and plan. Dry-run under another --run-id, or none")
    summary = RunSummary(run_id, job.job, endpoint.spec.family, dry_run, store.uri, started_at=utc_now())

    # The spill holds normalised identifiers: a private temporary folder, removed on every way out.
    with tempfile.TemporaryDirectory(prefix="rokt-pipeline-") as workdir:
        _run(job, endpoint, summary, store, Path(workdir), run_id, dry_run, progress, confirmed)
    summary.elapsed_seconds = round(time.monotonic() - started, 3)
    summary.finished_at = utc_now()
    write_json(store, SUMMARY, summary.to_dict())
    return summary


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


def _run(
    job: JobConfig, endpoint: Endpoint, summary: RunSummary, store: Store, workdir: Path, run_id: str,
    dry_run: bool, progress: Progress | None, confirmed: bool,
) -> None:
    stream = open_stream(job, endpoint, store, workdir)
    summary.source_files = list(stream.source.fingerprint)
    summary.source_fingerprint = fingerprint_digest(stream.source.fingerprint)
    sync: SyncPlan | None = None
    try:
        if job.destination.sync_mode != "full":  # issue 9 (pipeline/sync): send only the difference against the state
            from pipeline.sync import plan_sync

            stream = sync = plan_sync(job, endpoint, stream.materialise(workdir / "prepared.parquet"), workdir, run_id,
                                      dry_run=dry_run, confirmed=confirmed)
            summary.sync = sync.report
        if endpoint.spec.needs_whole_set:
            stream.prepare_all()
            needs_confirmation = endpoint.confirmation_needed(stream.identifiers)
            if needs_confirmation and not (confirmed or dry_run):
                raise ConfigError(f"{needs_confirmation}. Nothing was sent.")
        faultpoints.reached("after_prepare")
        endpoint.bind_run(job.job, run_id, dry_run)
        _write_plan(store, summary, endpoint, stream)
        ledger = open_ledger(store, job.output.ledger_flush_records, job.output.ledger_flush_seconds)
        summary.manifest_torn_lines = ledger.torn_lines
        try:
            _send_all(job, endpoint, stream, ledger, summary, run_id, dry_run, progress or SilentProgress(),
                      on_prepared=lambda: _write_plan(store, summary, endpoint, stream))
        except InputError as exc:
            if not summary.requests and not summary.batches_by_status.get("dry_run"):
                raise  # nothing was sent: a plain input error (exit 2)
            summary.stopped_reason = f"stopped part way: {exc}"
            log.error("%s", summary.stopped_reason)
        finally:
            ledger.close()
        if sync is not None:  # after the ledger is closed (flushed to S3): the state never runs ahead of the ledger
            summary.stopped_reason = sync.advance(ledger.records) or summary.stopped_reason
    finally:
        _copy_counts(summary, stream)
        if stream.complete:
            _write_plan(store, summary, endpoint, stream)
        if not isinstance(store, LocalStore) and (workdir / REJECTS).exists():
            store.upload_file(REJECTS, workdir / REJECTS)


def _copy_counts(summary: RunSummary, stream: PreparedStream) -> None:
    summary.rows_read, summary.rows_rejected = stream.rows_read, stream.rows_rejected
    summary.duplicates_dropped, summary.superseded = stream.duplicates_dropped, stream.superseded
    summary.identifiers, summary.reject_reasons = stream.identifiers, stream.reject_reasons
    if stream.batches_total is not None:
        summary.batches = stream.batches_total


def _write_plan(store: Store, summary: RunSummary, endpoint: Endpoint, stream: PreparedStream) -> None:
    """What the run means to send; the totals are filled in once preparation has read the whole source."""
    write_json(store, PLAN, {
        "run_id": summary.run_id, "job": summary.job, "endpoint": endpoint.spec.family,
        "batches": stream.batches_total, "identifiers": stream.identifiers if stream.complete else None,
        "one_subject": endpoint.spec.one_subject, "written_at": utc_now(), "source_fingerprint": summary.source_fingerprint,
    })


def open_stream(job: JobConfig, endpoint: Endpoint, store: Store, workdir: Path) -> PreparedStream:
    """The job's source as a stream of batches; rejects.csv is written as it goes."""
    columns = job.source.columns.mapped()
    source = open_source(job.source, workdir)
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


def _send_all(
    job: JobConfig, endpoint: Endpoint, stream: PreparedStream, ledger: LedgerBase, summary: RunSummary,
    run_id: str, dry_run: bool, progress: Progress, on_prepared: Callable[[], None] = lambda: None,
) -> None:
    """Send each batch as the stream yields it; `on_prepared` runs once the whole source has been read."""
    spec = endpoint.spec
    limits = spec.limits
    accepted_batches = ledger.accepted_batches(endpoint.counts_for_resume)
    accepted_subjects = (ledger.accepted_subjects(endpoint.resume_keys_covered, endpoint.counts_for_resume)
                         if spec.one_subject else set())
    elsewhere = sum(1 for r in ledger.accepted() if not endpoint.same_target(r))
    if elsewhere:
        log.warning("%d request(s) accepted under this run id went to another destination (the job's endpoint, URL, "
                    "account, list, action or mode has changed since): they do not count here, so their identifiers are "
                    "sent to this one", elsewhere)
    # Not idempotent: each request's sending is recorded before its first byte, so a resume after a crash
    # between sending and recording knows that the API may have acted on it already.
    records_sending = not spec.retry_safe and not dry_run
    unrecorded = _unrecorded_attempts(ledger.records, endpoint) if records_sending else {}
    unrecorded_noted = False
    by_status: dict[str, int] = {}
    lock = threading.Lock()
    sender = StopSwitch() if dry_run else _sender(job, endpoint)  # a dry run needs only the stop switch
    # Bounded hand-off: batches are read only as fast as they are sent, so memory stays flat.
    queue_slots = threading.Semaphore(limits.concurrency * 2)

    def count(status: str) -> None:
        with lock:
            by_status[status] = by_status.get(status, 0) + 1

    def describe(batch: Batch) -> dict[str, Any]:
        record: dict[str, Any] = {
            "run_id": run_id, "job": job.job, "endpoint": spec.family, "target": endpoint.target, "batch": batch.index,
            "records": batch.records, "digest": batch.digest,
        }
        if batch.subject is not None:
            record["subject"] = batch.subject
        record.update(endpoint.manifest_fields(batch))
        return record

    def record_for(batch: Batch, started_at: str, delivery: Delivery | None) -> dict[str, Any]:
        record = describe(batch)
        if delivery is None:
            record.update(status="dry_run", http_status=None, ids={}, attempts=0, error=None, ambiguous=False)
        else:
            record.update(
                status=delivery.status, http_status=delivery.http_status, ids=delivery.ids, attempts=delivery.attempts,
                error=delivery.error, ambiguous=delivery.ambiguous, **delivery.notes,
            )
        record.update(started_at=started_at, finished_at=utc_now())
        return record

    def record_unrecorded_attempts() -> None:
        nonlocal unrecorded_noted
        if not unrecorded or unrecorded_noted:
            return
        unrecorded_noted = True
        since = min(unrecorded.values())
        log.warning("%d request(s) were sent under this run id and their answers never recorded (the process stopped "
                    "in between): the API may have acted on them; sent again, they are flagged ambiguous", len(unrecorded))
        try:
            ids = endpoint.ids_of_unrecorded_attempts(since, ledger.records, sender.fetch)
        except SendError as exc:
            ids, note = {}, f"could not look up the IDs: {exc}"
        else:
            note = None
        ledger.append({"run_id": run_id, "job": job.job, "endpoint": spec.family, "target": endpoint.target,
                       "record": UNRECORDED_ATTEMPTS, "requests": len(unrecorded), "since": since, "ids": ids,
                       "ids_note": note, "checked_at": utc_now()})

    def send(batch: Batch) -> None:
        try:
            if sender.stopped.is_set():  # queued before the stop: never attempted, so no manifest line
                count("not_sent")
                return
            # Every polars call of this batch comes before its request (the body is encoded in deliver(), before the
            # slot): on Ctrl-C polars raises KeyboardInterrupt in the thread it runs in, and a digest computed after
            # the answer lost that answer's manifest line (1 run in 25 of test_interrupt's mid-run case).
            digest = batch.digest
            started_at = utc_now()

            def record_sending() -> None:
                ledger.append({**describe(batch), "record": SENDING, "started_at": started_at})

            delivery = sender.deliver(endpoint.build_request(batch), record_sending if records_sending else None)
            if delivery.status == "not_sent":  # the run stopped while this request waited for its turn
                count("not_sent")
                return
            faultpoints.reached("after_answer")
            if delivery.status == "accepted":
                delivery.ids, delivery.notes = _complete_ids(endpoint, batch, delivery, sender)
            earlier = unrecorded.get(endpoint.resume_key(batch) if spec.one_subject else (batch.index, digest))
            if earlier is not None:  # sent before under this run id, and the process died before the answer was kept
                delivery.ambiguous = True
                delivery.notes = {**delivery.notes, "earlier_attempt_unrecorded": earlier}
            with lock:  # counted before the ledger write, so nothing sent can ever pass for "nothing sent"
                summary.requests += delivery.attempts
                summary.retries += delivery.attempts - 1
                summary.identifiers_sent += batch.records
                summary.ambiguous += int(delivery.ambiguous)
                if delivery.status == "accepted":
                    summary.identifiers_accepted += batch.records
            count(delivery.status)
            record = record_for(batch, started_at, delivery)
            ledger.append(record)
            faultpoints.reached("after_ledger")
            progress.batch_done(record)
            if delivery.stops_run and not sender.stopped.is_set():
                log.error("stopping the run: %s", delivery.error)
                sender.stop(delivery.error)
        except Exception as exc:  # e.g. the manifest cannot be written: queued batches must not go out unrecorded
            sender.stop(f"a send failed unexpectedly ({type(exc).__name__}); queued batches were not sent")
            raise
        except BaseException:  # Ctrl-C raised by polars in this thread, before this batch's request was made
            sender.stop("interrupted")
            count("not_sent")
        finally:
            queue_slots.release()

    def record_dry_run(batch: Batch) -> None:
        try:
            record = record_for(batch, utc_now(), None)
            ledger.append(record)
            count("dry_run")
            progress.batch_done(record)
        finally:
            queue_slots.release()

    def already_accepted(batch: Batch) -> bool:
        if spec.one_subject:
            return endpoint.resume_key(batch) in accepted_subjects
        accepted_digest = accepted_batches.get(batch.index)
        if accepted_digest is None:
            return False
        if accepted_digest != batch.digest:
            log.warning("batch %d differs from the one accepted under this run id (the input changed): sending it", batch.index)
            return False
        return True

    skipped = len(ledger.accepted(endpoint.counts_for_resume)) if spec.one_subject else len(accepted_batches)
    progress.start(stream.batches_total, stream.identifiers if stream.complete else None, skipped)
    started = False
    futures: deque[Future[None]] = deque()
    batches = stream.batches()

    interrupts = 0

    def stop_if_interrupted(exc: BaseException) -> bool:
        """Stop the run on Ctrl-C or the scheduler ending the task; True when it is the first such interrupt."""
        nonlocal interrupts
        if isinstance(exc, Exception):
            return False
        interrupts += 1
        if interrupts > 1:
            return False
        sender.stop("interrupted")
        log.warning("interrupted: waiting for the requests already sent to be answered and recorded; queued "
                    "batches are not sent (a second interrupt stops waiting, leaving those answers unrecorded)")
        return True

    def wait_for_workers() -> None:
        while wait(futures, timeout=_SIGNAL_CHECK_SECONDS).not_done:
            pass

    try:
        # Dry runs go through the workers too: a batch's digest is computed there, beside the data path.
        pool = ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix="send")
        try:
            for batch in batches:
                if already_accepted(batch):
                    count("already_accepted")
                    continue
                if sender.stopped.is_set():
                    count("not_sent")
                    continue
                if not (started or dry_run):
                    started = True
                    _start_run(endpoint, sender, summary)
                    if not sender.stopped.is_set():
                        record_unrecorded_attempts()
                    if not sender.stopped.is_set():
                        # Encoded here, before the stream is asked for more and starts reading the rest of the file
                        # on both cores: the first request leaves 0.15-0.25 s sooner (10M-row end-to-end timeline).
                        batch.json_identifiers.encoded()
                while not queue_slots.acquire(timeout=_SIGNAL_CHECK_SECONDS):
                    pass
                futures.append(pool.submit(record_dry_run if dry_run else send, batch))
                while futures and futures[0].done():
                    futures.popleft().result()  # surfaces a bug in a worker instead of losing it
            if not sender.stopped.is_set():
                record_unrecorded_attempts()  # also when nothing was left to send (the input changed)
            on_prepared()  # preparation is done; sends may still be in flight
        except BaseException as exc:
            stop_if_interrupted(exc)
            raise
        finally:
            try:
                wait_for_workers()  # every request on the wire is answered and recorded before the run ends
            except BaseException as exc:  # interrupted while the last batches were queued or in flight
                if stop_if_interrupted(exc):
                    wait_for_workers()  # a second interrupt leaves this wait at once
                raise
            finally:
                pool.shutdown(wait=False, cancel_futures=True)  # nothing left running, unless interrupted twice
        for future in futures:
            future.result()
    finally:
        # Also when preparation fails part way: what was sent is counted and summarised.
        sender.close()
        summary.stopped_reason = summary.stopped_reason or sender.stop_reason
        if sender.stop_reason:
            log.error("the run stopped early: %s", sender.stop_reason)
        progress.finish()
        summary.batches_by_status = dict(sorted(by_status.items()))
        summary.batches = stream.batches_total or sum(by_status.values())
        summary.identifiers_left = _identifiers_left(ledger, endpoint, stream.identifiers)
        if dry_run:
            to_send = summary.batches - by_status.get("already_accepted", 0)
            summary.estimated_send_seconds = round(to_send / limits.requests_per_second, 1)
        # When sending stops part way (a bug, Ctrl-C) the stream finishes rejects.csv now, before the run's counts
        # and uploads, not whenever the interpreter frees it (the CLI leaves with os._exit).
        batches.close()


def _unrecorded_attempts(records: list[dict[str, Any]], endpoint: Endpoint) -> dict[Any, str]:
    """Requests of this target whose sending is in the manifest but not their outcome -> when they were sent."""
    pending: dict[Any, str] = {}
    for record in records:
        if "batch" not in record or not endpoint.same_target(record):
            continue
        # Keyed as send() looks it up: a one-subject request by its resume key, a batch by number and digest.
        key = endpoint.resume_keys_covered(record)[0] if endpoint.spec.one_subject else (record["batch"], record["digest"])
        if record.get("record") == SENDING:
            pending[key] = record["started_at"]
        elif record.get("status", "dry_run") != "dry_run":
            pending.pop(key, None)
    return pending


def _identifiers_left(ledger: LedgerBase, endpoint: Endpoint, identifiers: int) -> int:
    accepted = ledger.accepted(endpoint.counts_for_resume)
    if endpoint.spec.one_subject:
        done = len({endpoint.resume_keys_covered(r)[0] for r in accepted})
    else:
        done = sum({r["batch"]: r["records"] for r in accepted}.values())
    return max(identifiers - done, 0)


def _sender(job: JobConfig, endpoint: Endpoint) -> Sender:
    # Imported here: requests and urllib3 are 45-50 ms of every start, and a dry run sends nothing.
    from pipeline.http.client import sender_for

    return sender_for(job, endpoint)


def _start_run(endpoint: Endpoint, sender: Sender, summary: RunSummary) -> None:
    try:
        endpoint.on_run_start(sender.fetch)
    except SendError as exc:
        log.error("stopping the run before sending: %s", exc)
        sender.stop(str(exc))


def _complete_ids(endpoint: Endpoint, batch: Batch, delivery: Delivery, sender: Sender) -> tuple[dict[str, Any], dict[str, Any]]:
    """The endpoint's follow-up for an accepted request; its failure never turns an acceptance into a failure."""
    try:
        return endpoint.after_accept(batch, delivery.ids, sender.fetch)
    except SendError as exc:
        return delivery.ids, {"ids_note": f"could not look up the IDs: {exc}"}
