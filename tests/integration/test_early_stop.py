"""A consumer that stops part way (a bug in a worker, Ctrl-C) still leaves every flagged row read in rejects.csv,
and no half-written delivery index."""

from __future__ import annotations

import pytest

from pipeline.config import load_job
from pipeline.runner import run_job
from tests.conftest import audience_job, write_job


class _FailsOnThirdBatch:
    def __init__(self) -> None:
        self.batches_done = 0

    def start(self, counts, batch_size, skipped) -> None:
        pass

    def batch_done(self, record) -> None:
        self.batches_done += 1
        if self.batches_done == 3:
            raise RuntimeError("progress display broke")

    def finish(self) -> None:
        pass


def test_rejects_are_written_when_sending_stops_part_way(tmp_path, sandbox_env) -> None:
    source = tmp_path / "customers.csv"
    rows = [f"not-an-email-{i}" for i in range(3)] + [f"user{i}@example.com" for i in range(200)]
    source.write_text("Email Address\n" + "\n".join(rows) + "\n")
    job = audience_job(tmp_path, source, limits={"batch_size": 10, "requests_per_second": 4, "concurrency": 1})
    with pytest.raises(RuntimeError, match="progress display broke") as stopped:
        run_job(load_job(write_job(tmp_path, job)), run_id="stopped", dry_run=True, progress=_FailsOnThirdBatch())
    # `stopped` keeps the run's frames (and the stream) alive: the rejects must not wait for them to be freed.
    run_folder = tmp_path / "out" / "test-audience" / "stopped"
    rejects = (run_folder / "rejects.csv").read_text().splitlines()
    assert len(rejects) == 1 + 3, rejects
    # The delivery index is written beside the manifest as a hidden partial file; a run stopped part way has none.
    leftovers = [p.name for p in run_folder.iterdir() if p.name.startswith(".") or "delivery_index" in p.name]
    assert leftovers == []


def test_a_ledger_that_cannot_be_closed_leaves_no_partial_index(tmp_path, sandbox_env, monkeypatch) -> None:
    """A full disk when the last ledger lines are written: the run fails, and its folder holds no partial index."""
    import pipeline.runner as runner

    real_open_ledger = runner.open_ledger

    def ledger_whose_close_fails(*args, **kwargs):
        ledger = real_open_ledger(*args, **kwargs)
        real_close = ledger.close

        def close() -> None:
            real_close()
            raise OSError(28, "No space left on device")

        ledger.close = close
        return ledger

    monkeypatch.setattr(runner, "open_ledger", ledger_whose_close_fails)
    source = tmp_path / "customers.csv"
    source.write_text("Email Address\n" + "\n".join(f"user{i}@example.com" for i in range(50)) + "\n")
    job = audience_job(tmp_path, source, limits={"batch_size": 10, "requests_per_second": 4, "concurrency": 1})
    with pytest.raises(OSError, match="No space left"):
        run_job(load_job(write_job(tmp_path, job)), run_id="full-disk", dry_run=True)
    run_folder = tmp_path / "out" / "test-audience" / "full-disk"
    assert [p.name for p in run_folder.iterdir() if p.name.startswith(".")] == []  # the index is whole or absent
