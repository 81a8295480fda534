"""A run's sending, start to finish: resume decisions, the sending threads, and the summary's send counts."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from pipeline.config import JobConfig, Limits
from pipeline.endpoints.base import Endpoint
from pipeline.durations import describe_duration
from pipeline.http.limits import describe_send_time, send_seconds
from pipeline.http.stop import StopSwitch
from pipeline.ledger import LedgerBase
from pipeline.progress import Progress, expected_batches
from pipeline.send.batch import BatchSender
from pipeline.send.dispatch import Dispatch
from pipeline.send.lines import ManifestLines
from pipeline.send.resume import Resume, identifiers_left, seconds_since_recent_starts
from pipeline.send.tally import Tally
from pipeline.summary import RunSummary

if TYPE_CHECKING:
    from pipeline.audit.index import DeliveryIndexWriter
    from pipeline.http.client import Sender
    from pipeline.http.limits import SlidingWindowRateLimiter
    from pipeline.prepare.stream import PreparedStream
    from pipeline.sync import SyncPlan

log = logging.getLogger(__name__)


def send_batches(job: JobConfig, endpoint: Endpoint, stream: PreparedStream | SyncPlan, ledger: LedgerBase,
                 summary: RunSummary, *, dry_run: bool, progress: Progress, deadline: float | None = None,
                 index: DeliveryIndexWriter | None = None, on_prepared: Callable[[], None] = lambda: None) -> None:
    """Send each batch as the stream yields it, recording every outcome; fills the summary's send counts, also
    when sending stops part way. No request starts after `deadline` (time.monotonic()); `index`, when given, gets
    every batch. `on_prepared` runs once the whole source has been read."""
    # Not idempotent, or idempotent only while the API keeps the key: each request's sending is recorded before its
    # first byte, so a resume knows it may have arrived, and when. A dry run needs no HTTP stack, only a stop switch.
    spec = endpoint.spec
    tracks_sending = (not spec.retry_safe or spec.idempotency_key_hours is not None) and not dry_run
    resume = Resume(ledger, endpoint, tracks_sending=tracks_sending)
    sender = StopSwitch() if dry_run else _sender(job, endpoint)
    if not dry_run:  # a resume moments after an earlier attempt stopped: its starts still count against the limit
        sender.gates[None].seed(seconds_since_recent_starts(ledger.records, endpoint))
    tally = Tally()
    batch_sender = BatchSender(sender, endpoint, ledger, ManifestLines(summary.run_id, job.job, endpoint), resume, tally,
                               progress, tracks_sending=tracks_sending)
    if stream.complete and not dry_run:  # prepared whole before the first request: say how long sending will take
        requests = expected_batches(stream, spec.limits.batch_size) or 0
        log.info("%s: %s", spec.family, describe_send_time(max(requests - resume.skipped, 0), spec.limits))
    progress.start(stream, spec.limits.batch_size, resume.skipped)
    batches = stream.batches()
    out_of_time = None if deadline is None or dry_run else OutOfTime(sender, deadline, job.destination.max_duration)
    try:
        Dispatch(batch_sender, sender, endpoint.spec.limits.concurrency, dry_run=dry_run,
                 index=index.add if index is not None else lambda batch: None).run(batches, on_prepared)
    finally:
        # Also when preparation fails part way: what was sent is counted and summarised.
        if out_of_time is not None:
            out_of_time.cancel()
            summary.max_duration_reached = out_of_time.reached()
        sender.close()
        if sender.stop_reason:
            log.error("the run stopped early: %s", sender.stop_reason)
        progress.finish()
        _summarise(summary, tally, sender, endpoint, stream.batches_total, identifiers_left(ledger, endpoint, stream.identifiers))
        # When sending stops part way (a bug, Ctrl-C) the stream finishes rejects.csv now, before the run's counts
        # and uploads, not whenever the interpreter frees it (the CLI leaves with os._exit).
        batches.close()


def _summarise(summary: RunSummary, tally: Tally, sender: Sender | StopSwitch, endpoint: Endpoint,
               batches_total: int | None, left: int) -> None:
    summary.stopped_reason = summary.stopped_reason or sender.stop_reason
    summary.batches_by_status = dict(sorted(tally.by_status.items()))
    summary.batches = batches_total or sum(tally.by_status.values())
    summary.requests, summary.retries, summary.ambiguous = tally.requests, tally.retries, tally.ambiguous
    summary.identifiers_sent, summary.identifiers_accepted = tally.identifiers_sent, tally.identifiers_accepted
    summary.identifiers_left = left
    if not summary.dry_run:
        summary.sending_rate = _sending_rate(sender.writes_rate, endpoint.spec.limits)
    if summary.dry_run:
        to_send = summary.batches - tally.by_status["already_accepted"]
        summary.estimated_send_seconds = send_seconds(to_send, endpoint.spec.limits)


def _sending_rate(rate: SlidingWindowRateLimiter, limits: Limits) -> dict[str, Any]:
    """The limit, the lowest rate the run slowed to after "slow down" answers, and the rate at its end."""
    unit, scale = ("per_minute", limits.requests_per_minute) if limits.requests_per_minute else ("per_second", limits.per_second)
    return {"unit": unit, "limit": scale, "lowest": round(scale * rate.lowest_pace, 3), "at_end": round(scale * rate.pace, 3),
            "throttled_answers": rate.throttled_answers}


class OutOfTime:
    """Stops the run's sending at its deadline: no request starts after it; those on the wire finish and are recorded."""

    def __init__(self, sender: Sender | StopSwitch, deadline: float, max_duration: float | None):
        self._sender = sender
        self.reason = (f"max_duration of {describe_duration(max_duration or 0)} reached: no new requests were started; "
                       "rerun with the same --run-id to carry on")
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), sender.stop, args=(self.reason,))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def reached(self) -> bool:
        return self._sender.stop_reason == self.reason


def _sender(job: JobConfig, endpoint: Endpoint) -> Sender:
    # Imported here: requests and urllib3 are 45-50 ms of every start, and a dry run sends nothing.
    from pipeline.http.client import sender_for

    return sender_for(job, endpoint)
