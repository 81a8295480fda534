"""For any input rows: every row is sent exactly once (by wire identifier), rejected, or counted as a
duplicate, and summary.json adds up to the rows read."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_job
from pipeline.runner import run_job
from tests.conftest import audience_job, write_job

EMAIL = re.compile(r"^[^@\x00-\x1f\x7f]+@[^@\x00-\x1f\x7f.]+(\.[^@\x00-\x1f\x7f.]+)+$")
cells = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("aAbB1@@..-_ \t\u00fc")), max_size=12),
    st.sampled_from(["a@b.co", " A@B.CO ", "a @b.co", "x@y.z", "", "  ", "@", "a@b", "\u00fc@b.co"]),
)


def reference(value: str | None) -> str | None:
    """The hex identifier a valid cell must produce, or None for a cell that must be rejected."""
    if value is None:
        return None
    normalised = re.sub(r"\s", "", value).lower()
    if not normalised or len(normalised.encode()) > 254 or not EMAIL.match(normalised):
        return None
    return hashlib.sha256(normalised.encode()).hexdigest()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=60), st.sampled_from(["csv", "parquet"]))
def test_every_row_is_accounted_for(sandbox, sandbox_env, rows, fmt) -> None:
    sandbox.reset()
    with tempfile.TemporaryDirectory() as scratch:
        tmp_path = Path(scratch)
        source = tmp_path / f"rows.{fmt}"
        frame = pl.DataFrame({"email": rows}, schema={"email": pl.String})
        frame.write_csv(source) if fmt == "csv" else frame.write_parquet(source)
        job = audience_job(tmp_path, source, columns={"email": "email"}, limits={"batch_size": 7})
        job["source"]["max_reject_fraction"] = 1.0
        expected = [reference(v) for v in rows]
        valid = [h for h in expected if h is not None]
        try:
            summary = run_job(load_job(write_job(tmp_path, job)))
        except Exception as exc:  # the only acceptable refusal: nothing valid to send
            assert not valid and "no valid identifiers" in str(exc)
            return
        sent = Counter(h for r in sandbox.state()["received"] for h in r["identifiers"])
        assert set(sent.values()) <= {1}  # exactly once
        assert set(sent) == set(valid)
        assert summary.rows_read == len(rows)
        assert summary.rows_rejected == expected.count(None)
        assert summary.duplicates_dropped == len(valid) - len(set(valid))
        assert summary.rows_rejected + summary.duplicates_dropped + summary.identifiers_accepted == summary.rows_read
