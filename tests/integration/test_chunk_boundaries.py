"""Where the stream cuts the source into chunks changes nothing it yields, counts or quarantines.

The first chunk is read, hashed and deduplicated beside the whole-file reject judgement, the rest by the
streaming engine after it: duplicates and flagged rows on either side of any boundary must come out the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_job
from pipeline.endpoints.registry import endpoint_for
from pipeline.errors import InputError
from pipeline.runner import open_stream
from pipeline.storage import LocalStore
from tests.conftest import SANDBOX_CREDENTIALS, audience_job, write_job

cells = st.one_of(
    st.none(),
    st.sampled_from(["a@b.co", " A@B.CO ", "c@d.co", "e@f.co", "x@y.z", "", "@", "a@b", "bad", "g@h.co", "G@H.CO"]),
)


def stream_outcome(folder: Path, source: Path, chunk_rows: int) -> tuple:
    job = audience_job(folder, source, columns={"email": "email"}, limits={"batch_size": 3})
    job["source"]["max_reject_fraction"] = 1.0
    config = load_job(write_job(folder, job, f"job-{chunk_rows}.yaml"),
                      environment={**SANDBOX_CREDENTIALS, "ROKT_SANDBOX_URL": "http://127.0.0.1:9"})
    out = folder / f"out-{chunk_rows}"
    out.mkdir()
    stream = open_stream(config, endpoint_for(config), LocalStore(out), out)
    stream.chunk_rows = chunk_rows
    try:
        batches = [(b.index, b.identifiers.to_list(), b.digest) for b in stream.batches()]
    except InputError as exc:
        return ("refused", str(exc).split(";")[0])
    counts = (stream.rows_read, stream.rows_rejected, stream.duplicates_dropped, stream.identifiers, stream.reject_reasons)
    return batches, counts, (out / "rejects.csv").read_text()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=40), st.sampled_from(["csv", "parquet"]), st.integers(1, 9))
def test_chunk_size_changes_nothing(rows, fmt, chunk_rows) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = folder / f"rows.{fmt}"
        frame = pl.DataFrame({"email": rows}, schema={"email": pl.String})
        frame.write_csv(source) if fmt == "csv" else frame.write_parquet(source)
        assert stream_outcome(folder, source, chunk_rows) == stream_outcome(folder, source, 250_000)
