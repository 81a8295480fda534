"""For any input rows: every row is sent exactly once (by wire identifier), rejected, or counted as a
duplicate, and summary.json adds up to the rows read; over many batches, and with rows on both sides of the
end of the in-memory dedupe (the rest judged by the duplicate pass on disk). Valid is what email-validator, an
oracle of its own, accepts after the contract's normalisation. (A missing value in a one-column CSV file is a
blank line, which is no row.)"""

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
from pipeline.prepare.schemas import COLUMN_RULES
from pipeline.runner import run_job
from tests.conftest import (
    accepted_by_email_validator, audience_job, invisible, reference_email, reference_normalise, write_job,
)


def reference(value: str | None) -> str | None:
    """The hex identifier a valid cell must produce, or None for a cell that must be rejected."""
    email = reference_email(value)
    return None if email is None else hashlib.sha256(email.encode()).hexdigest()


addresses = st.builds(
    lambda local, domain, before, after: f"{before}{local}@{domain}{after}",
    st.sampled_from(["a", "B", "c.d", "e_f", "\u00fc", "G.h-i", "j+k"]),
    st.sampled_from(["b.co", "B.CO", "ex.org", "d.e.fr"]),
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
        rows = [v for v in rows if v is not None] if fmt == "csv" else rows
        expected = [reference(v) for v in rows]
        valid = [h for h in expected if h is not None]
        try:
            # Rows past `memory_rows` are deduplicated by the pass on disk, as a file of more than 2M rows is.
            with mock.patch.object(pipeline.prepare.stream, "MEMORY_DEDUPE_ROWS", memory_rows):
                summary = run_job(load_job(write_job(tmp_path, job)))
        except Exception as exc:  # the only acceptable refusals: nothing valid to send, or no row at all
            assert not valid and ("no valid identifiers" in str(exc) or (not rows and "no data rows" in str(exc)))
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


# Issue 25's property. Beyond ASCII the domain draws on the scripts and look-alikes the grammar is proved on
# (tests/unit/test_email_grammar.py); elsewhere any character Python's Unicode assigns.
PLAIN = list("abZ9") + list("üéßαдя日한")
DOMAIN_CHARACTERS = [*PLAIN, *"-.", *"＠．“’ａＡ𝐀½☃·", "\u0301", "\u20dd"]
INVISIBLE_OR_SPACE = list(" \t\u00a0\u3000\u200b\u200e\u200f\u00ad\u202a\u180e\ufe0f\u2066\U000e0041\U000e0100\ufeff")
anything = st.characters(exclude_categories=("Cs", "Cn"))


def mostly(plain: list[str], rest: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Text that is often plain, with invisible characters and spaces about, and sometimes anything of `rest`."""
    return st.text(st.one_of(st.sampled_from(plain + INVISIBLE_OR_SPACE), rest), min_size=1, max_size=max_size)


any_string = st.one_of(
    st.text(anything, max_size=20),
    st.builds(
        lambda pad, local, domain, tld, tail: f"{pad}{local}@{domain}.{tld}{tail}",
        st.text(st.sampled_from(INVISIBLE_OR_SPACE), max_size=2),
        st.one_of(mostly(PLAIN, st.sampled_from(list(".+_'")), 8), mostly(PLAIN, anything, 8)),
        st.one_of(mostly(PLAIN, st.just("-"), 8), mostly(PLAIN, st.sampled_from(DOMAIN_CHARACTERS), 8)),
        st.sampled_from(["com", "CO", "test", "c1", "рф", "日本", "c\u200eo", ""]),
        st.one_of(st.text(st.sampled_from(INVISIBLE_OR_SPACE), max_size=2), st.sampled_from([">", ")", ";", "'"])),
    ),
)
EMAIL_REASONS = {rule.reason for rule in COLUMN_RULES["email"]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(any_string, min_size=1, max_size=30))
def test_any_string_is_rejected_with_a_reason_or_sent_as_the_hash_of_a_valid_normalised_address(
        sandbox, sandbox_env, cells) -> None:
    """The hash sent is sha256(normalised), and `normalised` passes email-validator (no DNS) and holds no whitespace,
    no format character (Cf) and no upper case; every other row is in rejects.csv with a named reason."""
    sandbox.reset()
    with tempfile.TemporaryDirectory() as scratch:
        tmp_path = Path(scratch)
        pl.DataFrame({"email": cells}, schema={"email": pl.String}).write_parquet(tmp_path / "any.parquet")
        job = audience_job(tmp_path, tmp_path / "any.parquet", columns={"email": "email"}, limits={"batch_size": 7})
        job["source"]["max_reject_fraction"] = 1.0
        try:
            summary = run_job(load_job(write_job(tmp_path, job)))
        except Exception as exc:
            assert "no valid identifiers" in str(exc)
            summary = None
        [rejects] = (tmp_path / "out").glob("*/*/rejects.csv")
        reasons = {int(row["row"]): row["reason"] for row in pl.read_csv(rejects, infer_schema=False).to_dicts()}
        sent = {h for r in sandbox.state()["received"] for h in r["identifiers"]}
    assert set(reasons.values()) <= EMAIL_REASONS
    kept = [reference_normalise(cell) for row, cell in enumerate(cells, 1) if row not in reasons]
    for normalised in kept:
        assert accepted_by_email_validator(normalised), normalised
        assert not [c for c in normalised if invisible(c) or c.isupper()], normalised
    assert sent == {hashlib.sha256(n.encode()).hexdigest() for n in kept}
    if summary is not None:
        assert summary.rows_read == len(cells) and summary.rows_rejected == len(reasons)
