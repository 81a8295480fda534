"""The fast validity expression and the pandera schema are built from one rule table; they must agree on
every row, or a row could be sent that pandera would reject (or quarantined without a reason)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.prepare.normalise import normalise_email, normalise_token, strip_hash
from pipeline.prepare.schemas import (
    CERTAINLY_VALID_RAW, failing_rows, identifier_schema, row_rule, valid_expression, warmed_schema,
)

JUNK = ["Alice <alice.j@example.com>", "<a@b.co>", "mailto:a@b.co", "'q@b.co'", '"q"@b.co', "“q@b.co”", "a@b.co;",
        "(a@b.co", "a@b.co)", "a@@b.co", "a@b@c.co", "@b.co", "a@", "a@b", "a..b@c.co", ".a@b.co", "a.@b.co", "a@.b.co",
        "a@b.co.", "a@b.test", "a@b.local", "a@b-.co", "a@ab--c.co", "a@b.c1", "𝐀@b.co", "ａ@b.co", "a@b.xn--p1ai"]
# Characters that make or break an address, so that every rule of the email table fails somewhere.
email_like = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.text(alphabet=st.sampled_from(list("aZ9.+_-'\"<>:;()@ü“")), max_size=8),
    st.text(alphabet=st.sampled_from(list("a9-.üZ<>;)")), max_size=8),
    st.sampled_from(["co", "com", "test", "local", "c1", "c-m", "", "co>", "co'", "co;", "xn--p1ai", "ä"]),
)
values = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("aAzZ09@.+/=-_ \t\x00\x1f\u00fc<>:;'\"")), max_size=70),
    email_like,
    st.sampled_from(["a@b.co", "a@b", "", "A" * 64, "a" * 63, "F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgY=",
                     "+14155550101", "+1", "NETWORK_OPT_OUT", "NETWORK_DATA_DELETION", "x" * 300 + "@b.co", "acct_1", *JUNK]),
)


def agree(frame: pl.DataFrame, roles: list[str], nullable: bool, rules=None) -> None:
    fast = frame.select(valid_expression(roles, nullable, rules)).to_series()
    rejected = set(failing_rows(frame, roles, nullable, rules)["position"].to_list())
    assert {i for i, ok in enumerate(fast.to_list()) if not ok} == rejected


@settings(max_examples=150, deadline=None)
@given(st.lists(values, min_size=1, max_size=25))
def test_single_identifier_roles(cells) -> None:
    for role, normalise in (("email", normalise_email), ("sha256", strip_hash), ("account_id", normalise_token)):
        frame = pl.DataFrame({role: cells}, schema={role: pl.String}).select(normalise(role))
        agree(frame, [role], nullable=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(values, values, values, values), min_size=1, max_size=25))
def test_multi_column_rows_with_row_rules(rows) -> None:
    frame = pl.DataFrame(rows, schema={c: pl.String for c in ("request_type", "email", "phone", "sha256")}, orient="row")
    rules = [
        row_rule(pl.col("request_type").is_not_null(), "missing request type"),
        row_rule(~((pl.col("request_type") == "NETWORK_OPT_OUT") & pl.col("sha256").is_not_null()), "hash on an opt-out"),
        row_rule(pl.any_horizontal([pl.col(c).is_not_null() for c in ("email", "phone", "sha256")]), "empty"),
    ]
    agree(frame, ["request_type", "email", "phone", "sha256"], nullable=True, rules=rules)


def test_the_warmed_schema_names_the_same_reasons() -> None:
    """The stream validates with a schema that has already seen a frame of no rows; that must change nothing."""
    roles = ["request_type", "email", "phone", "sha256"]
    frame = pl.DataFrame([("NETWORK_OPT_OUT", "a@b.co", None, None), ("NETWORK_OPT_OUT", None, None, "F" * 64),
                          (None, "not an email", "+1", None), ("SOMETHING", None, None, None)],
                         schema={c: pl.String for c in roles}, orient="row")
    rules = [row_rule(pl.col("request_type").is_not_null(), "missing request type"),
             row_rule(~((pl.col("request_type") == "NETWORK_OPT_OUT") & pl.col("sha256").is_not_null()), "hash on an opt-out")]
    plain = failing_rows(frame, roles, schema=identifier_schema(roles, True, rules))
    warmed = failing_rows(frame, roles, schema=warmed_schema(roles, True, rules))
    assert warmed.to_dicts() == plain.to_dicts()
    assert set(plain["position"].to_list()) == {1, 2, 3}


raw_emails = st.one_of(
    st.text(alphabet=st.sampled_from(list("aAzZ09@.+-_' \t\n\x00\x1f\u00fc\u00a0\u200bİẞ\u212a")), max_size=40),
    st.builds(lambda local, domain, tld, pad: f"{pad}{local}@{domain}.{tld}{pad[::-1]}",
              st.text(alphabet=st.sampled_from(list("aZ9.+_-' İ\x00\x7f@\u212a")), min_size=1, max_size=300),
              st.text(alphabet=st.sampled_from(list("a9-.Z \u00fc\x1f\u212a")), min_size=1, max_size=70),
              st.sampled_from(["co", "COM", "Test", "LOCAL", "localhost", "tests", "c1", "xn--p1ai", "\u212a"]),
              st.sampled_from(["", " ", "\t", " \t ", "\u00a0"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_emails, min_size=1, max_size=30))
def test_certainly_valid_raw_emails_are_valid_once_normalised(cells) -> None:
    """The reject threshold trusts CERTAINLY_VALID_RAW: it must never vouch for a row the rules reject."""
    frame = pl.DataFrame({"email": cells}, schema={"email": pl.String})
    certain = frame.select(CERTAINLY_VALID_RAW["email"](pl.col("email")).fill_null(False)).to_series()
    valid = frame.select(normalise_email("email")).select(valid_expression(["email"])).to_series()
    assert not [cell for cell, vouched, ok in zip(cells, certain, valid) if vouched and not ok]


def test_certainly_valid_vouches_for_plain_addresses_only() -> None:
    cells = ["  John.Doe+x@Example.COM\t", "a@b.co", "a b@c.co", "ü@b.co", "a@b", "x" * 250 + "@b.co", None]
    certain = pl.DataFrame({"email": cells}).select(CERTAINLY_VALID_RAW["email"](pl.col("email")).fill_null(False))
    assert certain.to_series().to_list() == [True, True, False, False, False, False, False]
