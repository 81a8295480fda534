"""For any input rows: every row is sent exactly once (by wire identifier), rejected, or counted as a
duplicate, and summary.json adds up to the rows read; over many batches, and with rows on both sides of the
end of the in-memory dedupe (the rest judged by the duplicate pass on disk)."""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pipeline.prepare.stream
from pipeline.config import load_job
from pipeline.runner import run_job
from tests.conftest import audience_job, write_job

_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"  # zero-width characters a spreadsheet pastes in
MAX_EMAIL_BYTES = 254


def normalised(value: str) -> str:
    """The contract's rule, written out character by character: remove all whitespace, then lowercase."""
    return "".join(ch for ch in value if not ch.isspace() and ch not in _INVISIBLE).lower()


def is_valid_address(address: str) -> bool:
    """An oracle of its own, not the pipeline's pattern: one @, a local part, a domain of two or more non-empty
    dot-separated labels, no control character, at most 254 bytes."""
    if not address or len(address.encode()) > MAX_EMAIL_BYTES or any(ord(ch) < 32 or ord(ch) == 127 for ch in address):
        return False
    local, at, domain = address.partition("@")
    labels = domain.split(".")
    return bool(at) and bool(local) and "@" not in domain and len(labels) >= 2 and all(labels)


def reference(value: str | None) -> str | None:
    """The hex identifier a valid cell must produce, or None for a cell that must be rejected."""
    if value is None:
        return None
    address = normalised(value)
    return hashlib.sha256(address.encode()).hexdigest() if is_valid_address(address) else None


addresses = st.builds(
    lambda local, domain, before, after: f"{before}{local}@{domain}{after}",
    st.sampled_from(["a", "B", "c.d", "e_f", "\u00fc", "G.h-i", "j+k"]),
    st.sampled_from(["b.co", "B.CO", "ex.org", "d.e.f"]),
    st.sampled_from(["", " ", "\t", "\u200b"]), st.sampled_from(["", " ", "\u00a0"]),
)
cells = st.one_of(
    st.none(),
    addresses, addresses, addresses,  # weighted: most examples send several batches
    st.text(alphabet=st.sampled_from(list("aAbB1@@..-_ \t\u00fc")), max_size=12),
    st.sampled_from(["a@b.co", " A@B.CO ", "a @b.co", "x@y.z", "", "  ", "@", "a@b", "\u00fc@b.co", "a@.co", "a@b..co",
                     "@b.co", "a@b@c.co", "a@b.", "a\x01@b.co"]),
)


@st.composite
def files(draw: st.DrawFn) -> tuple[list[str | None], int]:
    """Rows, and how many of them are deduplicated in memory (the rest by the pass on disk)."""
    rows = draw(st.lists(cells, min_size=1, max_size=60) | st.lists(cells, min_size=20, max_size=60))
    return rows, draw(st.integers(0, len(rows)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files(), st.sampled_from(["csv", "parquet"]), st.integers(2, 5))
def test_every_row_is_accounted_for(sandbox, sandbox_env, file, fmt, batch_size) -> None:
    rows, memory_rows = file
    sandbox.reset()
    with tempfile.TemporaryDirectory() as scratch:
        tmp_path = Path(scratch)
        source = tmp_path / f"rows.{fmt}"
        frame = pl.DataFrame({"email": rows}, schema={"email": pl.String})
        frame.write_csv(source) if fmt == "csv" else frame.write_parquet(source)
        job = audience_job(tmp_path, source, columns={"email": "email"}, limits={"batch_size": batch_size})
        job["source"]["max_reject_fraction"] = 1.0
        expected = [reference(v) for v in rows]
        valid = [h for h in expected if h is not None]
        try:
            # Rows past `memory_rows` are deduplicated by the pass on disk, as a file of more than 2M rows is.
            with mock.patch.object(pipeline.prepare.stream, "MEMORY_DEDUPE_ROWS", memory_rows):
                summary = run_job(load_job(write_job(tmp_path, job)))
        except Exception as exc:  # the only acceptable refusal: nothing valid to send
            assert not valid and "no valid identifiers" in str(exc)
            return
        requests = [r["identifiers"] for r in sandbox.state()["received"]]
        event(f"{min(len(requests), 4)}{'+' if len(requests) >= 4 else ''} requests")
        event("both dedupe paths" if 0 < memory_rows < len(rows) else "one dedupe path")
        sent = Counter(h for identifiers in requests for h in identifiers)
        assert set(sent.values()) <= {1}  # exactly once
        assert set(sent) == set(valid)
        assert len(requests) == -(-len(set(valid)) // batch_size)  # in full batches, the last one the rest
        assert summary.rows_read == len(rows)
        assert summary.rows_rejected == expected.count(None)
        assert summary.duplicates_dropped == len(valid) - len(set(valid))
        assert summary.rows_rejected + summary.duplicates_dropped + summary.identifiers_accepted == summary.rows_read
