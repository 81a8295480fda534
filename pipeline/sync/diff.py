"""The set arithmetic of a sync, as streaming polars queries over Parquet files (anti-joins on hashed identifiers).

A state file holds `hashed_identifier` and `rejected` (true: the API refused it for good; it is not sent
again). Plans and outcomes are files or small frames; nothing here holds a whole file in Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import polars_hash  # noqa: F401  (registers the .chash and .nchash namespaces)

from pipeline.batching import WIRE, iter_batches
from pipeline.sync.identity import HASHED_IDENTIFIER

REJECTED = "rejected"
STATE_SCHEMA = {HASHED_IDENTIFIER: pl.String, REJECTED: pl.Boolean}
# What an accepted (or rejected) batch does to the state, per planned row.
ADD, REMOVE, FORGET = "add", "remove", "forget"
PLAN_ROW_SCHEMA = {"batch": pl.UInt32, HASHED_IDENTIFIER: pl.String, "effect": pl.String}
BATCH_SCHEMA = {"batch": pl.UInt32, "digest": pl.String, "action": pl.String, "records": pl.UInt32}
ACCEPTED, REFUSED = "accepted", "rejected"  # a batch's outcome; anything else leaves its rows as they were
JOIN_KEY = "_join_key"


def sink(frame: pl.LazyFrame, path: Path) -> Path:
    """Parquet with zstd level 1: hex identifiers compress to half either way, and level 1 writes twice as fast."""
    frame.sink_parquet(path, compression="zstd", compression_level=1)
    return path


@dataclass(frozen=True)
class Difference:
    """The prepared file against a state version."""

    new: Path  # request rows (the prepared file's columns) whose identifier the state does not hold
    left: Path | None  # mirror: WIRE of identifiers the state holds as accepted and the file no longer has
    forgotten: Path | None  # mirror: identifiers rejected earlier that left the file (dropped from the state)
    in_file: int
    new_count: int
    skipped_rejected: int  # in the file, but rejected by an earlier run: not sent again
    left_count: int
    forgotten_count: int
    list_size: int  # identifiers the state holds as accepted

    @property
    def unchanged(self) -> int:
        return self.in_file - self.new_count - self.skipped_rejected


def read_state(path: Path | None) -> pl.LazyFrame:
    if path is None:
        return pl.LazyFrame(schema=STATE_SCHEMA)
    return pl.scan_parquet(path)


def count_rows(path: Path | None) -> int:
    return 0 if path is None else pl.scan_parquet(path).select(pl.len()).collect().item()


def difference(prepared: Path, state: Path | None, identifier: pl.Expr, mirror: bool, workdir: Path) -> Difference:
    """What to send: identifiers new to the state (and, for mirror, those that left the file), in a stable order.

    The file's rows keep their order (maintain_order), so the same file against the same state always gives
    the same batches: a resumed run recognises what it already sent.
    """
    in_file = count_rows(prepared)
    if state is None:  # the first run: everything is new, and the prepared file already is that set
        return Difference(prepared, None, None, in_file, in_file, 0, 0, 0, 0)
    requests = pl.scan_parquet(prepared)
    columns = requests.collect_schema().names()
    keyed = _with_join_key(requests.with_columns(identifier.alias(HASHED_IDENTIFIER)))
    known = _with_join_key(read_state(state))
    counts = state_counts(state)
    new_path = sink(keyed.join(known.select(JOIN_KEY), on=JOIN_KEY, how="anti", maintain_order="left")
                    .select(columns), workdir / "new.parquet")
    in_the_file = keyed.select(JOIN_KEY)
    rejected = known.filter(pl.col(REJECTED))
    skipped = forgotten_count = 0
    forgotten_path = None
    if counts["rejected"]:  # usually none: then two passes over 20M rows are not needed
        skipped = in_the_file.join(rejected.select(JOIN_KEY), on=JOIN_KEY, how="semi").select(pl.len()).collect(engine="streaming").item()
        if mirror:
            forgotten_path = sink(rejected.join(in_the_file, on=JOIN_KEY, how="anti").select(HASHED_IDENTIFIER),
                                  workdir / "forgotten.parquet")
            forgotten_count = count_rows(forgotten_path)
    new_count = count_rows(new_path)
    if not mirror:
        return Difference(new_path, None, None, in_file, new_count, skipped, 0, 0, 0)

    accepted = known.filter(~pl.col(REJECTED)).select(HASHED_IDENTIFIER, JOIN_KEY)
    # Mirror sends hex SHA-256 on the wire (config enforces send: sha256), so the state's identifier is the wire one.
    left_path = sink(accepted.join(in_the_file, on=JOIN_KEY, how="anti", maintain_order="left")
                     .select(pl.col(HASHED_IDENTIFIER).alias(WIRE)), workdir / "left.parquet")
    return Difference(new_path, left_path, forgotten_path, in_file, new_count, skipped, count_rows(left_path),
                      forgotten_count, counts["identifiers"])


def _with_join_key(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` with a 128-bit XXH3 of its hashed identifier, to join on.

    A join holds its build side's keys in memory: 16 bytes a row instead of a 64-character string (and its
    view). Two different identifiers share a key with probability about n²/2^129: never in practice.
    """
    return frame.with_columns(pl.col(HASHED_IDENTIFIER).nchash.xxh3_128().alias(JOIN_KEY))


def batch_table(requests: Path | None, batch_size: int, first_index: int, action: str | None) -> pl.DataFrame:
    """batch, digest, action, records for the deterministic batches of `requests` (file order, `batch_size` each).

    The digest is batching.batch_digest's, from the very batches the run will send, one batch in memory at a
    time (a group_by joining every batch's identifiers held the whole set: 2.6 GiB at 10M rows). One-subject
    requests (batch size 1) are digested by polars in one streaming pass.
    """
    if requests is None or count_rows(requests) == 0:
        return pl.DataFrame(schema=BATCH_SCHEMA)
    if batch_size == 1:
        return (_numbered(requests, batch_size, first_index)
                .select("batch", pl.col(WIRE).chash.sha2_256().alias("digest"), pl.lit(action, pl.String).alias("action"),
                        pl.lit(1, pl.UInt32).alias("records"))
                .collect(engine="streaming"))
    rows = [(first_index + batch.index, batch.digest, action, batch.records) for batch in iter_batches(requests, batch_size)]
    return pl.DataFrame(rows, schema=BATCH_SCHEMA, orient="row")


def plan_rows(diff: Difference, identifier: pl.Expr, batch_size: int, left_first_index: int, path: Path) -> Path:
    """Every planned row as (batch, hashed_identifier, effect), for folding the outcome into the state later."""
    parts = [_numbered(diff.new, batch_size, 0).select("batch", identifier.alias(HASHED_IDENTIFIER), pl.lit(ADD).alias("effect"))]
    if diff.left is not None:
        parts.append(_numbered(diff.left, batch_size, left_first_index)
                     .select("batch", pl.col(WIRE).alias(HASHED_IDENTIFIER), pl.lit(REMOVE).alias("effect")))
    if diff.forgotten is not None:
        parts.append(pl.scan_parquet(diff.forgotten).select(pl.lit(None, pl.UInt32).alias("batch"), HASHED_IDENTIFIER,
                                                           pl.lit(FORGET).alias("effect")))
    return sink(pl.concat([part.cast(PLAN_ROW_SCHEMA) for part in parts]), path)  # type: ignore[arg-type]


def _numbered(requests: Path, batch_size: int, first_index: int) -> pl.LazyFrame:
    """Each row's batch: the runner cuts batches of exactly `batch_size` rows in file order."""
    numbered = pl.scan_parquet(requests).with_row_index("_position")
    return numbered.with_columns((pl.col("_position") // batch_size + first_index).cast(pl.UInt32).alias("batch")).drop("_position")


@dataclass(frozen=True)
class Fold:
    changed: bool
    added: int  # accepted with `add`
    removed: int  # accepted with `remove` (mirror exclude)
    rejected: int  # refused for good in this plan: kept in the state as rejected
    forgotten: int
    pending: int  # planned rows whose batch has no outcome yet (failed, not sent): tried again next run


def fold(state: Path | None, rows: Path, outcomes: pl.DataFrame, out: Path) -> Fold:
    """The state after a plan's outcomes: accepted adds in, accepted removes out, refusals marked, forgets out."""
    planned = pl.scan_parquet(rows).join(outcomes.lazy(), on="batch", how="left")
    tally = {(effect, outcome): n for effect, outcome, n in
             planned.group_by("effect", "outcome").len().collect(engine="streaming").iter_rows()}

    def count(effect: str, outcome: str | None) -> int:
        return tally.get((effect, outcome), 0)

    forgotten = sum(n for (effect, _), n in tally.items() if effect == FORGET)
    decided = sum(n for (effect, outcome), n in tally.items() if outcome is not None and effect != FORGET)
    result = Fold(
        changed=bool(forgotten or decided), added=count(ADD, ACCEPTED), removed=count(REMOVE, ACCEPTED),
        rejected=count(ADD, REFUSED) + count(REMOVE, REFUSED), forgotten=forgotten,
        pending=count(ADD, None) + count(REMOVE, None),
    )
    if not result.changed:
        return result
    settled = planned.filter((pl.col("effect") == FORGET) | pl.col("outcome").is_not_null())
    # A refused removal stays in the list as far as we know: it is re-entered below, marked rejected.
    leaving = settled.filter(pl.col("effect").is_in([REMOVE, FORGET])).select(HASHED_IDENTIFIER)
    entering = settled.filter((pl.col("effect") == ADD) | ((pl.col("effect") == REMOVE) & (pl.col("outcome") == REFUSED)))
    entering = entering.select(HASHED_IDENTIFIER, (pl.col("outcome") == REFUSED).alias(REJECTED))
    kept = read_state(state).select(list(STATE_SCHEMA))
    if result.removed or result.rejected or result.forgotten:
        kept = kept.join(leaving, on=HASHED_IDENTIFIER, how="anti")
    sink(pl.concat([kept, entering]), out)
    return result


def state_counts(path: Path | None) -> dict[str, int]:
    """identifiers (accepted) and rejected in a state file."""
    if path is None:
        return {"identifiers": 0, "rejected": 0}
    row = pl.scan_parquet(path).select((~pl.col(REJECTED)).sum().alias("identifiers"), pl.col(REJECTED).sum().alias("rejected")).collect()
    return {name: int(row[name][0] or 0) for name in ("identifiers", "rejected")}
