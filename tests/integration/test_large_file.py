"""A file larger than the in-memory prefix, read with the stream's own settings (windows of 1M rows, the first 2M
rows deduplicated in memory, the rest by the duplicate pass on its thread): every identifier exactly once, in
file order, and repeats of rows from either side of the prefix's end dropped."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.prepare import stream as stream_module
from pipeline.prepare.hashing import sha256_hex
from tests.conftest import audience_job, open_job_stream

ROWS = stream_module.MEMORY_DEDUPE_ROWS + 400_000


def test_a_file_beyond_the_in_memory_prefix(tmp_path: Path) -> None:
    # Row i is person (i mod 2,150,000), written differently each time it comes back: the last 250,000 rows repeat
    # people first seen in the prefix and just after it; every 97th row is invalid.
    i = pl.int_range(0, ROWS, eager=True)
    person = (i % 2_150_000).cast(pl.String)
    email = pl.when(i % 97 == 5).then(pl.lit("not-an-email")).otherwise(
        pl.when(i >= 2_150_000).then(pl.concat_str([pl.lit(" PERSON"), person, pl.lit("@Example.COM")]))
        .otherwise(pl.concat_str([pl.lit("person"), person, pl.lit("@example.com")])))
    export = tmp_path / "export.csv"
    pl.DataFrame({"i": i}).select(email.alias("email")).write_csv(export)

    job = audience_job(tmp_path, export, columns={"email": "email"})
    stream, out = open_job_stream(tmp_path, job)
    assert stream.window_rows and stream.memory_dedupe_rows < ROWS  # the defaults, duplicate pass and all
    sent = pl.concat([batch.identifiers for batch in stream.batches()])

    normalised = pl.read_csv(export)["email"].str.replace_all(r"\s", "").str.to_lowercase()
    valid = normalised.filter(normalised != "not-an-email")
    expected = pl.select(sha256_hex(pl.lit(valid))).to_series().unique(maintain_order=True)
    assert sent.len() == expected.len() and (sent == expected).all()
    assert stream.duplicates_dropped == valid.len() - expected.len()
    assert not list((out / "duplicates").glob("*"))  # the pass's partitions are gone once read
