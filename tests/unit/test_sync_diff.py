"""The set arithmetic of sync (pipeline/sync/diff.py, outcomes.py) against plain Python sets, on random inputs."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.batching import WIRE, batch_digest, iter_batches
from pipeline.sync.diff import ACCEPTED, REFUSED, batch_table, difference, fold, plan_rows
from pipeline.sync.identity import HASHED_IDENTIFIER
from pipeline.sync.outcomes import batch_outcomes


def hexes(numbers) -> list[str]:
    return [hashlib.sha256(str(n).encode()).hexdigest() for n in numbers]


def write_requests(folder: Path, identifiers: list[str]) -> Path:
    path = folder / "prepared.parquet"
    pl.DataFrame({WIRE: identifiers}, schema={WIRE: pl.String}).write_parquet(path)
    return path


def write_state(folder: Path, accepted: list[str], rejected: list[str]) -> Path:
    path = folder / "state.parquet"
    pl.DataFrame({HASHED_IDENTIFIER: accepted + rejected, "rejected": [False] * len(accepted) + [True] * len(rejected)},
                 schema={HASHED_IDENTIFIER: pl.String, "rejected": pl.Boolean}).write_parquet(path)
    return path


def column(path: Path | None, name: str) -> list[str]:
    return [] if path is None else pl.read_parquet(path)[name].to_list()


numbers = st.lists(st.integers(0, 300), unique=True, max_size=120)


@settings(max_examples=60, deadline=None)
@given(in_file=numbers, accepted=numbers, rejected=numbers)
def test_difference_is_set_arithmetic_in_file_order(in_file, accepted, rejected) -> None:
    rejected = [n for n in rejected if n not in set(accepted)]
    file_ids, accepted_ids, rejected_ids = hexes(in_file), hexes(accepted), hexes(rejected)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        diff = difference(write_requests(folder, file_ids), write_state(folder, accepted_ids, rejected_ids),
                          pl.col(WIRE), mirror=True, workdir=folder)
        known = set(accepted_ids) | set(rejected_ids)
        assert column(diff.new, WIRE) == [h for h in file_ids if h not in known]  # the file's order, kept
        assert column(diff.left, WIRE) == [h for h in accepted_ids if h not in set(file_ids)]
        assert set(column(diff.forgotten, HASHED_IDENTIFIER)) == set(rejected_ids) - set(file_ids)
        assert diff.skipped_rejected == len(set(file_ids) & set(rejected_ids))
        assert diff.unchanged == len(set(file_ids) & set(accepted_ids))
        assert diff.list_size == len(accepted_ids)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.text(min_size=1, max_size=12).map(lambda t: t.replace("\n", "") + "@x.example"),
                       unique=True, min_size=1, max_size=60),
       batch_size=st.integers(1, 25))
def test_planned_digests_are_the_digests_of_the_batches_sent(values, batch_size) -> None:
    """polars' per-batch digest equals batching.batch_digest for every batch, unicode included."""
    with tempfile.TemporaryDirectory() as scratch:
        path = write_requests(Path(scratch), values)
        planned = batch_table(path, batch_size, first_index=7, action="include")
        batches = list(iter_batches(path, batch_size))
        assert planned["batch"].to_list() == [7 + b.index for b in batches]
        assert planned["digest"].to_list() == [batch_digest(list(b.identifiers)) for b in batches]
        assert planned["records"].to_list() == [b.records for b in batches]
        assert [v for b in batches for v in list(b.identifiers)] == values


def test_fold_applies_only_settled_batches() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        state = write_state(folder, hexes(range(0, 20)), hexes([100]))
        prepared = write_requests(folder, hexes(range(10, 40)))  # 20 new, 10 unchanged; 0..9 left; 100 forgotten
        diff = difference(prepared, state, pl.col(WIRE), mirror=True, workdir=folder)
        rows = plan_rows(diff, pl.col(WIRE), 10, 2, folder / "rows.parquet")
        # batches 0, 1: the 20 new ones; batch 2: the 10 that left. 0 accepted, 1 refused, 2 accepted.
        outcomes = pl.DataFrame({"batch": [0, 1, 2], "outcome": [ACCEPTED, REFUSED, ACCEPTED]},
                                schema={"batch": pl.UInt32, "outcome": pl.String})
        result = fold(state, rows, outcomes, folder / "next.parquet")
        after = pl.read_parquet(folder / "next.parquet")
        got = dict(zip(after[HASHED_IDENTIFIER].to_list(), after["rejected"].to_list()))
        expected = {**dict.fromkeys(hexes(range(10, 30)), False), **dict.fromkeys(hexes(range(30, 40)), True)}
        assert got == expected
        assert (result.added, result.removed, result.rejected, result.forgotten, result.pending) == (10, 10, 10, 1, 0)

        nothing = pl.DataFrame(schema={"batch": pl.UInt32, "outcome": pl.String})
        unsettled = fold(state, rows, nothing, folder / "unchanged.parquet")
        assert unsettled.pending == 30 and unsettled.forgotten == 1 and unsettled.changed


def test_outcomes_match_digest_and_action_and_accepted_wins() -> None:
    batches = pl.DataFrame({"batch": [0, 1, 2, 3], "digest": ["d0", "d1", "d2", "d3"],
                            "action": ["include", "include", "exclude", "exclude"], "records": [1, 1, 1, 1]},
                           schema={"batch": pl.UInt32, "digest": pl.String, "action": pl.String, "records": pl.UInt32})
    records = [
        {"batch": 0, "digest": "d0", "action": "include", "status": "rejected", "http_status": 400},
        {"batch": 0, "digest": "d0", "action": "include", "status": "accepted", "http_status": 201},  # a resume got it in
        {"batch": 1, "digest": "d1", "action": "include", "status": "rejected", "http_status": 401},  # credentials: retry
        {"batch": 2, "digest": "d2", "action": "include", "status": "accepted", "http_status": 201},  # wrong action
        {"batch": 3, "digest": "d3", "action": "exclude", "status": "rejected", "http_status": 422},
        {"batch": 9, "digest": "d9", "action": "include", "status": "accepted", "http_status": 201},  # not in this plan
    ]
    outcomes = batch_outcomes(records, batches, lambda record: True)
    assert dict(outcomes.iter_rows()) == {0: ACCEPTED, 3: REFUSED}
    assert batch_outcomes(records, batches, lambda record: False).filter(pl.col("outcome") == ACCEPTED).is_empty()
