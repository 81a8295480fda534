"""The S3 ledger while S3 refuses its puts: bounded waiting lines, then a stop; the last lines kept locally."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import LedgerError
from pipeline.ledger import SEGMENTS, SegmentedLedger, read_records
from pipeline.storage import LocalStore


class FlakyStore(LocalStore):
    """A store whose segment puts fail while `failing` is set (S3 down, or access revoked mid-run)."""

    failing = False

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.failing and name.startswith(SEGMENTS):
            raise OSError("S3 is unavailable")
        super().write_bytes(name, data)


def record(n: int) -> dict:
    return {"batch": n, "status": "accepted", "digest": f"d{n}"}


def test_lines_wait_for_a_failed_put_up_to_a_bound_then_the_run_stops(tmp_path) -> None:
    store = FlakyStore(tmp_path)
    ledger = SegmentedLedger(store, flush_records=2, flush_seconds=3600, sleep=lambda seconds: None)
    store.failing = True
    for n in range(7):
        ledger.append(record(n))  # warned about, kept pending
    with pytest.raises(LedgerError, match="8 answered request\\(s\\) wait to be recorded, so the run stops sending"):
        ledger.append(record(7))
    store.failing = False
    ledger.close()  # S3 is back: every line is stored, none twice
    assert [r["batch"] for r in read_records(store)[0]] == list(range(8))


def test_what_the_last_put_cannot_store_is_kept_in_a_local_file_named_by_the_error(tmp_path) -> None:
    store = FlakyStore(tmp_path / "out")
    ledger = SegmentedLedger(store, flush_records=50, flush_seconds=3600, sleep=lambda seconds: None)
    for n in range(3):
        ledger.append(record(n))
    store.failing = True
    with pytest.raises(LedgerError) as failed:
        ledger.close()
    message = str(failed.value)
    assert "3 answered request(s) could not be recorded" in message and "copy it to" in message
    rescue = Path(message.split("saved in ", 1)[1].split(":", 1)[0])
    store.failing = False
    (store.path / SEGMENTS).mkdir(parents=True, exist_ok=True)
    shutil.copy(rescue, store.path / SEGMENTS / rescue.name)  # what the error tells the operator to do
    assert [r["batch"] for r in read_records(store)[0]] == [0, 1, 2]
