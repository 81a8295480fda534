"""The data path as one stream: source -> normalise + hash + flag invalid rows (polars, streaming) -> drop
duplicates -> batches, yielded as soon as each is full; pandera names the flagged rows' reasons on the side.

The runner sends each batch while the next is being prepared, so the API is busy from the first seconds
and memory depends on the chunk and batch sizes, not on the file. Counts are complete once the stream is.
"""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from pipeline.batching import WIRE, Batch, cut_batches
from pipeline.errors import InputError, source_changed
from pipeline.prepare.dedupe import HI, LO, SeenKeys, key_columns
from pipeline.prepare.duplicate_rows import DuplicateRows, find_duplicate_rows
from pipeline.prepare.prepared import CHUNK_ROWS, DEFAULT_NORMALISERS, PreparedInput, RowPlan, safe_reason
from pipeline.prepare.schemas import (
    CERTAINLY_VALID_RAW, ROW_LEVEL, failing_rows, valid_expression, warmed_schema,
)
from pipeline.rejects import RejectsWriter, raw_value_column
from pipeline.sources.local import BLANK, FILE_INDEX, ROW_NUMBER, SourceFrame


_VALID = "__valid"  # the rules pass and the wire value exists: the row is sent
_RULES_PASS = "__rules_pass"
REASON_ROWS = 100_000  # flagged rows held before pandera names their reasons (one call per this many rows)
# The streaming engine runs ahead of its consumer into buffers that fill only from about 3M rows; a query over one
# window of rows at a time holds at most that window, whatever the file's size (10M-row CSV dry run: peak RSS
# 618 MiB in windows against 785 MiB in one query, back to back).
WINDOW_ROWS = 1_000_000
# Each window of a CSV file is found by counting lines from the file's start, so windows cost more the further in
# they start; past this row the rest is read as one query, whose buffers are at their cap by then anyway
# (30M-row CSV dry run: 14.1 s and 586 MiB; windows all the way 17.4 s and 541 MiB; before windows 13.6 s and
# 1,008 MiB).
WINDOWED_ROWS = 10_000_000
# Rows deduplicated in memory (12 bytes a key and a 4 MiB filter, 28 MB at most); a larger file's later rows are
# judged by the duplicate pass on disk, which runs while these rows' batches are sent: 2M rows are 5 s of sending at
# the audience API's rate, time enough for the pass over 10M rows (with 1M, the end-to-end run waited for it: 1.11x
# the floor).
MEMORY_DEDUPE_ROWS = 2_000_000


@dataclass(frozen=True)
class _RowQuery:
    """The source's rows normalised, validated, encoded for the wire and keyed for dedupe, not yet read."""

    query: pl.LazyFrame
    rules_pass: pl.Expr
    roles: list[str]
    normalisers: dict[str, Any]
    validated: list[str]
    kept_columns: list[str]  # what a request row carries
    flagged_columns: list[str]  # what a rejected row's reason is judged from


class PreparedStream:
    def __init__(self, source: SourceFrame, plan: RowPlan, rejects: RejectsWriter, batch_size: int, *,
                 max_reject_fraction: float, rejects_location: str, workdir: Path, chunk_rows: int = CHUNK_ROWS):
        self.source = source
        self.plan = plan
        self.rejects = rejects
        self.batch_size = batch_size
        self.max_reject_fraction = max_reject_fraction
        self.rejects_location = rejects_location
        self.workdir = workdir
        self.chunk_rows = chunk_rows
        self.window_rows = WINDOW_ROWS if source.sliceable else None
        self.windowed_rows = WINDOWED_ROWS
        self.memory_dedupe_rows = MEMORY_DEDUPE_ROWS
        # Drawn afresh for each run and never written down, for the keys the duplicate pass writes to disk. XXH3 is
        # no keyed hash, but without the seeds the files cannot simply be checked against a list of addresses.
        self.key_seeds = tuple(random.SystemRandom().getrandbits(63) for _ in range(2))
        self.rows_read = self.valid_rows = self.identifiers = self.superseded = 0
        self.lines_read = self.rows_flagged = 0  # rows_flagged: counted as read; rejects.csv gets them in groups
        self.lines_total: int | None = None  # blank lines too, once the first pass has counted them (for progress)
        self.batches_total: int | None = None
        self.complete = False
        self._held: list[pl.DataFrame] | None = None

    @property
    def rows_rejected(self) -> int:
        return self.rejects.count

    @property
    def duplicates_dropped(self) -> int:
        return self.valid_rows - self.identifiers - self.superseded

    @property
    def reject_reasons(self) -> dict[str, int]:
        return dict(self.rejects.reasons)

    def prepare_all(self) -> None:
        """Read the whole source now (for whole-set decisions); batches() then serves from memory."""
        if self._held is None:
            self._held = list(self._new_rows())

    def batches(self) -> Iterator[Batch]:
        frames = self._frames()
        count = 0
        for batch in cut_batches(frames, self.batch_size):
            count += 1
            yield batch
        self.batches_total = count

    def _frames(self) -> Iterator[pl.DataFrame]:
        return iter(self._held) if self._held is not None else self._new_rows()

    def _new_rows(self) -> Iterator[pl.DataFrame]:
        """Valid, first-seen request rows (WIRE, SUBJECT?, attributes), chunk by chunk, in file order."""
        plan = self.plan
        rows = self._row_query()
        query = rows.query
        # Built (pandera imported, its backends loaded) in the background: the GIL is free while polars reads.
        schema = _in_background("pandera-schema", warmed_schema, rows.validated, plan.nullable, plan.row_rules)
        reasons = _Reasons(self.rejects, schema.result, rows.validated)
        held: list[pl.DataFrame] = []

        first_seen = _FirstSeen(self.memory_dedupe_rows)

        def sort_out(chunk: pl.DataFrame, position: int) -> tuple[int, int, pl.DataFrame, int, pl.DataFrame]:
            """(lines, blank lines, flagged rows, valid rows, first-seen request rows) of one chunk starting at line
            `position` (0-based, over all files), in file order."""
            # The fast expression decides; pandera names each flagged row's reason, many chunks at a time.
            is_blank = chunk.get_column(BLANK)
            flagged = chunk.filter(~pl.col(_VALID) & ~is_blank).select(rows.flagged_columns)
            is_valid = chunk.get_column(_VALID)
            keyed = HI in chunk.columns
            valid = chunk.select(*rows.kept_columns, *([HI, LO] if keyed else [])).filter(is_valid)
            positions = np.flatnonzero(is_valid.to_numpy()) + position
            is_first = first_seen(valid.select(HI, LO) if keyed else None, positions)
            fresh = valid.filter(is_first).select(rows.kept_columns)
            return chunk.height, is_blank.sum(), flagged, valid.height, fresh

        try:
            without_identifier = pl.all_horizontal(
                pl.col(role).is_null() for role in rows.roles).sum().alias("without_identifier")
            verdict = _in_background(
                "judge-whole-file", self._judge_whole_file,
                _without_blank_lines(query).select(
                    pl.len().alias("lines"), without_identifier, (~rows.rules_pass).sum().alias("invalid")),
                self._certainly_valid(rows.roles), without_identifier)
            # While the whole file is judged, the first chunk is read, hashed and deduplicated here, so the first
            # batches are ready when the verdict is; nothing of it is counted or written before. A whole chunk, not
            # one batch's worth of rows: invalid rows and duplicates leave fewer than a batch, and the first batch
            # then waited for the streaming engine's first chunk (10M-row end-to-end run: first request 0.3 s later).
            first = sort_out(query.head(self.chunk_rows).collect(), 0)
            lines_judged, may_have_blank_lines = verdict.result()
            self.lines_total = lines_judged
            rest_query = query if may_have_blank_lines else _without_blank_lines(query)
            if lines_judged > self.memory_dedupe_rows:
                pass_keys = self._keys(query, rows.roles, rows.normalisers)
                # One query, not windows: its rows are a few bytes of keys, so the streaming engine's run-ahead
                # holds little more than a window's (10M-row CSV behind a slow consumer: 262 against 242 MiB peak),
                # and windows count the file's lines from its start again each time (0.67 against 1.0 s).
                pass_chunks = self._read(lambda start: pass_keys, 0, lines_judged, None)
                first_seen.later_rows = _in_background(
                    "find-duplicate-rows", find_duplicate_rows, pass_chunks, _VALID, lines_judged,
                    self.memory_dedupe_rows, self.workdir / "duplicates", first_seen.stop)

            def window(start: int) -> pl.LazyFrame:  # keys are needed only where rows are deduplicated in memory
                later = first_seen.later_rows is not None and start >= self.memory_dedupe_rows
                return rest_query.drop(HI, LO) if later else rest_query

            def rest() -> Iterator[tuple[int, int, pl.DataFrame, int, pl.DataFrame]]:
                # The streaming engine starts when the first chunk's batches are handed over, not before: it takes
                # both cores at once, and beside it the first request's body took 0.1-0.3 s to encode, not 25 ms.
                position = first[0]
                for chunk in self._read(window, position, lines_judged, self.window_rows):
                    yield sort_out(chunk, position)
                    position += chunk.height

            for lines, blank_lines, flagged, valid_rows, fresh in itertools.chain([first], rest()):
                self.lines_read += lines
                self.rows_read += lines - blank_lines
                self.rows_flagged += flagged.height
                reasons.hold(flagged)
                self.valid_rows += valid_rows
                if plan.supersede is not None:
                    held.append(fresh)
                    continue
                self.identifiers += fresh.height
                if fresh.height:
                    yield fresh
        except (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException) as exc:
            raise InputError(f"source: cannot read {_describe(self.source)}: {safe_reason(exc)}") from None
        finally:
            first_seen.stop.set()
            try:
                reasons.write_all()  # every flagged row read, also when the stream stops part way
            finally:
                self.rejects.close()
        yield from self._after_the_last_chunk(lines_judged, held)

    def _row_query(self) -> _RowQuery:
        plan = self.plan
        roles = [role for role in plan.roles if role in self.source.columns]
        validated = [*roles, *plan.derived]
        normalisers = {**DEFAULT_NORMALISERS, **plan.normalisers}
        outputs = [*plan.outputs]
        # rejects.csv shows a value as it was read, so that a person can find it in the file.
        raw = {raw_value_column(role): pl.col(role) for role in roles if self.rejects.include_values}
        query = _normalised(self.source.frame.with_columns(**raw), roles, normalisers)
        if plan.derived:
            query = query.with_columns(**plan.derived)
        rules_pass = valid_expression(validated, plan.nullable, plan.row_rules)
        # Duplicates are judged on the wire identifier (for network privacy, together with its request type).
        query = query.with_columns(outputs).with_columns(
            *key_columns(pl.col(WIRE), self.key_seeds), rules_pass.alias(_RULES_PASS)).with_columns(
            # A value the rules accept but the encoders cannot use is quarantined, never sent as null.
            (pl.col(_RULES_PASS) & pl.col(WIRE).is_not_null()).alias(_VALID),
        )
        return _RowQuery(query, rules_pass, roles, normalisers, validated, kept_columns=[_name(e) for e in outputs],
                         flagged_columns=[FILE_INDEX, ROW_NUMBER, *validated, *raw, _RULES_PASS])

    def _after_the_last_chunk(self, lines_judged: int, held: list[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """The checks that need the whole file read, and the rows a supersede rule held back until then."""
        if self.lines_read != lines_judged:  # the file changed while it was read, or a row was lost or read twice
            raise source_changed(f"{_describe(self.source)} had {lines_judged:,} rows when it was judged and "
                                 f"{self.lines_read:,} when it was read again")
        if self.plan.supersede is not None and held:
            before = sum(f.height for f in held)
            kept = self.plan.supersede(pl.concat(held).lazy()).collect()
            self.superseded, self.identifiers = before - kept.height, kept.height
            if kept.height:
                yield kept
        if self.identifiers == 0:
            raise InputError(f"no valid identifiers to send; see {self.rejects_location}. Nothing was sent.")
        self.complete = True

    def _read(self, query_at: Callable[[int], pl.LazyFrame], start: int, rows: int,
              window: int | None) -> Iterator[pl.DataFrame]:
        """The rows from `start` to the end, in chunks, `window` rows at a time (None: in one query);
        `query_at(first row)` is the query for each window. The last window is open-ended, so rows added since the
        file was judged are read and counted."""
        while True:
            self.source.check_unchanged()
            query = query_at(start)
            last = window is None or start + window >= min(rows, self.windowed_rows)
            part = query.slice(start) if last else query.slice(start, window)
            read = 0
            for chunk in part.collect_batches(chunk_size=self.chunk_rows):
                read += chunk.height
                yield chunk
            if last:
                self.source.check_unchanged()
                return
            if read != window:  # a file that shrank, or a read that ended early (an interrupt in a polars thread)
                raise source_changed(f"{_describe(self.source)} ended at row {start + read:,} while {rows:,} rows "
                                     "were judged")
            start += window

    def _keys(self, query: pl.LazyFrame, roles: list[str], normalisers: dict[str, Any]) -> pl.LazyFrame:
        """HI, LO and _VALID of every row, for the duplicate pass, as cheaply as they can be had.

        An email alone, under the plain rules, is its own key: its hash (what is sent) is one-to-one with the
        normalised address, and whether it is valid depends on nothing else, so two rows share a key exactly when
        they share a wire identifier, and then they are both valid or both not. That skips the SHA-256 and the
        rules (10M-row CSV dry run: 8.0 CPU-s in all against 8.5 keyed by the wire identifier). Any other plan is
        keyed as the stream keys it, on the wire identifier of valid rows.
        """
        plan = self.plan
        plain = not plan.derived and not plan.row_rules and not plan.nullable
        if plan.wire_follows_email and roles == ["email"] and plain:
            email = _normalised(self.source.frame.select("email"), roles, normalisers)
            return email.select(key_columns(pl.col("email"), self.key_seeds)).with_columns(
                pl.col(HI).is_not_null().alias(_VALID))
        return query.select(HI, LO, _VALID)

    def _certainly_valid(self, roles: list[str]) -> pl.Expr | None:
        """True for raw rows that are valid for sure; None when the plan's rules or normalisers are not the plain ones."""
        plan = self.plan
        if not roles or plan.derived or plan.row_rules or plan.nullable or any(
                r in plan.normalisers or r not in CERTAINLY_VALID_RAW for r in roles):
            return None
        return pl.all_horizontal(CERTAINLY_VALID_RAW[role](pl.col(role)).fill_null(False) for role in roles)

    def _judge_whole_file(self, exact_counts: pl.LazyFrame, certainly_valid: pl.Expr | None,
                          without_identifier: pl.Expr) -> tuple[int, bool]:
        """The reject threshold, judged on the whole file before the first batch, so a file that is mostly
        invalid sends nothing, whatever order its bad rows come in. Returns the lines counted (blank ones too) and
        whether any of them may be blank.

        A streaming pass without hashing or pandera. First, where the plan allows, one regex per raw row
        (`CERTAINLY_VALID_RAW`): if the rows it cannot vouch for are within the threshold, so are the invalid
        ones (blank lines among them only make it stricter). Otherwise the rows are normalised and judged exactly
        (`exact_counts`: lines, lines without any identifier, invalid lines), and blank lines, all invalid, are
        counted apart, only where a line without any identifier says there may be one.
        """
        if certainly_valid is not None:
            lines, uncertain, empty = self.source.frame.select(
                pl.len().alias("lines"), (~certainly_valid).sum().alias("uncertain"), without_identifier,
            ).collect(engine="streaming").row(0)
            if lines and uncertain / lines <= self.max_reject_fraction:
                return lines, empty > 0
        lines, empty, invalid = exact_counts.collect(engine="streaming").row(0)
        blank = self.source.frame.select(pl.col(BLANK).sum()).collect(engine="streaming").item() if empty else 0
        rows, invalid = lines - blank, invalid - blank
        if not rows:
            raise InputError(f"source: {_describe(self.source)} has no data rows (header only?)")
        fraction = invalid / rows
        if fraction > self.max_reject_fraction:
            raise InputError(
                f"{invalid:,} of {rows:,} rows ({fraction:.1%}) are invalid, above source.max_reject_fraction="
                f"{self.max_reject_fraction}. Is the right column mapped? Run `rokt-pipeline validate` for the reasons "
                "row by row. Nothing was sent."
            )
        return lines, blank > 0

    def materialise(self, path: Path) -> PreparedInput:
        """Drain the stream into one Parquet file of request rows (for modes that diff the whole set).

        Written chunk by chunk (one row group each), so memory stays what the stream needs, whatever the file size.
        """
        import pyarrow.parquet as pq  # here, not at the top: only sync modes need it (about 30 ms of every start)

        writer: pq.ParquetWriter | None = None
        try:
            for frame in self._frames():
                table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
                writer = writer or pq.ParquetWriter(path, table.schema, compression="lz4")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pl.DataFrame(schema={_name(e): pl.String for e in self.plan.outputs}).write_parquet(path)
        return PreparedInput(
            rows_read=self.rows_read, rows_rejected=self.rows_rejected, duplicates_dropped=self.duplicates_dropped,
            superseded=self.superseded, identifiers=self.identifiers, unique_path=path, files=self.source.files,
            reject_reasons=self.reject_reasons, fingerprint=self.source.fingerprint,
        )


def _in_background(name: str, function: Callable[..., Any], *args: Any) -> Future:
    """`function(*args)` on a daemon thread: an error in the caller never waits for it to finish (it runs to its
    end on its own: a running polars query cannot be stopped from outside)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # noqa: BLE001  (handed to whoever asks for the result)
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class _FirstSeen:
    """Which valid rows are the first with their identifier: the first `memory_rows` rows by keys held in memory,
    later rows by the duplicate pass over the whole file (`later_rows`, started once the file's size is known)."""

    def __init__(self, memory_rows: int):
        self.memory_rows = memory_rows
        self._seen: SeenKeys | None = SeenKeys()
        self.later_rows: Future | None = None
        self.stop = threading.Event()  # set when the stream ends, so an unfinished duplicate pass gives up

    def __call__(self, keys: pl.DataFrame | None, positions: np.ndarray) -> pl.Series:
        """`keys` may be None only where every row is judged by the duplicate pass."""
        if not len(positions):
            return pl.Series(dtype=pl.Boolean)
        if self.later_rows is not None and positions[0] >= self.memory_rows:
            # Positions ascend, so no row left is judged by the keys held (28 MB at 2M rows); None, not an
            # empty set, so that a row asked about after all fails loudly instead of passing as never seen.
            self._seen = None
        in_memory = positions < self.memory_rows
        # later_rows None: a small file (rows added since it was judged are an error the stream reports at its end)
        if keys is not None and (self.later_rows is None or in_memory.all()):
            assert self._seen is not None
            return self._seen.first_seen(keys)
        assert self.later_rows is not None
        first = np.empty(len(positions), dtype=bool)
        if in_memory.any():
            assert keys is not None and self._seen is not None
            first[in_memory] = self._seen.first_seen(keys.filter(pl.Series(in_memory))).to_numpy()
        later: DuplicateRows = self.later_rows.result()
        if positions[-1] >= later.rows:  # positions ascend; rows added after the pass read the file
            raise source_changed(f"more than the {later.rows:,} rows judged")
        first[~in_memory] = ~later.repeated(positions[~in_memory])
        return pl.Series(first)


def _without_blank_lines(query: pl.LazyFrame) -> pl.LazyFrame:
    """`query` for lines known not to be blank. Telling a blank line from a row of empty identifiers reads every
    field of a CSV file (0.3 CPU-s per 10M rows of three columns); a file with no row lacking every identifier has no
    blank line either, and polars then reads no more than the identifiers."""
    return query.with_columns(pl.lit(False).alias(BLANK))


def _normalised(frame: pl.LazyFrame, roles: list[str], normalisers: dict[str, Any]) -> pl.LazyFrame:
    """`frame` with each role's column normalised, and null where that leaves it empty.

    Two steps: the emptiness test reads the normalised column, never the expression that makes it, which polars'
    common-subexpression elimination then computed twice (the normalisation, a third of the data path: 10M-row
    duplicate-pass query 2.2 CPU-s against 1.3). when/then keeps the query streaming; `replace("", None)` would
    make polars collect the whole file first.
    """
    normalised = frame.with_columns(normalisers[role](role).alias(role) for role in roles)
    return normalised.with_columns(pl.when(pl.col(role).str.len_bytes() > 0).then(pl.col(role)) for role in roles)


def _owning_strings(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its strings copied into buffers of their own.

    A polars filter of a string column shares the whole chunk's string buffers: keeping a few flagged rows of
    every chunk would otherwise keep every chunk (about 3.5 MB each, for a 125,000-row chunk of emails).
    """
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(pl.concat_str([pl.col(name), pl.lit("")]).alias(name) for name in strings)


def _name(expr: pl.Expr) -> str:
    return expr.meta.output_name()


def _describe(source: SourceFrame) -> str:
    return source.files[0] if len(source.files) == 1 else f"{len(source.files)} files"


class _Reasons:
    """Flagged rows, held until pandera names their reasons in one call per REASON_ROWS rows.

    pandera's fixed cost per call is tens of milliseconds; paying it once per chunk was the largest single
    cost of the data path. Flagged rows are already out of the stream, so holding them delays only
    rejects.csv, never a batch.
    """

    def __init__(self, rejects: RejectsWriter, schema: Callable[[], object], validated: list[str]):
        self.rejects, self.validated = rejects, validated
        self._schema_factory, self._schema = schema, None  # asked for once, when the first rows need reasons
        self._held: list[pl.DataFrame] = []
        self._rows = 0

    def hold(self, flagged: pl.DataFrame) -> None:
        if flagged.height:
            self._held.append(_owning_strings(flagged))
            self._rows += flagged.height
        if self._rows >= REASON_ROWS:
            self.write_all()

    def write_all(self) -> None:
        if not self._held:
            return
        flagged = pl.concat(self._held)
        self._schema = self._schema or self._schema_factory()
        found = failing_rows(flagged.select(self.validated), self.validated, schema=self._schema)
        unnamed = flagged.with_row_index("position").filter(~pl.col("position").is_in(found["position"].implode()))
        if unnamed.height:  # never silent, though test_validation_agreement proves the two judgements agree
            found = pl.concat([found, unnamed.select(
                "position", role=pl.lit(ROW_LEVEL),
                reason=pl.when(pl.col(_RULES_PASS)).then(pl.lit("cannot be encoded for the wire (report this as a bug)"))
                .otherwise(pl.lit("failed validation without a named reason (report this as a bug)")),
            )]).sort("position")
        self.rejects.write(flagged, found)
        self._held, self._rows = [], 0
