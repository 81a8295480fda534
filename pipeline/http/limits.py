"""Rate and concurrency limits shared by every attempt of a run, retries included."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from pipeline.config import Limits
from pipeline.durations import describe_duration
from pipeline.words import plural


def minute_seconds() -> float:
    """How long a minute of a per-minute limit lasts: 60 s, unless the test suite shortens it (with the sandbox's
    --minute-seconds) to run a per-minute endpoint's behaviour in seconds. Read when a run builds its limits."""
    return float(os.environ.get(TEST_MINUTE_SECONDS, 60.0))


TEST_MINUTE_SECONDS = "ROKT_PIPELINE_TEST_MINUTE_SECONDS"


def rate_window(limits: Limits) -> tuple[int, float]:
    """(starts, seconds): at most `starts` request starts in any window of `seconds`, the way a server counts.

    4/s is 4 starts in any second, not one every 250 ms; 1.5/s is one per second (never two within one second);
    10/min is 10 starts in any minute.
    """
    if limits.requests_per_minute is not None:
        period, rate = minute_seconds(), limits.requests_per_minute
    else:
        assert limits.requests_per_second is not None
        period, rate = 1.0, limits.requests_per_second
    capacity = max(1, math.floor(rate))
    return capacity, max(period, capacity * period / rate)


def send_seconds(requests: int, limits: Limits) -> float:
    """How long `requests` requests take at the configured rate (not counting answers slower than it)."""
    return round(max(requests, 0) / limits.per_second, 1)


def describe_send_time(requests: int, limits: Limits) -> str:
    """'1,000 requests at 10/min: about 1 h 40 min'."""
    seconds = send_seconds(requests, limits)
    return f"{plural(requests, 'request')} at {limits.describe_rate()}: " + (f"about {describe_duration(seconds)}" if seconds >= 1
                                                                     else "under a second")


class SlidingWindowRateLimiter:
    """Starts spaced evenly at the limit's rate, and never more than `capacity` in any window of `window` seconds.

    For 4 requests/s that is one start every 262 ms and never 5 within a second, the way a server counts. Spaced,
    not a second's worth released at once: requests released together reach a busy server together, and the
    jitter between their arrivals then decided whether the fifth start of the next second looked early (the demo
    saw 1 to 4 violations a run on a loaded machine; a 10M-row run one). `margin` widens the window a little more,
    so that arrival jitter never makes a compliant client look like a violator: 50 ms, 5% of the rate, cheaper than
    one 429 and its Retry-After.

    The rate adapts to throttling: each 429 (or 503 with Retry-After) cuts it by `DECREASE` (once per window: the
    answers to one burst are one signal), down to `FLOOR` of the limit; each success gives back a `capacity`-th of
    the limit, so a window of successes restores it (additive increase, multiplicative decrease, as AWS's adaptive
    retry mode does). Random throttling among many successes barely slows a run; a limit really hit brings it down.
    """

    DECREASE = 0.7
    FLOOR = 0.1

    def __init__(self, capacity: int, window: float, margin: float = 0.05, clock=time.monotonic, sleep=time.sleep):
        self.capacity = capacity
        self.window = window + margin
        self.spacing = self.window / capacity
        self.pace = self.lowest_pace = 1.0  # the share of the limit the run keeps to now, and the lowest it fell to
        self.throttled_answers = 0
        self._starts: deque[float] = deque()
        self._next_start = float("-inf")  # even spacing: the earliest the next start may be
        self._not_before = 0.0  # a server's Retry-After holds every start of the run, not only the retry's
        self._last_decrease = float("-inf")
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, stop: threading.Event | None = None) -> float | None:
        """Take a start, waiting for one if needed: its time, or None (nothing taken) once `stop` is set."""
        while True:
            if stop is not None and stop.is_set():
                return None
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                wait = max(self._not_before - now, self._next_start - now,
                           self.window - (now - self._starts[0]) if len(self._starts) >= self.capacity else 0.0)
                if wait <= 0:
                    self._starts.append(now)
                    self._next_start = now + self.spacing / self.pace
                    return now
                wait = max(wait, 0.001)  # a rounding error's wait would spin
            if stop is None:
                self._sleep(wait)
            else:
                stop.wait(wait)  # woken at once by a stop, which the loop then sees

    def departing(self, start: float) -> None:
        """The request that took `start` leaves only now (the time in between went to recording it, or to waiting
        for a core): its start moves to now, and so does the spacing after it. Otherwise a request that left late
        and the next, on time, would reach the server closer together than the limit allows."""
        with self._lock:
            now = self._clock()
            if start in self._starts and now > start:
                self._starts.remove(start)
                self._starts.append(now)  # the latest start there is: the deque stays in order
                self._next_start = max(self._next_start, now + self.spacing / self.pace)

    def hold(self, seconds: float) -> None:
        """No start for `seconds` from now (a 429 or 503 with Retry-After speaks for the whole account)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def throttled(self) -> None:
        """The API said "slow down": keep to a smaller share of the limit."""
        with self._lock:
            self.throttled_answers += 1
            now = self._clock()
            if now - self._last_decrease >= self.window:
                self._last_decrease = now
                self.pace = max(self.FLOOR, self.pace * self.DECREASE)
                self.lowest_pace = min(self.lowest_pace, self.pace)
                if self._starts:  # the next start, already scheduled, keeps to the slower pace too
                    self._next_start = max(self._next_start, self._starts[-1] + self.spacing / self.pace)

    def succeeded(self) -> None:
        with self._lock:
            self.pace = min(1.0, self.pace + 1.0 / self.capacity)

    def seed(self, seconds_ago: list[float]) -> None:
        """Count starts made before this limiter existed (an earlier attempt of the run, moments ago)."""
        with self._lock:
            now = self._clock()
            earlier = [now - ago for ago in seconds_ago if 0 <= ago < self.window]
            self._starts = deque(sorted([*self._starts, *earlier]))
            if earlier:
                self._next_start = max(self._next_start, max(earlier) + self.spacing)


class RequestGate:
    """Every attempt passes here: it holds a concurrency slot for the whole request and takes a rate start."""

    def __init__(self, limits: Limits):
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._rate = SlidingWindowRateLimiter(*rate_window(limits))

    @contextmanager
    def slot(self, stop: threading.Event | None = None) -> Iterator[float | None]:
        """Yields the time of the start taken, or None once `stop` is set (send nothing then). Call departing()
        with it right before the request's first byte."""
        with self._slots:
            yield self._rate.acquire(stop)

    def departing(self, start: float) -> None:
        self._rate.departing(start)

    def hold(self, seconds: float) -> None:
        self._rate.hold(seconds)

    def seed(self, seconds_ago: list[float]) -> None:
        self._rate.seed(seconds_ago)

    @property
    def rate(self) -> SlidingWindowRateLimiter:
        """The rate limiter, for what the run reports of it (its pace, throttled answers)."""
        return self._rate
