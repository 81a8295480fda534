"""The versioned state of a job's destination, kept next to the job's outputs (a local folder or S3).

    <output.uri>/<job>/_state/<endpoint>-<key hash>/
        state.json                  the index: destination key, current version, every version, rollbacks
        <run_id>.parquet            one version per run that changed the state: hashed_identifier, rejected
        pending/<run_id>/           a run's plan, written before its first request (plan.json last):
            rows.parquet            batch, hashed_identifier, effect (add | remove | forget)
            batches.parquet         batch, digest, action, records
            plan.json               base version, batch size, when

A version is written before the index names it, and the index is one object, so a reader sees either the
old state or the new one. The pending plan lets a later run fold in what a run that died mid-way had
already delivered (its ledger says which batches were accepted), instead of sending it again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import JobConfig
from pipeline.errors import ConfigError
from pipeline.ledger import utc_now, write_json
from pipeline.outputs import job_store
from pipeline.storage import LocalStore, Store
from pipeline.sync.identity import destination_key, key_name

log = logging.getLogger(__name__)

STATE_FOLDER = "_state"  # run ids start with a letter or digit, so this never names a run's folder
INDEX = "state.json"
PENDING = "pending"
PLAN_ROWS, PLAN_BATCHES, PLAN_META = "rows.parquet", "batches.parquet", "plan.json"
FORMAT = 1


@dataclass(frozen=True)
class StateIndex:
    destination: dict[str, Any]
    current: str | None = None
    versions: tuple[dict[str, Any], ...] = ()  # oldest first
    events: tuple[dict[str, Any], ...] = ()  # rollbacks, newest last

    def version(self, run_id: str | None) -> dict[str, Any] | None:
        return next((v for v in self.versions if v["run_id"] == run_id), None)

    def with_version(self, entry: dict[str, Any]) -> StateIndex:
        """`entry` made current; a run that commits again (a resumed run) replaces its own entry."""
        others = tuple(v for v in self.versions if v["run_id"] != entry["run_id"])
        return replace(self, current=entry["run_id"], versions=(*others, entry))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "destination": self.destination, "current": self.current,
                "versions": list(self.versions), "events": list(self.events)}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> StateIndex:
        return cls(payload["destination"], payload.get("current"), tuple(payload.get("versions", ())), tuple(payload.get("events", ())))


@dataclass(frozen=True)
class PendingPlan:
    run_id: str
    base: str | None
    rows: Path
    batches: Path


@dataclass
class StateStore:
    store: Store  # the key's folder
    runs: Store  # the job's folder: <output.uri>/<job>/, where each run's ledger lives
    destination: dict[str, Any]
    keep_versions: int

    @property
    def uri(self) -> str:
        return self.store.uri

    def load(self) -> StateIndex:
        raw = self.store.read_bytes(INDEX)
        if raw is None:
            return StateIndex(self.destination)
        try:
            return StateIndex.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.uri}/{INDEX} is not a readable state index; restore it from a backup or "
                              "move the folder away to start the state afresh") from None

    def fetch_version(self, run_id: str | None, workdir: Path) -> Path | None:
        """A local path to version `run_id` (None: the empty state before the first run)."""
        if run_id is None:
            return None
        name = f"{run_id}.parquet"
        if isinstance(self.store, LocalStore):
            path = self.store.path / name
            if path.exists():
                return path
        else:
            path = workdir / f"state-{run_id}.parquet"
            if self.store.download_file(name, path):
                return path
        raise ConfigError(f"state version {run_id} is missing from {self.uri}; roll back to a version that exists "
                          f"(rokt-pipeline state show) or move the folder away to start afresh")

    def scratch_path(self, name: str, workdir: Path) -> Path:
        """Where to write a state version about to be committed (see Store.scratch_path)."""
        return self.store.scratch_path(name, workdir)

    def commit(self, run_id: str, parent: str | None, path: Path, counts: dict[str, Any], how: str) -> StateIndex:
        """Make the state at `path` version `run_id`, with `parent` the version it was computed from."""
        index = self.load()
        if index.current not in (parent, run_id):
            raise StateMoved(f"the state moved to version {index.current} while this run was working from {parent} "
                             "(two runs of one job at the same time?)")
        name = f"{run_id}.parquet"
        self.store.publish_file(name, path)
        entry = {"run_id": run_id, "parent": parent, "written_at": utc_now(), "how": how, **counts}
        index = self._pruned(index.with_version(entry))
        write_json(self.store, INDEX, index.to_json())
        return index

    def rollback(self, to: str) -> tuple[StateIndex, StateIndex]:
        """(before, after): the index naming `to` as the current version."""
        before = self.load()
        target = before.version(to)
        if target is None:
            known = ", ".join(v["run_id"] for v in reversed(before.versions)) or "none"
            raise ConfigError(f"--to {to}: no such state version at {self.uri} (versions, newest first: {known})")
        if target.get("pruned"):
            raise ConfigError(f"--to {to}: that version is no longer kept (output.keep_state_versions={self.keep_versions})")
        if before.current == to:
            return before, before
        event = {"at": utc_now(), "rollback_from": before.current, "rollback_to": to}
        after = replace(before, current=to, events=(*before.events, event))
        write_json(self.store, INDEX, after.to_json())
        return before, after

    def _pruned(self, index: StateIndex) -> StateIndex:
        """Delete the files of versions beyond the newest `keep_versions` (never the current one or its parent)."""
        current = index.version(index.current) or {}
        protected = {index.current, current.get("parent")}
        kept = [v for v in index.versions if not v.get("pruned")]
        surplus = kept[: max(len(kept) - self.keep_versions, 0)]
        gone = {v["run_id"] for v in surplus if v["run_id"] not in protected}
        for run_id in gone:
            self.store.delete(f"{run_id}.parquet")
        versions = tuple({**v, "pruned": True} if v["run_id"] in gone else v for v in index.versions)
        return replace(index, versions=versions)

    # The write-ahead plan of a run.

    def write_pending(self, run_id: str, base: str | None, rows: Path, batches: Path, batch_size: int) -> None:
        folder = f"{PENDING}/{run_id}"
        self.store.upload_file(f"{folder}/{PLAN_ROWS}", rows)
        self.store.upload_file(f"{folder}/{PLAN_BATCHES}", batches)
        write_json(self.store, f"{folder}/{PLAN_META}", {"run_id": run_id, "base": base, "batch_size": batch_size,
                                                         "written_at": utc_now()})

    def pending_runs(self) -> list[dict[str, Any]]:
        """The plans of runs that never recorded their outcome, oldest first (each plan.json's content)."""
        metas = []
        for name in self.store.list(f"{PENDING}/"):
            if name.endswith(f"/{PLAN_META}"):
                raw = self.store.read_bytes(name)
                if raw:
                    metas.append(json.loads(raw))
        return sorted(metas, key=lambda meta: meta["written_at"])

    def pending_meta(self, run_id: str) -> dict[str, Any] | None:
        raw = self.store.read_bytes(f"{PENDING}/{run_id}/{PLAN_META}")
        return json.loads(raw) if raw else None

    def fetch_pending(self, meta: dict[str, Any], workdir: Path) -> PendingPlan:
        folder, run_id = f"{PENDING}/{meta['run_id']}", meta["run_id"]
        rows, batches = workdir / f"pending-{run_id}-rows.parquet", workdir / f"pending-{run_id}-batches.parquet"
        if not (self.store.download_file(f"{folder}/{PLAN_ROWS}", rows) and self.store.download_file(f"{folder}/{PLAN_BATCHES}", batches)):
            raise ConfigError(f"the pending plan of run {run_id} at {self.uri}/{folder} is incomplete; delete that folder")
        return PendingPlan(run_id, meta.get("base"), rows, batches)

    def drop_pending(self, run_id: str) -> None:
        folder = f"{PENDING}/{run_id}"
        for name in (PLAN_META, PLAN_ROWS, PLAN_BATCHES):  # the marker first: a half-deleted plan is never used
            self.store.delete(f"{folder}/{name}")


class StateMoved(Exception):
    """The index no longer names the version a run started from."""


def state_store_for(job: JobConfig) -> StateStore:
    key = destination_key(job)
    runs = job_store(job)  # every run's folder and the state live under it
    return StateStore(runs.child(STATE_FOLDER, key_name(key)), runs, key, job.output.keep_state_versions)


def other_states(job: JobConfig) -> list[tuple[str, StateIndex]]:
    """States under this job for other destinations (an earlier list, account or mode): (folder URI, index)."""
    runs = job_store(job)  # every run's folder and the state live under it
    own = key_name(destination_key(job))
    found = []
    for name in runs.child(STATE_FOLDER).list():
        folder, _, leaf = name.partition("/")
        if leaf == INDEX and folder != own:
            raw = runs.child(STATE_FOLDER, folder).read_bytes(INDEX)
            if raw:
                found.append((runs.child(STATE_FOLDER, folder).uri, StateIndex.from_json(json.loads(raw))))
    return found
