"""The ledger is the truth: one JSON line per request outcome, recorded as each answer arrives.

A run started again with the same run id reads it back and skips what was already accepted. A torn line (a
crash mid-write) is ignored and reported, never fatal. Nothing here ever holds a raw identifier.

Local output: `manifest.jsonl`, flushed and fsynced per record. S3 output: the same lines in immutable segment
objects under `manifest/`, put after `ledger_flush_records` answers or `ledger_flush_seconds`, whichever comes
first, so a lost worker loses at most that much of its ledger (S3 has no append). While S3 refuses the puts,
lines wait in memory up to a bound, then the run stops sending; what the last put cannot store is saved to a
local file that the error names.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline.errors import LedgerError
from pipeline.storage import LocalStore, Store
from pipeline.words import plural

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SEGMENTS = "manifest/"
# `record` kinds of lines that are not a request's outcome (those have a `status`):
SENDING = "sending"  # a not idempotent request is about to be sent: a resume knows it may have arrived
UNRECORDED_ATTEMPTS = "unrecorded_attempts"  # IDs the API may hold for requests sent before a crash
SUMMARY = "summary.json"  # the latest attempt's
SUMMARIES = "summaries/"  # every attempt's: <attempt number>.json
REJECTS = "rejects.csv"
PLAN = "plan.json"  # written before the first request: what the run means to send

Counts = Callable[[dict[str, Any]], bool]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """(records, torn lines). Only an unreadable line is skipped; the rest still counts."""
    records, torn = [], 0
    for line in data.splitlines():
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


def read_records(store: Store) -> tuple[list[dict[str, Any]], int]:
    """Every ledger line of a run, local file or S3 segments, in write order."""
    records, torn = parse_lines(store.read_bytes(MANIFEST) or b"")
    for name in store.list(SEGMENTS):
        more, more_torn = parse_lines(store.read_bytes(name) or b"")
        records += more
        torn += more_torn
    return records, torn


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


class LedgerBase:
    records: list[dict[str, Any]]
    torn_lines: int

    def accepted(self, counts: Counts = lambda record: True) -> list[dict[str, Any]]:
        """Request lines accepted under this run id that `counts` says need not be sent again."""
        return [r for r in self.records if r.get("status") == "accepted" and "batch" in r and counts(r)]

    def accepted_batches(self, counts: Counts = lambda record: True) -> dict[int, str]:
        """batch index -> digest of every batch already accepted under this run id."""
        return {r["batch"]: r["digest"] for r in self.accepted(counts)}

    def accepted_subjects(self, covered: Callable[[dict[str, Any]], Iterable[str]],
                          counts: Counts = lambda record: True) -> set[str]:
        """Resume keys (`covered` of each line) of one-subject requests accepted under this run id: never sent again."""
        return {key for r in self.accepted(counts) if "subject" in r for key in covered(r)}

    def _report_torn(self, where: str) -> None:
        if self.torn_lines:
            log.warning("manifest %s: ignored %s left by an interrupted write", where, plural(self.torn_lines, "unreadable line"))

    def append(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Ledger(LedgerBase):
    """A local manifest.jsonl, fsynced per record."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / MANIFEST
        self.records, self.torn_lines = read_records(LocalStore(directory))
        self._report_torn(str(self.path))
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

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(_line(record))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.records.append(record)

    def close(self) -> None:
        with self._lock:
            self._handle.close()


_PENDING_FLUSHES = 4  # a run goes on sending while at most this many segments' worth of lines wait for a put
_CLOSE_ATTEMPTS = 4  # the last put, each after boto3's own retries


class SegmentedLedger(LedgerBase):
    """The ledger in an object store: segments of lines, each put once, never rewritten."""

    def __init__(self, store: Store, flush_records: int, flush_seconds: float, sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.records, self.torn_lines = read_records(store)
        self._report_torn(store.uri)
        self._flush_records = flush_records
        self._flush_seconds = flush_seconds
        self._sleep = sleep
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._writer = secrets.token_hex(4)  # two workers resuming one run never overwrite each other's segments
        self._sequence = len(store.list(SEGMENTS))
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="ledger-flush", daemon=True)
        self._flusher.start()

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(_line(record))
            self.records.append(record)
            if len(self._pending) >= self._flush_records:
                try:
                    self._flush_locked()
                except Exception as exc:  # the request was sent: keep its line pending, the next flush retries
                    if len(self._pending) >= _PENDING_FLUSHES * self._flush_records:
                        # The bound a lost worker would re-send (README, S3) holds only while lines reach S3.
                        raise LedgerError(f"the manifest cannot be written to {self.store.uri} ({exc}); "
                                          f"{len(self._pending)} answered request(s) wait to be recorded, so the run "
                                          "stops sending") from None
                    log.warning("could not write a ledger segment to %s yet (%d line(s) pending): %s",
                                self.store.uri, len(self._pending), exc)

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self._flush_seconds):
            with self._lock:
                try:
                    self._flush_locked()
                except Exception as exc:  # kept pending; the next flush or close tries again
                    log.warning("could not write a ledger segment to %s yet: %s", self.store.uri, exc)

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        name = f"{SEGMENTS}{self._sequence:08d}-{self._writer}.jsonl"
        self.store.write_bytes(name, "".join(self._pending).encode())
        self._sequence += 1
        self._pending.clear()

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=self._flush_seconds + 5)
        with self._lock:
            for attempt in range(_CLOSE_ATTEMPTS):
                try:
                    self._flush_locked()
                    return
                except Exception as exc:
                    problem = exc
                    if attempt + 1 < _CLOSE_ATTEMPTS:
                        self._sleep(2.0 ** attempt)
            # Lines hold no raw identifier (module docstring): a local file may keep them.
            rescue = Path(tempfile.gettempdir()) / "rokt-pipeline-unsaved" / f"{self._sequence:08d}-{self._writer}.jsonl"
            rescue.parent.mkdir(parents=True, exist_ok=True)
            rescue.write_text("".join(self._pending), encoding="utf-8")
            raise LedgerError(
                f"{len(self._pending)} answered request(s) could not be recorded in {self.store.uri} ({problem}); their "
                f"manifest lines are saved in {rescue}: copy it to {self.store.uri}/{SEGMENTS} before running again with "
                "the same --run-id, or that run sends those requests again")


def open_ledger(store: Store, flush_records: int, flush_seconds: float) -> LedgerBase:
    if isinstance(store, LocalStore):
        return Ledger(store.path)
    return SegmentedLedger(store, flush_records, flush_seconds)


def read_json(store: Store, name: str) -> dict[str, Any] | None:
    """A JSON object written by write_json; None when absent, or torn by a crash (as if it were not there)."""
    data = store.read_bytes(name)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def write_json(store: Store, name: str, payload: dict[str, Any]) -> None:
    store.write_bytes(name, (json.dumps(payload, indent=2) + "\n").encode())
