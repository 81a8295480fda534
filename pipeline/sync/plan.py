"""incremental and mirror runs: plan the difference against the destination's state, send it, advance the state.

    plan_sync()       after preparation, before the first batch: catch up on runs that died mid-way, pick the
                      state version to diff against, diff, check the safety limit, write the plan ahead
    SyncPlan.batches  what the runner sends instead of the whole file (same Batch objects, same ledger)
    SyncPlan.advance  after sending: the new state version, from what the ledger shows accepted or refused
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from pipeline.batching import Batch, iter_batches
from pipeline.config import JobConfig
from pipeline.endpoints.base import Endpoint
from pipeline.errors import ConfigError
from pipeline.http.limits import send_seconds
from pipeline.ledger import read_records
from pipeline.prepare.prepared import PreparedInput
from pipeline.sync.diff import Difference, batch_table, difference, fold, plan_rows, state_counts
from pipeline.sync.identity import hashed_identifier
from pipeline.sync.outcomes import batch_outcomes
from pipeline.sync.report import describe_plan, describe_outcome
from pipeline.sync.state_store import StateIndex, StateMoved, StateStore, state_store_for

log = logging.getLogger(__name__)


@dataclass
class SyncPlan:
    """What this run sends, and how its outcome becomes the next state version.

    It offers the send loop the face of the prepared stream (batches(), batches_total, identifiers and the
    row counts), so the runner sends a plan exactly as it sends a whole file.
    """

    job: JobConfig
    endpoint: Endpoint
    prepared: PreparedInput
    run_id: str
    dry_run: bool
    states: StateStore
    base: str | None  # the state version diffed against (None: no state yet)
    base_path: Path | None
    diff: Difference
    rows: Path  # every planned row: batch, hashed_identifier, effect
    batch_plan: pl.DataFrame  # batch, digest, action, records
    workdir: Path
    report: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # the stream face: counts are final

    @property
    def identifiers(self) -> int:
        return self.diff.new_count + self.diff.left_count

    @property
    def batches_total(self) -> int:
        return self.batch_plan.height

    @property
    def rows_read(self) -> int:
        return self.prepared.rows_read

    @property
    def rows_rejected(self) -> int:
        return self.prepared.rows_rejected

    @property
    def rows_flagged(self) -> int:
        return self.prepared.rows_rejected

    @property
    def lines_read(self) -> int:
        return self.prepared.rows_read

    @property
    def lines_total(self) -> int:
        return self.prepared.rows_read

    @property
    def duplicates_dropped(self) -> int:
        return self.prepared.duplicates_dropped

    @property
    def superseded(self) -> int:
        return self.prepared.superseded

    @property
    def reject_reasons(self) -> dict[str, int]:
        return self.prepared.reject_reasons

    def prepare_all(self) -> None:
        """The stream face: a plan is made from the whole prepared set, so there is nothing left to read."""

    @property
    def mirror(self) -> bool:
        return self.job.destination.sync_mode == "mirror"

    def batches(self) -> Iterator[Batch]:
        """New identifiers first (include in mirror), then, for mirror, those that left (exclude): numbered on."""
        planned = dict(zip(self.batch_plan["batch"].to_list(), self.batch_plan["digest"].to_list()))
        size = self.endpoint.spec.limits.batch_size
        phases = [(self.diff.new, 0, "include" if self.mirror else None, self.diff.new_count)]
        if self.diff.left is not None:
            phases.append((self.diff.left, _batches(self.diff.new_count, size), "exclude", self.diff.left_count))
        for path, first, action, count in phases:
            if not count:
                continue
            for batch in iter_batches(path, size):
                attributes = {**(batch.attributes or {}), "action": action} if action else batch.attributes
                batch = replace(batch, index=first + batch.index, attributes=attributes)
                if planned.get(batch.index) != batch.digest:  # the plan and the batches must be the same sets
                    raise RuntimeError(f"sync: batch {batch.index} differs from the planned one")
                yield batch

    def advance(self, records: list[dict[str, Any]]) -> str | None:
        """Fold what the ledger shows accepted or refused into a new state version; a reason when it could not.

        Never called for a dry run's state change: a dry run only reports the plan.
        """
        if self.dry_run:
            return None
        outcomes = batch_outcomes(records, self.batch_plan, self.endpoint.counts_for_resume)
        next_state = self.states.scratch_path(f"{self.run_id}.parquet", self.workdir)
        result = fold(self.base_path, self.rows, outcomes, next_state)
        self.report.update(accepted_new=result.added, accepted_left=result.removed, rejected=result.rejected,
                           forgotten=result.forgotten, not_settled=result.pending)
        if result.changed:
            counts = {**state_counts(next_state), "added": result.added, "removed": result.removed,
                      "newly_rejected": result.rejected, "forgotten": result.forgotten}
            try:
                self.states.commit(self.run_id, self.base, next_state, counts, how="run")
            except StateMoved as exc:
                next_state.unlink(missing_ok=True)
                reason = f"the state was not advanced: {exc}; the next run sends these identifiers again"
                self.report.update(version=None, state_error=reason)
                log.error("%s", reason)
                return reason
            self.report.update(version=self.run_id, identifiers_in_state=counts["identifiers"], rejected_in_state=counts["rejected"])
        else:
            self.report.update(version=None, **{f"{k}_in_state": v for k, v in state_counts(self.base_path).items()})
        self.states.drop_pending(self.run_id)
        log.info("%s", describe_outcome(self.report))
        return None


def plan_sync(job: JobConfig, endpoint: Endpoint, prepared: PreparedInput, workdir: Path, run_id: str, *,
              dry_run: bool, confirmed: bool) -> SyncPlan:
    """Diff the prepared file against the destination's state; raises ConfigError when the plan is unsafe."""
    states = state_store_for(job)
    folder = workdir / "sync"
    folder.mkdir(parents=True, exist_ok=True)
    index, local_versions, caught_up = _catch_up(states, endpoint, run_id, folder, dry_run)
    base = _base_version(states, index, run_id)
    base_path = local_versions.get(base) if base in local_versions else states.fetch_version(base, folder)

    mirror = job.destination.sync_mode == "mirror"
    size = endpoint.spec.limits.batch_size
    identifier = hashed_identifier(endpoint.spec)
    diff = difference(prepared.unique_path, base_path, identifier, mirror, folder)
    first_left = _batches(diff.new_count, size)
    batch_plan = pl.concat([
        batch_table(diff.new, size, 0, "include" if mirror else None),
        batch_table(diff.left, size, first_left, "exclude"),
    ])
    rows = plan_rows(diff, identifier, size, first_left, folder / "plan-rows.parquet")

    limits = endpoint.spec.limits
    report: dict[str, Any] = {
        "mode": job.destination.sync_mode, "state": states.uri, "destination": states.destination,
        "base_version": base, "caught_up_runs": caught_up, "in_file": diff.in_file, "unchanged": diff.unchanged,
        "skipped_rejected": diff.skipped_rejected, "new": diff.new_count,
        "requests": batch_plan.height, "estimated_send_seconds": send_seconds(batch_plan.height, limits),
    }
    if mirror:
        fraction = diff.left_count / diff.list_size if diff.list_size else 0.0
        report.update(left=diff.left_count, forgotten_rejected=diff.forgotten_count, list_size=diff.list_size,
                      exclude_fraction=round(fraction, 6), max_exclude_fraction=job.destination.max_exclude_fraction)
        if fraction > job.destination.max_exclude_fraction and not confirmed:
            if not dry_run:
                raise ConfigError(_too_many_exclusions(report))
            report["needs_yes"] = True
    plan = SyncPlan(job, endpoint, prepared, run_id, dry_run, states, base, base_path, diff, rows, batch_plan, folder, report)
    if not dry_run:
        batches_path = folder / "plan-batches.parquet"
        batch_plan.write_parquet(batches_path)
        states.write_pending(run_id, base, rows, batches_path, size)
    log.info("%s", describe_plan(report, dry_run))
    return plan


def _too_many_exclusions(report: dict[str, Any]) -> str:
    return (f"mirror would exclude {report['left']:,} of the {report['list_size']:,} identifiers in the list "
            f"({report['exclude_fraction']:.1%}), more than destination.max_exclude_fraction={report['max_exclude_fraction']:g}; "
            f"the file has {report['in_file']:,} identifiers. An empty or truncated export looks like this: check the source, "
            "and rerun with --yes if the removal is intended. Nothing was sent.")


def _base_version(states: StateStore, index: StateIndex, run_id: str) -> str | None:
    """The version to diff against: the current one, or for a resumed run the one it first started from."""
    own = index.version(run_id)
    if own is not None:  # this run id advanced the state before: it is being resumed
        if index.current != run_id:
            raise ConfigError(
                f"run {run_id} already advanced the state at {states.uri}, which has moved on since (current version: "
                f"{index.current}); resuming it would undo that. Start a new run (without --run-id).")
        return own["parent"]
    pending = states.pending_meta(run_id)
    if pending is not None and pending["base"] != index.current:
        raise ConfigError(
            f"run {run_id} was planned against state version {pending['base']}, but the state at {states.uri} has "
            f"moved on to {index.current}; start a new run (without --run-id).")
    return index.current


def _catch_up(states: StateStore, endpoint: Endpoint, run_id: str, folder: Path, dry_run: bool
              ) -> tuple[StateIndex, dict[str | None, Path | None], list[str]]:
    """Fold in the plans of earlier runs that died before recording their outcome (their ledgers say what was
    accepted), so it is not sent again. A dry run computes the same in its work folder and writes nothing."""
    index = states.load()
    local_versions: dict[str | None, Path | None] = {}
    caught_up = []
    for meta in states.pending_runs():
        other = meta["run_id"]
        if other == run_id:
            continue
        if meta.get("base") != index.current:  # planned before a rollback or a later run: its outcome no longer applies
            log.warning("ignoring the unfinished plan of run %s: it was made against state version %s, not the current %s",
                        other, meta.get("base"), index.current)
            if not dry_run:
                states.drop_pending(other)
            continue
        pending = states.fetch_pending(meta, folder)
        records, _ = read_records(states.runs.child(other))
        outcomes = batch_outcomes(records, pl.read_parquet(pending.batches), endpoint.counts_for_resume)
        base_path = local_versions[index.current] if index.current in local_versions else states.fetch_version(index.current, folder)
        caught = folder / f"caught-up-{other}.parquet"  # kept in the work folder: the plan may diff against it
        result = fold(base_path, pending.rows, outcomes, caught)
        if result.changed:
            counts = {**state_counts(caught), "added": result.added, "removed": result.removed,
                      "newly_rejected": result.rejected, "forgotten": result.forgotten}
            entry = {"run_id": other, "parent": index.current, "how": "caught up", **counts}
            index = index.with_version(entry) if dry_run else states.commit(other, index.current, caught, counts, how="caught up")
            local_versions[other] = caught
            log.info("folded in run %s, which stopped before recording its outcome: %d accepted, %d refused",
                     other, result.added + result.removed, result.rejected)
        if not dry_run:
            states.drop_pending(other)
        caught_up.append(other)
    return index, local_versions, caught_up


def _batches(identifiers: int, batch_size: int) -> int:
    return -(-identifiers // batch_size)
