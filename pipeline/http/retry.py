"""One immutable retry policy: capped exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    max_throttle: float = 900.0  # seconds a request waits out "slow down" answers before the run gives up
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        jittered = self.rng.uniform(backoff / 2, backoff)
        if retry_after is None:
            return jittered
        # The server's wish is a floor; a little jitter on top keeps parallel workers from waking together.
        return retry_after + self.rng.uniform(0, min(1.0, self.base_delay))

    def honours(self, retry_after: float | None) -> bool:
        """False when the server asks for a longer wait than this job allows: fail, rather than retry early."""
        return retry_after is None or retry_after <= self.max_retry_after

    def can_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts


def is_slow_down(status: int, retry_after: float | None) -> bool:
    """A 429, or a 503 with Retry-After: the server says it did not act, and asks the client to wait. Such answers
    are waited out (retry.max_throttle_seconds) without using up retry.max_attempts."""
    return status == 429 or (status == 503 and retry_after is not None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
