"""The state index on a local folder: commits name their parent, a moved state refuses a stale commit,
rollback moves only the pointer, pruning keeps the newest versions and never the current one or its parent."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import ConfigError
from pipeline.storage import LocalStore
from pipeline.sync.state_store import INDEX, StateMoved, StateStore


def store(tmp_path: Path, keep: int = 10) -> StateStore:
    root = LocalStore(tmp_path / "job")
    return StateStore(root.child("_state", "audience_import-0123"), root, {"endpoint": "audience_import"}, keep)


def version_file(tmp_path: Path, name: str, identifiers: list[str]) -> Path:
    path = tmp_path / f"{name}.source.parquet"
    pl.DataFrame({"hashed_identifier": identifiers, "rejected": [False] * len(identifiers)}).write_parquet(path)
    return path


def counts(n: int) -> dict[str, int]:
    return {"identifiers": n, "rejected": 0, "added": n, "removed": 0}


def test_commits_chain_and_a_stale_commit_is_refused(tmp_path) -> None:
    states = store(tmp_path)
    states.commit("day-1", None, version_file(tmp_path, "a", ["x"]), counts(1), how="run")
    states.commit("day-2", "day-1", version_file(tmp_path, "b", ["x", "y"]), counts(2), how="run")
    index = states.load()
    assert index.current == "day-2" and [(v["run_id"], v["parent"]) for v in index.versions] == [("day-1", None), ("day-2", "day-1")]
    with pytest.raises(StateMoved):  # a run that started from day-1 while day-2 was being written
        states.commit("day-3", "day-1", version_file(tmp_path, "c", ["z"]), counts(1), how="run")
    assert states.load().current == "day-2"
    states.commit("day-2", "day-1", version_file(tmp_path, "b2", ["x", "y", "w"]), counts(3), how="run")  # a resumed run
    assert [v["identifiers"] for v in states.load().versions] == [1, 3]


def test_rollback_moves_the_pointer_and_keeps_every_file(tmp_path) -> None:
    states = store(tmp_path)
    states.commit("day-1", None, version_file(tmp_path, "a", ["x"]), counts(1), how="run")
    states.commit("day-2", "day-1", version_file(tmp_path, "b", ["x", "y"]), counts(2), how="run")
    before, after = states.rollback("day-1")
    assert (before.current, after.current) == ("day-2", "day-1") and states.load().current == "day-1"
    assert states.load().events[0]["rollback_from"] == "day-2"
    assert (states.store.path / "day-2.parquet").exists()
    assert pl.read_parquet(states.fetch_version("day-1", tmp_path))["hashed_identifier"].to_list() == ["x"]
    with pytest.raises(ConfigError, match="no such state version"):
        states.rollback("day-7")


def test_pruning_keeps_the_newest_and_the_current_and_its_parent(tmp_path) -> None:
    states = store(tmp_path, keep=2)
    parent = None
    for day in range(1, 6):
        states.commit(f"day-{day}", parent, version_file(tmp_path, str(day), [str(day)]), counts(1), how="run")
        parent = f"day-{day}"
    index = states.load()
    assert [v["run_id"] for v in index.versions if not v.get("pruned")] == ["day-4", "day-5"]
    assert sorted(p.name for p in states.store.path.glob("*.parquet")) == ["day-4.parquet", "day-5.parquet"]
    with pytest.raises(ConfigError, match="no longer kept"):
        states.rollback("day-2")
    states.rollback("day-4")
    states.commit("day-6", "day-4", version_file(tmp_path, "6", ["6"]), counts(1), how="run")
    kept = [v["run_id"] for v in states.load().versions if not v.get("pruned")]
    assert "day-4" in kept and "day-6" in kept  # the current one and its parent survive pruning


def test_an_unreadable_index_is_a_clear_error(tmp_path) -> None:
    states = store(tmp_path)
    states.store.write_bytes(INDEX, b"{not json")
    with pytest.raises(ConfigError, match="not a readable state index"):
        states.load()


def test_the_example_mirror_job_loads(monkeypatch) -> None:
    from pipeline.config import load_job
    from tests.conftest import ROOT

    monkeypatch.setenv("ROKT_PUBLIC_KEY", "rpub")
    monkeypatch.setenv("ROKT_SECRET_KEY", "rsec")
    job = load_job(ROOT / "configs" / "audience_mirror.yaml")
    assert (job.destination.sync_mode, job.destination.max_exclude_fraction, job.output.keep_state_versions) == ("mirror", 0.2, 10)
