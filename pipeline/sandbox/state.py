"""What the sandbox remembers: every request it saw, the limits it enforces, and every limit violation."""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.sandbox.credentials import Credentials


@dataclass(frozen=True)
class FamilyLimits:
    """What the sandbox enforces for a family: starts per second or per minute (the published way), in flight."""

    requests_per_second: float | None = None
    concurrency: int = 1
    requests_per_minute: float | None = None

    def window(self, minute_seconds: float) -> tuple[int, float]:
        """(starts, seconds): at most this many starts in any window this long."""
        period, rate = (1.0, self.requests_per_second) if self.requests_per_second else (minute_seconds, self.requests_per_minute)
        assert rate, "a family's limits need requests_per_second or requests_per_minute"
        capacity = max(1, math.floor(rate))
        return capacity, max(period, capacity * period / rate)

    @classmethod
    def parse(cls, values: dict[str, Any]) -> FamilyLimits:
        """From the admin API's JSON: {"requests_per_second" or "requests_per_minute": n, "concurrency": n}."""
        minute = values.get("requests_per_minute")
        return cls(None if minute else float(values["requests_per_second"]), int(values["concurrency"]),
                   float(minute) if minute else None)


# Arrival jitter the sandbox forgives when counting starts per window: a compliant client's requests can reach
# a busy server a few milliseconds apart from how they left. The client keeps a wider margin (50 ms).
JITTER_ALLOWANCE_SECONDS = 0.025


def _busiest_window(starts: list[float], at: float, window: float) -> int:
    """The most starts in any window of `window` seconds that contains the start at `at` (`starts` sorted)."""
    first = bisect.bisect_right(starts, at - window)
    return max((bisect.bisect_left(starts, begin + window) - i
                for i, begin in enumerate(starts[first:bisect.bisect_right(starts, at)], first)), default=0)


@dataclass
class FamilyCounters:
    starts: list[float] = field(default_factory=list)  # recent arrivals, sorted
    in_flight: int = 0
    max_in_flight: int = 0
    max_starts_in_window: int = 0


class SandboxState:
    def __init__(self, limits: dict[str, FamilyLimits], credentials: Credentials, keep_identifiers: bool = True,
                 extensions: dict[str, Callable[["SandboxState"], Any]] | None = None, minute_seconds: float = 60.0):
        self.lock = threading.Lock()
        self._extension_factories = dict(extensions or {})
        self._default_limits = dict(limits)
        self.credentials = credentials
        self.keep_identifiers = keep_identifiers
        # How long a per-minute limit's minute lasts: 60 s, or shorter for tests (the client must be told the same:
        # ROKT_PIPELINE_TEST_MINUTE_SECONDS).
        self._default_minute_seconds = minute_seconds
        self.extension_defaults: dict[str, dict[str, Any]] = {}  # options each store starts with (the command line's)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.limits = dict(self._default_limits)
            self.received: list[dict[str, Any]] = []  # accepted requests: what the "real" API would have acted on
            self.attempts: list[dict[str, Any]] = []  # every request, with the answer it got
            self.violations: list[dict[str, Any]] = []
            self.counters: dict[str, FamilyCounters] = {}
            self.sequence = 0
            self.clock_offset = 0.0
            self.minute_seconds = self._default_minute_seconds
        # Per-family stores (deletion tasks, issued tokens): built outside the lock, they may read the clock.
        self.extensions: dict[str, Any] = {name: make(self) for name, make in self._extension_factories.items()}
        for name, options in self.extension_defaults.items():
            self.extensions[name].configure(options)

    def now(self) -> float:
        """Wall-clock seconds, shifted by POST /_sandbox/clock so tests can skip days of a lifecycle."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    def enter(self, family: str, arrived: float | None = None, principal: str | None = None) -> str | None:
        """Count a request's start; return a violation description when it breaks the family's limits.

        A start is the request's arrival (`arrived`, taken when its headers were read), the way a gateway's rate
        limiter counts: not when a 6 MB body has finished uploading, which depends on how busy both ends are.
        Requests are counted in arrival order even when a slower body makes one reach this point later. Limits
        published per credential (Partnerships) are counted per `principal`: every client using it shares them.
        """
        at = time.monotonic() if arrived is None else arrived
        limits = self.limits.get(family)
        with self.lock:
            counters = self.counters.setdefault(family if principal is None else f"{family}:{principal}", FamilyCounters())
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
            violation = None
            if limits is not None:
                capacity, window = limits.window(self.minute_seconds)
                window -= JITTER_ALLOWANCE_SECONDS
                bisect.insort(counters.starts, at)
                # Older starts can no longer share a window with this one or with any later arrival.
                del counters.starts[:bisect.bisect_left(counters.starts, at - 2 * window)]
                busiest = _busiest_window(counters.starts, at, window)
                counters.max_starts_in_window = max(counters.max_starts_in_window, busiest)
                if busiest > capacity:
                    violation = f"more than {capacity} requests started within {window:g}s"
                elif counters.in_flight > limits.concurrency:
                    violation = f"more than {limits.concurrency} requests in flight"
            if violation:
                self.violations.append({"family": family, "violation": violation, "at": time.time()})
            return violation

    def leave(self, family: str, principal: str | None = None) -> None:
        with self.lock:
            self.counters[family if principal is None else f"{family}:{principal}"].in_flight -= 1

    def record_attempt(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.attempts.append({**entry, "at": time.time()})

    def record_received(self, entry: dict[str, Any]) -> int:
        with self.lock:
            self.sequence += 1
            entry = {**entry, "sequence": self.sequence, "at": time.time()}
            if not self.keep_identifiers:
                entry.pop("identifiers", None)
            self.received.append(entry)
            return self.sequence

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "received": list(self.received),
                "attempts": list(self.attempts),
                "violations": list(self.violations),
                "families": {
                    name: {"max_in_flight": c.max_in_flight, "max_starts_in_window": c.max_starts_in_window}
                    for name, c in self.counters.items()
                },
                "limits": {name: vars(limits) for name, limits in self.limits.items()},
                "minute_seconds": self.minute_seconds,
                "clock": self.now(),
                **{name: store.snapshot() for name, store in self.extensions.items()},
            }
