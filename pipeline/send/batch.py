"""One batch's way out: send it (or record it as a dry run), complete its IDs, record the outcome, count it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from pipeline import faultpoints
from pipeline.batching import Batch
from pipeline.endpoints.base import Endpoint
from pipeline.errors import SendError
from pipeline.ledger import LedgerBase
from pipeline.progress import Progress
from pipeline.send.lines import ManifestLines
from pipeline.send.resume import Resume
from pipeline.send.tally import Tally
from pipeline.words import plural

if TYPE_CHECKING:
    from pipeline.http.client import Delivery, Sender

log = logging.getLogger(__name__)


class BatchSender:
    """What each sending thread does with the batch it is handed. One per run, shared by the threads."""

    def __init__(self, sender: Sender, endpoint: Endpoint, ledger: LedgerBase, lines: ManifestLines, resume: Resume,
                 tally: Tally, progress: Progress, *, tracks_sending: bool):
        self.sender, self.endpoint, self.ledger, self.lines = sender, endpoint, ledger, lines
        self.resume, self.tally, self.progress = resume, tally, progress
        self.tracks_sending = tracks_sending
        self._unrecorded_noted = False

    def send(self, batch: Batch) -> None:
        try:
            if self.sender.stopped.is_set():  # queued before the stop: never attempted, so no manifest line
                self.tally.count("not_sent")
                return
            # Every polars call of this batch comes before its request (the body is encoded in deliver(), before the
            # slot): on Ctrl-C polars raises KeyboardInterrupt in the thread it runs in, and a digest computed after
            # the answer lost that answer's manifest line (1 run in 25 of test_interrupt's mid-run case).
            batch.digest  # noqa: B018  (computed and cached here, for the reason above)
            delivery = self.sender.deliver(self.endpoint.build_request(batch), self._before_first_send(batch))
            if delivery.status == "not_sent":  # the run stopped while this request waited for its turn
                self.tally.count("not_sent")
                return
            faultpoints.reached("after_answer")
            self._record(batch, delivery)
        except Exception as exc:  # e.g. the manifest cannot be written: queued batches must not go out unrecorded
            self.sender.stop(f"a send failed unexpectedly ({type(exc).__name__}); queued batches were not sent")
            raise
        except BaseException:  # Ctrl-C raised by polars in this thread, before this batch's request was made
            self.sender.stop("interrupted")
            self.tally.count("not_sent")

    def _before_first_send(self, batch: Batch) -> Callable[[str], None] | None:
        """Not idempotent: the request's sending is recorded before its first byte, so a resume after a crash in
        between knows the API may have acted on it already."""
        if not self.tracks_sending:
            return None
        return lambda started_at: self.ledger.append(self.lines.sending(batch, started_at))

    def _record(self, batch: Batch, delivery: Delivery) -> None:
        if delivery.status == "accepted":
            delivery.ids, notes = self._completed_ids(batch, delivery)
            delivery.notes = {**delivery.notes, **notes}
        earlier = self.resume.earlier_attempt(batch)
        if earlier is not None:  # sent before under this run id, and the process died before the answer was kept
            ambiguous, notes = earlier
            delivery.ambiguous = delivery.ambiguous or ambiguous
            delivery.notes = {**delivery.notes, **notes}
        self.tally.delivered(batch.records, delivery)  # before the ledger write: nothing sent passes for unsent
        line = self.lines.outcome(batch, delivery)
        self.ledger.append(line)
        faultpoints.reached("after_ledger")
        self.progress.batch_done(line | {"pace": self.sender.writes_rate.pace})  # how far throttling slowed the run
        if delivery.stops_run and not self.sender.stopped.is_set():
            log.error("stopping the run: %s", delivery.error)
            self.sender.stop(delivery.error)

    def _completed_ids(self, batch: Batch, delivery: Delivery) -> tuple[dict, dict]:
        """The endpoint's follow-up for an accepted request; its failure never turns an acceptance into a failure."""
        try:
            return self.endpoint.after_accept(batch, delivery.ids, self.sender.fetch)
        except SendError as exc:
            return delivery.ids, {"ids_note": f"could not look up the IDs: {exc}"}

    def record_dry_run(self, batch: Batch) -> None:
        line = self.lines.dry_run(batch)
        self.ledger.append(line)
        self.tally.count("dry_run")
        self.progress.batch_done(line)

    def record_unrecorded_attempts(self) -> None:
        """Once, before the first request of a resume (or at its end, when nothing was left to send): what the API
        may hold for requests an earlier attempt sent without recording their answers."""
        unrecorded = self.resume.unrecorded
        if not unrecorded or self._unrecorded_noted:
            return
        self._unrecorded_noted = True
        since = min(unrecorded.values())
        if self.endpoint.spec.idempotency_key_hours is None:
            then = "the API may have acted on them; sent again, they are flagged ambiguous"
        else:
            then = ("they are sent again with their Idempotency-Keys, which the API replays; those sent too long ago for "
                    "the API to still keep the key are flagged ambiguous")
        log.warning("%s sent under this run id and their answers never recorded (the process stopped "
                    "in between): %s", plural(len(unrecorded), "request was", "requests were"), then)
        try:
            ids, note = self.endpoint.ids_of_unrecorded_attempts(since, self.ledger.records, self.sender.fetch), None
        except SendError as exc:
            ids, note = {}, f"could not look up the IDs: {exc}"
        self.ledger.append(self.lines.unrecorded_attempts(len(unrecorded), since, ids, note))
