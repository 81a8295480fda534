"""A source that changes while the stream reads it is refused, never half-read.

The stream reads a local file more than once: the whole-file judgement, then one window of rows at a time, and,
for a file larger than the in-memory prefix, the duplicate pass. Each window opens the file again, so a file
replaced by another with as many rows would otherwise be read as if nothing happened, and the duplicate pass's
answers (about the old file) applied to the new one's rows: identifiers lost as "duplicates".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import polars as pl
import pytest

from pipeline.errors import InputError
from tests.conftest import audience_job, open_job_stream

ROWS = 600


def _export(path: Path, first: int, rows: int = ROWS) -> None:
    pl.DataFrame({"email": [f"person{first + i}@example.com" for i in range(rows)]}).write_csv(path)


def _read_while(tmp_path: Path, change: Callable[[Path], None]) -> list[str]:
    """The identifiers a stream yields when `change` is applied to its file after the first batch."""
    export = tmp_path / "export.csv"
    _export(export, 0)
    job = audience_job(tmp_path, export, columns={"email": "email"}, limits={"batch_size": 50})
    stream, _ = open_job_stream(tmp_path, job)
    stream.chunk_rows, stream.window_rows, stream.memory_dedupe_rows = 40, 100, 120
    sent: list[str] = []
    for batch in stream.batches():
        if not sent:
            change(export)
        sent.extend(batch.identifiers)
    return sent


def test_an_unchanged_file_is_read_whole(tmp_path: Path) -> None:
    assert len(_read_while(tmp_path, lambda export: None)) == ROWS


def test_a_file_replaced_by_one_of_as_many_rows_is_refused(tmp_path: Path) -> None:
    def replace(export: Path) -> None:
        other = export.with_name("other.csv")
        _export(other, 10_000)
        os.replace(other, export)

    with pytest.raises(InputError, match="export.csv changed while it was being read") as raised:
        _read_while(tmp_path, replace)
    assert "@" not in str(raised.value)


def test_a_file_that_grows_is_refused(tmp_path: Path) -> None:
    def append(export: Path) -> None:
        with open(export, "a") as handle:
            handle.write("".join(f"late{i}@example.com\n" for i in range(50)))

    with pytest.raises(InputError, match="changed while it was being read"):
        _read_while(tmp_path, append)


def test_a_file_removed_part_way_is_the_sources_problem(tmp_path: Path) -> None:
    # Caught by the check before the next window, or by polars if the window already running opens it again.
    with pytest.raises(InputError, match=r"export\.csv( changed while it was being read|: .*FileNotFoundError)"):
        _read_while(tmp_path, lambda export: export.unlink())
