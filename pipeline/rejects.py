"""rejects.csv: one line per invalid row with its file, row, column and reason; values only on request."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from pipeline.prepare.schemas import ROW_LEVEL
from pipeline.sources.local import FILE_INDEX, ROW_NUMBER

HEADER = ["source_file", "row", "column", "reason"]
_RAW_PREFIX = "__raw_"
# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = r"^[=+\-@\t\r]"


def raw_value_column(role: str) -> str:
    """The column holding `role`'s value as read, which rejects.csv writes when asked to."""
    return _RAW_PREFIX + role


def _never_a_formula(text: pl.Expr) -> pl.Expr:
    """`text`, with a single quote in front where a spreadsheet would otherwise evaluate it: the quote makes the cell
    text, and a person still finds the value in the source after it."""
    return pl.when(text.str.contains(_FORMULA_START)).then(pl.lit("'") + text).otherwise(text)


class RejectsWriter:
    def __init__(self, path: Path, files: tuple[str, ...], columns: dict[str, str], include_values: bool):
        self.path = path
        self.include_values = include_values
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._files = pl.DataFrame({FILE_INDEX: pl.Series(range(len(files)), dtype=pl.UInt32), "source_file": list(files)})
        # A row-level failure (e.g. "both email and phone") names every identifier column of the row.
        self._columns = {**columns, ROW_LEVEL: "+".join(columns.values())}
        self._roles = list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "w", encoding="utf-8", newline="")
        self._handle.write(",".join(HEADER + (["value"] if include_values else [])) + "\n")

    def write(self, raw_chunk: pl.DataFrame, failures: pl.DataFrame) -> None:
        """`failures` holds (position, role, reason) for rows of `raw_chunk`."""
        if failures.height == 0:
            return
        located = raw_chunk.with_row_index("position").join(failures, on="position", how="inner")
        located = located.join(self._files, on=FILE_INDEX, how="left")
        columns = [
            _never_a_formula(pl.col("source_file")),
            pl.col(ROW_NUMBER).alias("row"),
            _never_a_formula(pl.col("role").replace_strict(self._columns, return_dtype=pl.String)).alias("column"),
            pl.col("reason"),
        ]
        if self.include_values:
            values = [pl.when(pl.col("role") == role).then(pl.col(raw_value_column(role))) for role in self._roles]
            columns.append(_never_a_formula(pl.coalesce(values)).alias("value"))
        rows = located.sort("position").select(columns)
        rows.write_csv(self._handle, include_header=False)
        self.count += rows.height
        self.reasons.update(dict(rows.group_by("reason").len().iter_rows()))

    def close(self) -> None:
        self._handle.flush()
        self._handle.close()
