"""A run's stop switch: thrown once, for the first reason given; every worker looks at it before its next request."""

from __future__ import annotations

import threading


class StopSwitch:
    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.stop_reason: str | None = None

    def stop(self, reason: str | None = None) -> None:
        if not self.stopped.is_set():
            self.stop_reason = reason
        self.stopped.set()

    def close(self) -> None:
        """Release what the run held open (a dry run holds nothing)."""
