"""How a run reports itself: a live progress bar on a terminal, one log line (or JSON object) per batch elsewhere.

Both show totals and the time left as soon as they are known or can be estimated: a streamed run counts the
source's rows in a first pass while its first batches are sent, so the identifiers to come are estimated from the
share of rows read so far, and known exactly once the whole source is read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.durations import describe_duration
from pipeline.words import plural

log = logging.getLogger("pipeline.run")


class Counts(Protocol):
    """What the stream being sent knows so far; final once `complete`."""

    complete: bool
    identifiers: int  # prepared so far
    lines_read: int
    lines_total: int | None  # counted by the first pass (None until it has)
    rows_flagged: int  # rows found invalid so far
    duplicates_dropped: int
    batches_total: int | None  # once the batches are cut (a sync plan: from the start); a mirror's adds and
    # removes go in batches of their own, so it can be more than identifiers / batch size


class Progress(Protocol):
    def start(self, counts: Counts, batch_size: int, skipped: int) -> None: ...
    def batch_done(self, record: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands: batches done (those accepted before a resume too) out of all, sent, left, so far."""

    batches_done: int
    batches_total: int | None
    identifiers_sent: int
    identifiers_total: int | None
    estimated: bool  # the totals are estimated from the rows read so far
    seconds_left: float | None
    rejected: int
    duplicates: int

    def describe_totals(self) -> str:
        """'14 of ~30 batches, about 2 min left' (or just '14 batches' while nothing can be estimated)."""
        approx = "~" if self.estimated else ""
        text = (f"{self.batches_done:,} of {approx}{self.batches_total:,} batches" if self.batches_total is not None
                else plural(self.batches_done, "batch", "batches"))
        if self.seconds_left is not None:
            text += f", about {describe_duration(self.seconds_left)} left"
        return text

    def describe_quality(self) -> str:
        return f"{self.rejected:,} rejected, {plural(self.duplicates, 'duplicate')} so far"

    def fields(self) -> dict[str, Any]:
        return {"batches_done": self.batches_done, "batches_total": self.batches_total,
                "identifiers_sent": self.identifiers_sent, "identifiers_total": self.identifiers_total,
                "totals_estimated": self.estimated,
                "seconds_left": None if self.seconds_left is None else round(self.seconds_left),
                "rows_rejected_so_far": self.rejected, "duplicates_so_far": self.duplicates}


class Tracker:
    """Counts the batches a run has done and estimates what is left; thread-safe (batches finish on workers)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counts: Counts | None = None
        self._batch_size = 1
        self._skipped = self._done = self._sent = 0
        self._first_done_at = 0.0

    def start(self, counts: Counts, batch_size: int, skipped: int) -> None:
        with self._lock:
            self._counts, self._batch_size, self._skipped = counts, batch_size, skipped

    def batch_done(self, record: dict[str, Any]) -> Snapshot:
        with self._lock:
            self._done += 1
            self._sent += record["records"]
            if self._done == 1:
                self._first_done_at = self._clock()
            return self._snapshot()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> Snapshot:
        counts = self._counts
        identifiers = _expected_identifiers(counts) if counts is not None else None
        batches = expected_batches(counts, self._batch_size) if counts is not None else None
        done = self._skipped + self._done
        left = None
        if batches is not None and self._done >= 2 and done < batches:
            # Timed from the first batch's answer: the start (reading, the first request) is not the pace of the rest.
            per_batch = (self._clock() - self._first_done_at) / (self._done - 1)
            left = per_batch * max(batches - done, 0)
        return Snapshot(done, None if batches is None else max(batches, done), self._sent, identifiers,
                        counts is not None and not counts.complete, left,
                        counts.rows_flagged if counts is not None else 0,
                        counts.duplicates_dropped if counts is not None else 0)


def expected_batches(counts: Counts, batch_size: int) -> int | None:
    """All the batches this run sends: exact once they are cut, until then from the identifiers expected."""
    if counts.complete and counts.batches_total is not None:
        return counts.batches_total
    identifiers = _expected_identifiers(counts)
    return None if identifiers is None else math.ceil(identifiers / batch_size)


def _expected_identifiers(counts: Counts) -> int | None:
    """All the identifiers this run sends: exact once the source is read, until then scaled from the rows read."""
    if counts.complete:
        return counts.identifiers
    if not counts.lines_total or not counts.lines_read or not counts.identifiers:
        return None
    return round(counts.identifiers * counts.lines_total / counts.lines_read)


def _slowed(record: dict[str, Any]) -> str:
    """', at 70% of the rate limit (throttled)' while "slow down" answers keep the run below its limit."""
    pace = record.get("pace", 1.0)
    return f", at {pace:.0%} of the rate limit (throttled)" if pace < 1.0 else ""


class LogProgress:
    """One line per batch: what Airflow and CI logs want. In JSON logs each batch's fields are keys of its own."""

    def __init__(self) -> None:
        self._tracker = Tracker()

    def start(self, counts: Counts, batch_size: int, skipped: int) -> None:
        self._tracker.start(counts, batch_size, skipped)
        batches = plural(expected_batches(counts, batch_size) or 0, "batch", "batches")
        known = f"{counts.identifiers:,} identifiers in {batches}" if counts.complete else "batches as they are prepared"
        log.info("sending %s (%d already accepted under this run id)", known, skipped,
                 extra={"fields": {"identifiers_total": counts.identifiers if counts.complete else None,
                                   "batches_already_accepted": skipped}})

    def batch_done(self, record: dict[str, Any]) -> None:
        snapshot = self._tracker.batch_done(record)
        error = f", {record['error']}" if record.get("error") else ""
        log.info("batch %s: %s, %s identifiers, http %s, %s%s%s (%s; %s)",
                 record["batch"], record["status"], f"{record['records']:,}", record["http_status"],
                 plural(record["attempts"], "attempt"), error, _slowed(record),
                 snapshot.describe_totals(), snapshot.describe_quality(),
                 extra={"fields": {**_batch_fields(record), **snapshot.fields()}})

    def finish(self) -> None:
        pass


def _batch_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A batch's outcome for a JSON log: no hashes, no identifiers, nothing a log must not hold."""
    keys = ("batch", "status", "records", "http_status", "attempts", "error", "request_id", "pace")
    return {key: record[key] for key in keys if record.get(key) is not None}


class TerminalProgress:
    """A progress bar on a terminal, with totals, the time left and the rejects and duplicates so far.

    Log lines print above it: while it shows, sys.stderr is rich's proxy, and the log handler writes to whatever
    sys.stderr is when it writes (pipeline.logs).
    """

    def __init__(self) -> None:
        self._tracker = Tracker()
        self._live: Any = None
        self._slowed = ""

    def start(self, counts: Counts, batch_size: int, skipped: int) -> None:
        from rich.console import Console  # here: only a terminal run draws (rich costs ~40 ms to import)
        from rich.live import Live

        self._tracker.start(counts, batch_size, skipped)
        self._live = Live(get_renderable=self._render, console=Console(stderr=True), refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=True, transient=False)
        self._live.start()

    def batch_done(self, record: dict[str, Any]) -> None:
        self._tracker.batch_done(record)
        self._slowed = _slowed(record)

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        snapshot = self._tracker.snapshot()
        approx = "~" if snapshot.estimated else ""
        line = Table.grid(padding=(0, 1))
        line.add_row(
            "sending",
            ProgressBar(total=snapshot.batches_total, completed=snapshot.batches_done, width=30),
            f"{snapshot.identifiers_sent:,} of {approx}{snapshot.identifiers_total:,} identifiers"
            if snapshot.identifiers_total is not None else f"{snapshot.identifiers_sent:,} identifiers",
        )
        details = Table.grid()
        details.add_row(f"  {snapshot.describe_totals()}; {snapshot.describe_quality()}{self._slowed}")
        grid = Table.grid()
        grid.add_row(line)
        grid.add_row(details)
        return grid

    def finish(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class SilentProgress:
    def start(self, counts: Counts, batch_size: int, skipped: int) -> None:
        pass

    def batch_done(self, record: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass
