"""A run's counts, kept in one place: every batch is counted once, by what became of it."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.http.client import Delivery


class Tally:
    """Batches by status, and the requests, retries and identifiers behind them. Shared by the sending threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[str] = Counter()
        self.requests = self.retries = self.ambiguous = 0
        self.identifiers_sent = self.identifiers_accepted = 0

    def count(self, status: str) -> None:
        """A batch that was not sent: already accepted, not sent (the run stopped), or a dry run's."""
        with self._lock:
            self.by_status[status] += 1

    def delivered(self, identifiers: int, delivery: Delivery) -> None:
        """A batch that went out, whatever its answer."""
        with self._lock:
            self.by_status[delivery.status] += 1
            self.requests += delivery.attempts
            self.retries += delivery.attempts - 1
            self.identifiers_sent += identifiers
            self.ambiguous += int(delivery.ambiguous)
            if delivery.status == "accepted":
                self.identifiers_accepted += identifiers
