"""How a run reports itself: a live line on a terminal, one plain (or JSON) log line per batch elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Protocol

from pipeline.durations import describe_duration

log = logging.getLogger("pipeline.run")


class Progress(Protocol):
    def start(self, batches: int | None, identifiers: int | None, skipped: int) -> None: ...
    def batch_done(self, record: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


def _slowed(record: dict[str, Any]) -> str:
    """', at 70% of the rate limit (throttled)' while "slow down" answers keep the run below its limit."""
    pace = record.get("pace", 1.0)
    return f", at {pace:.0%} of the rate limit (throttled)" if pace < 1.0 else ""


class LogProgress:
    """One line per batch: what Airflow and CI logs want; with the time left, once the number of batches is known."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: int | None = None
        self._done = self._skipped = 0
        self._started = time.monotonic()

    def start(self, batches: int | None, identifiers: int | None, skipped: int) -> None:
        self._batches, self._skipped, self._started = batches, skipped, time.monotonic()
        if identifiers is None:
            log.info("sending batches as they are prepared (%d already accepted under this run id)", skipped)
        else:
            log.info("sending %d identifiers in %s batches (%d already accepted under this run id)", identifiers, batches, skipped)

    def batch_done(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._done += 1
            left = self._time_left()
        log.info(
            "batch %s: %s, %s identifiers, http %s, %s attempt(s)%s%s%s",
            record["batch"], record["status"], record["records"], record["http_status"], record["attempts"],
            f", {record['error']}" if record.get("error") else "", left, _slowed(record),
        )

    def _time_left(self) -> str:
        if self._batches is None:
            return ""
        to_do = self._batches - self._skipped
        remaining = (time.monotonic() - self._started) / self._done * max(to_do - self._done, 0)
        return f" ({self._done + self._skipped:,}/{self._batches:,}, about {describe_duration(remaining)} left)"

    def finish(self) -> None:
        pass


class TerminalProgress:
    """A single updating line: batches and identifiers sent, rate, ETA."""

    def __init__(self, stream=sys.stderr):
        self._stream = stream
        self._lock = threading.Lock()
        self._batches = self._done = self._identifiers = self._sent = 0
        self._started = time.monotonic()
        self._slowed = ""

    def start(self, batches: int | None, identifiers: int | None, skipped: int) -> None:
        self._batches, self._identifiers, self._done = batches, identifiers, skipped
        self._started = time.monotonic()
        self._draw()

    def batch_done(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._done += 1
            self._sent += record["records"]
            self._slowed = _slowed(record)
            self._draw()

    def _draw(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self._sent / elapsed
        total = "?" if self._identifiers is None else f"{self._identifiers:,}"
        batches = "?" if self._batches is None else self._batches
        eta = "?" if self._identifiers is None or rate <= 0 else f"{max(self._identifiers - self._sent, 0) / rate:,.0f}s"
        self._stream.write(f"\r  batches {self._done}/{batches}  identifiers {self._sent:,}/{total}  {rate:,.0f}/s  ETA {eta}"
                           f"{self._slowed}   ")
        self._stream.flush()

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()


class SilentProgress:
    def start(self, batches: int | None, identifiers: int | None, skipped: int) -> None:
        pass

    def batch_done(self, record: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass
