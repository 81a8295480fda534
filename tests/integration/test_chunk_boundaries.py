"""Where the stream cuts the source changes nothing it yields, counts or quarantines.

The first chunk is read, hashed and deduplicated beside the whole-file reject judgement, the rest by the
streaming engine in chunks, one window of rows at a time; the first rows are deduplicated in memory, the rest
by the duplicate pass on disk (keyed by the address itself for an email, or by the wire identifier): duplicates
and flagged rows on either side of any cut (inside a file, between files, inside a Parquet row group, at a
window's edge, at the end of the in-memory prefix) must come out the same, and the identifiers must be exactly
the first occurrences of the valid rows, in file order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.prepare.dedupe import HI, LO
from tests.conftest import audience_job, open_job_stream
from tests.integration.test_accounting_property import reference

cells = st.one_of(
    st.none(),
    st.sampled_from(["a@b.co", " A@B.CO ", "c@d.co", "e@f.co", "x@y.z", "", "@", "a@b", "bad", "g@h.co", "G@H.CO",
                     "two\nlines@b.co", 'say "hi"@b.co']),
)


def stream_outcome(folder: Path, source: Path, chunk_rows: int, batch_size: int, window_rows: int | None = None,
                   memory_rows: int = 10**9, keyed_by_wire: bool = False, windowed_rows: int = 10**9) -> tuple:
    job = audience_job(folder, source, columns={"email": "email"}, limits={"batch_size": batch_size})
    job["source"]["max_reject_fraction"] = 1.0
    stream, out = open_job_stream(folder, job, f"job-{chunk_rows}")
    stream.chunk_rows, stream.window_rows, stream.memory_dedupe_rows = chunk_rows, window_rows, memory_rows
    stream.windowed_rows = windowed_rows
    if keyed_by_wire:  # the duplicate pass as every plan but a lone email keys it
        stream._keys = lambda query, roles, normalisers: query.select(HI, LO, "__valid")
    batches = [(b.index, list(b.identifiers), b.digest) for b in stream.batches()]
    counts = (stream.rows_read, stream.rows_rejected, stream.duplicates_dropped, stream.identifiers, stream.reject_reasons)
    return batches, counts, (out / "rejects.csv").read_text()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=40).filter(lambda rows: any(map(reference, rows))),
       st.sampled_from(["csv", "parquet"]), st.integers(1, 9), st.integers(1, 5),
       st.lists(st.integers(0, 40), max_size=2), st.integers(1, 4), st.none() | st.integers(1, 12),
       st.integers(0, 45), st.booleans(), st.integers(0, 45))
# A repeat of the first row in the chunk that straddles the end of the in-memory prefix: the keys held must last
# until no row before that end is left to judge.
@example(["a@b.co", "c@d.co", "e@f.co", "g@h.co", "a@b.co", "c@d.co"], "csv", 2, 1, [], 1, None, 5, False, 0)
def test_where_the_source_is_cut_changes_nothing(rows, fmt, chunk_rows, batch_size, splits, row_group_size,
                                                 window_rows, memory_rows, keyed_by_wire, windowed_rows) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        export = folder / "export"  # one to three files, read in name order
        export.mkdir()
        bounds = sorted({0, len(rows), *(min(s, len(rows)) for s in splits)})
        for part, (start, stop) in enumerate(zip(bounds, bounds[1:])):
            frame = pl.DataFrame({"email": rows[start:stop]}, schema={"email": pl.String})
            path = export / f"part-{part}.{fmt}"
            frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path, row_group_size=row_group_size)
        cut = stream_outcome(folder, export, chunk_rows, batch_size, window_rows, memory_rows, keyed_by_wire,
                             windowed_rows)
        whole = stream_outcome(folder, export, 250_000, 1_000)  # one chunk: all of it read beside the judgement
        sent = [identifier for _, identifiers, _ in cut[0] for identifier in identifiers]
        assert sent == list(dict.fromkeys(h for h in map(reference, rows) if h is not None))
        assert sent == whole[0][0][1]
        assert cut[1:] == whole[1:]  # counts, reasons and rejects.csv
