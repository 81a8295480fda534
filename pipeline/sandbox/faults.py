"""Fault injection: a script of faults for the next requests, and random rates, per family or for all."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

# kinds: none (a placeholder in a script: this request is served normally), status (with status and optional retry_after: seconds or "date"), slow (delay_seconds, after acting),
# reset_before (connection dropped before acting), reset_after (acted, then dropped), malformed (acted, bad body),
# error_after (acted, then answered `status`, default 504, as a gateway that lost the answer: only its X- headers kept)
KINDS = ("none", "status", "slow", "reset_before", "reset_after", "malformed", "error_after")


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int | None = None
    retry_after: str | None = None
    delay_seconds: float = 0.0

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind", "status")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        retry_after = spec.get("retry_after")
        return cls(kind, spec.get("status"), None if retry_after is None else str(retry_after), float(spec.get("delay_seconds", 0)))


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            # Each fault is for a family (None: any) and a method (None: any), e.g. only the POSTs that write.
            self._script: list[tuple[str | None, str | None, Fault]] = []
            self._rates: list[tuple[str | None, str | None, float, Fault]] = []
            self._latency: dict[str | None, float] = {}
            self._rng = random.Random(0)

    def configure(self, spec: dict[str, Any]) -> None:
        """{"family": optional, "method": optional, "script": [fault, ...], "rates": [{"rate": 0.1, ...fault}],
        "latency_seconds": x, "seed": n}"""
        family, method = spec.get("family"), spec.get("method")
        with self._lock:
            if "seed" in spec:
                self._rng = random.Random(spec["seed"])
            self._script.extend((family, method, Fault.parse(f)) for f in spec.get("script", []))
            for entry in spec.get("rates", []):
                self._rates.append((family, method, float(entry["rate"]), Fault.parse(entry)))
            if "latency_seconds" in spec:
                self._latency[family] = float(spec["latency_seconds"])

    def latency(self, family: str) -> float:
        with self._lock:
            return self._latency.get(family, self._latency.get(None, 0.0))

    def next_fault(self, family: str, method: str) -> Fault | None:
        with self._lock:
            for position, (target, target_method, fault) in enumerate(self._script):
                if target in (None, family) and target_method in (None, method):
                    del self._script[position]
                    return None if fault.kind == "none" else fault
            for target, target_method, rate, fault in self._rates:
                if target in (None, family) and target_method in (None, method) and self._rng.random() < rate:
                    return fault
        return None
