"""Hands the prepared batches to the sending threads, and ends the run's sending cleanly however it ends.

Batches are taken from the stream only as fast as they are sent (a bounded hand-off, so memory stays flat); the
first request waits for the endpoint's start-of-run step; a stop (a terminal answer, Ctrl-C, SIGTERM) lets the
requests on the wire finish and be recorded while queued batches are counted as not sent.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterator

from pipeline.batching import Batch
from pipeline.errors import SendError
from pipeline.http.stop import StopSwitch
from pipeline.send.batch import BatchSender

if TYPE_CHECKING:
    from pipeline.http.client import Sender

log = logging.getLogger(__name__)

# The main thread waits for the workers in steps this long, never in one blocking call: the kernel may hand
# Ctrl-C or SIGTERM to any thread, and Python runs the handler only once the main thread next wakes up (a
# blocking join ran it after the last request was answered, so the queued ones were sent too).
_SIGNAL_CHECK_SECONDS = 0.1


class Dispatch:
    def __init__(self, batch_sender: BatchSender, sender: Sender | StopSwitch, concurrency: int, *, dry_run: bool,
                 index: Callable[[Batch], None] = lambda batch: None):
        """`index` notes every batch the stream yields, sent or not (the delivery index), off the main thread when
        the batch goes to a sending thread."""
        self.batch_sender, self.sender, self.dry_run, self.index = batch_sender, sender, dry_run, index
        self.concurrency = concurrency
        self._queue_slots = threading.Semaphore(concurrency * 2)  # batches handed over but not yet finished
        self._futures: deque[Future[None]] = deque()
        self._a_worker_finished = threading.Event()
        self._started = False
        self._interrupts = 0

    def run(self, batches: Iterator[Batch], on_prepared: Callable[[], None]) -> None:
        """Send every batch the stream yields; `on_prepared` runs once the whole source has been read."""
        resume, tally = self.batch_sender.resume, self.batch_sender.tally
        # Dry runs go through the workers too: a batch's digest is computed there, beside the data path.
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send")
        try:
            for batch in batches:
                if resume.already_accepted(batch):
                    tally.count("already_accepted")
                    self.index(batch)
                elif self.sender.stopped.is_set():
                    tally.count("not_sent")
                    self.index(batch)
                else:
                    self._hand_over(pool, batch)
            if not self.sender.stopped.is_set():
                self.batch_sender.record_unrecorded_attempts()  # also when nothing was left to send (the input changed)
            on_prepared()  # preparation is done; sends may still be in flight
        except BaseException as exc:
            self._stop_if_interrupted(exc)
            raise
        finally:
            try:
                self._wait_for_workers()  # every request on the wire is answered and recorded before the run ends
            except BaseException as exc:  # interrupted while the last batches were queued or in flight
                if self._stop_if_interrupted(exc):
                    self._wait_for_workers()  # a second interrupt leaves this wait at once
                raise
            finally:
                pool.shutdown(wait=False, cancel_futures=True)  # nothing left running, unless interrupted twice
        for future in self._futures:
            future.result()

    def _hand_over(self, pool: ThreadPoolExecutor, batch: Batch) -> None:
        if not (self._started or self.dry_run):
            self._started = True
            self._start_sending(batch)
        while not self._queue_slots.acquire(timeout=_SIGNAL_CHECK_SECONDS):
            pass
        work = self.batch_sender.record_dry_run if self.dry_run else self.batch_sender.send
        future = pool.submit(self._then_free_the_slot, work, batch)
        future.add_done_callback(lambda _: self._a_worker_finished.set())
        self._futures.append(future)
        while self._futures and self._futures[0].done():
            self._futures.popleft().result()  # surfaces a bug in a worker instead of losing it

    def _then_free_the_slot(self, work: Callable[[Batch], None], batch: Batch) -> None:
        try:
            work(batch)
            self.index(batch)
        finally:
            self._queue_slots.release()

    def _start_sending(self, first: Batch) -> None:
        """Before the first request: the endpoint's start-of-run step, then what an earlier attempt left unrecorded."""
        endpoint, sender = self.batch_sender.endpoint, self.batch_sender.sender
        try:
            endpoint.on_run_start(sender.fetch)
        except SendError as exc:
            log.error("stopping the run before sending: %s", exc)
            sender.stop(str(exc))
        if not sender.stopped.is_set():
            self.batch_sender.record_unrecorded_attempts()
        if not sender.stopped.is_set():
            # Encoded here, before the stream is asked for more and starts reading the rest of the file on both cores:
            # the first request leaves 0.15-0.25 s sooner (10M-row end-to-end timeline).
            first.json_identifiers.encoded()

    def _stop_if_interrupted(self, exc: BaseException) -> bool:
        """Stop the run on Ctrl-C or the scheduler ending the task; True when it is the first such interrupt."""
        if isinstance(exc, Exception):
            return False
        self._interrupts += 1
        if self._interrupts > 1:
            return False
        self.sender.stop("interrupted")
        log.warning("interrupted: waiting for the requests already sent to be answered and recorded; queued "
                    "batches are not sent (a second interrupt stops waiting, leaving those answers unrecorded)")
        return True

    def _wait_for_workers(self) -> None:
        # Not concurrent.futures.wait(): it takes the futures' locks one by one, and a signal handled half way through
        # leaves some of them held, so their workers can never finish (a SIGTERM at the tail of a run hung it, seen once
        # on a loaded machine). A done-callback sets the event once a future's state is final.
        while not all(future.done() for future in self._futures):
            self._a_worker_finished.wait(_SIGNAL_CHECK_SECONDS)
            self._a_worker_finished.clear()
