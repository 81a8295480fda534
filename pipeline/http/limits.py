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
    noun = "request" if requests == 1 else "requests"
    return f"{requests:,} {noun} at {limits.describe_rate()}: about {describe_duration(send_seconds(requests, limits))}"


class SlidingWindowRateLimiter:
    """At most `capacity` starts in any window of `window` seconds.

    For 4 requests/s that is 4 starts in any one second, the way a server counts, not one start every
    250 ms. `margin` widens the window a little so that arrival jitter on the server side never makes
    a compliant client look like a violator. 50 ms: the time from taking a start to the request's
    headers reaching the server varies by tens of milliseconds when both cores are busy preparing the next
    batches: in the 10M-row end-to-end benchmark the sandbox counted a fifth start within a second in 4 of 10
    runs with 30 ms, and with 50 ms in 1 of about 10 runs, then 1 of 9 once requests were prepared before their
    start is taken, and none in 8 since bodies are encoded one at a time. Measured against the sandbox's arrival
    clock, arrivals lag their start by up to 37 ms with a 20 ms margin and 62 ms with 10 ms. It costs 5% of the
    rate, which is cheaper than one 429 and its Retry-After.
    """

    def __init__(self, capacity: int, window: float, margin: float = 0.05, clock=time.monotonic, sleep=time.sleep):
        self.capacity = capacity
        self.window = window + margin
        self._starts: deque[float] = deque()
        self._not_before = 0.0  # a server's Retry-After holds every start of the run, not only the retry's
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Take a start, waiting for one if needed; False (nothing taken) once `stop` is set."""
        while True:
            if stop is not None and stop.is_set():
                return False
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if now < self._not_before:
                    wait = self._not_before - now
                elif len(self._starts) < self.capacity:
                    self._starts.append(now)
                    return True
                else:
                    wait = max(self.window - (now - self._starts[0]), 0.001)
            if stop is None:
                self._sleep(wait)
            else:
                stop.wait(wait)  # woken at once by a stop, which the loop then sees

    def seed(self, seconds_ago: list[float]) -> None:
        """Count starts made before this limiter existed (an earlier attempt of the run, moments ago)."""
        with self._lock:
            now = self._clock()
            self._starts = deque(sorted([*self._starts, *(now - ago for ago in seconds_ago if 0 <= ago < self.window)]))

    def hold(self, seconds: float) -> None:
        """No start for `seconds` from now (a 429 or 503 with Retry-After speaks for the whole account)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)


class RequestGate:
    """Every attempt passes here: it holds a concurrency slot for the whole request and takes a rate start."""

    def __init__(self, limits: Limits):
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._rate = SlidingWindowRateLimiter(*rate_window(limits))

    @contextmanager
    def slot(self, stop: threading.Event | None = None) -> Iterator[bool]:
        """Yields True with a start taken, or False once `stop` is set (send nothing then)."""
        with self._slots:
            yield self._rate.acquire(stop)

    def hold(self, seconds: float) -> None:
        self._rate.hold(seconds)

    def seed(self, seconds_ago: list[float]) -> None:
        self._rate.seed(seconds_ago)
