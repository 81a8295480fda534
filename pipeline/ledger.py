"""The ledger is the truth: one JSON line per request outcome, flushed and fsynced as each answer arrives.

A run started again with the same run id reads it back and skips batches already accepted. A torn last
line (a crash mid-write) is ignored and reported, never fatal. Nothing here ever holds a raw identifier.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"
REJECTS = "rejects.csv"
PLAN = "plan.json"  # written before the first request: what the run means to send


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_manifest(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, torn lines). Only an unreadable line is skipped; the rest still counts."""
    if not path.exists():
        return [], 0
    records, torn = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                torn += 1
    return records, torn


class Ledger:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / MANIFEST
        self.records, self.torn_lines = read_manifest(self.path)
        if self.torn_lines:
            log.warning("manifest %s: ignored %d unreadable line(s) left by an interrupted write", self.path, self.torn_lines)
        self._repair_tail()
        self._lock = threading.Lock()
        self._handle = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        # A torn last line has no newline: start the next record on a line of its own.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    with open(self.path, "ab") as out:
                        out.write(b"\n")

    def accepted(self, counts: Callable[[dict[str, Any]], bool] = lambda record: True) -> list[dict[str, Any]]:
        """Request lines accepted under this run id that `counts` says need not be sent again."""
        return [r for r in self.records if r.get("status") == "accepted" and "batch" in r and counts(r)]

    def accepted_batches(self, counts: Callable[[dict[str, Any]], bool] = lambda record: True) -> dict[int, str]:
        """batch index -> digest of every batch already accepted under this run id."""
        return {r["batch"]: r["digest"] for r in self.accepted(counts)}

    def accepted_subjects(self, counts: Callable[[dict[str, Any]], bool] = lambda record: True) -> set[str]:
        """Subjects of one-subject requests already accepted under this run id: never sent again."""
        return {r["subject"] for r in self.accepted(counts) if "subject" in r}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.records.append(record)

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
