"""What a valid identifier is: one table of rules, each a polars expression and the reason a failing row gets.

The same rules are used two ways. As pandera (polars backend) checks, they validate rows and name the reason
written to rejects.csv. As one combined expression (`valid_expression`), they flag suspect rows inside the
streaming query, so pandera only has to look at those. tests/unit/test_validation_agreement.py proves the two
never disagree. Validate DataFrames, not LazyFrames: pandera skips data checks on LazyFrames.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

import polars as pl

from pipeline.prepare.email_grammar import EMAIL_ADDRESS, PADDED_ASCII_EMAIL_ADDRESS, RESERVED_TOP_LEVEL_DOMAINS
from pipeline.prepare.hashing import BASE64_SHA256, HEX_SHA256

if TYPE_CHECKING:
    import pandera.polars as pa


def _pandera():  # noqa: ANN202
    # Imported here, not at the top: pandera imports pandas at import time whenever pandas is installed (about a
    # second, as on a typical Airflow worker); a stream imports it on a thread of its own, beside polars' reads.
    import pandera.polars

    return pandera.polars


_CONTROL = r"[\x00-\x1f\x7f]"
MAX_EMAIL_LENGTH = 254
EMPTY_REASON = "empty"
ROW_LEVEL = "row"  # the `role` of a failure that concerns the row as a whole


class Rule(NamedTuple):
    test: Callable[[pl.Expr], pl.Expr]  # value -> ok
    reason: str
    # A later rule of the same column fails whenever this one does, so the fast expression can skip it
    # (one regex scan fewer per row); pandera still checks it, so rejects.csv names the more precise reason.
    implied: bool = False


def _matches(pattern: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda value: value.str.contains(pattern)


def _lacks(pattern: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda value: ~value.str.contains(pattern)


_NOT_BLANK = Rule(lambda value: value.str.len_chars() > 0, EMPTY_REASON, implied=True)  # every pattern below needs a character
# Why an address is not one, most telling first. Each fails only where the grammar (EMAIL_ADDRESS, last) fails too, so
# the fast expression checks the grammar alone; pandera names the first of these that a flagged row breaks.
_EMAIL_SHAPES = [
    (r"<[^<>]*>$", "email has a display name or angle brackets (Name <address>)"),
    (r"^mailto:", "email starts with mailto:"),
    (r"[\"“”„‟«»]|^['‘’`].*['‘’`]$", "email is in quotes or has a quotation mark"),
    (r"^[^@]*$", "email has no @"),
    (r"@.*@", "email has more than one @"),
    (r"^@", "email has nothing before the @"),
    (r"@$", "email has nothing after the @"),
    (r"^[.,;:()\[\]<>\\]|[\p{P}\p{S}]$", "email starts or ends with punctuation"),
    (r"@[^.]*$", "email domain has no dot"),
    (r"^\.|\.\.|\.@|@\.|\.$", "email has an empty part (two dots in a row, or a dot first or last)"),
    (rf"\.(?:{'|'.join(RESERVED_TOP_LEVEL_DOMAINS)})$",
     f"email domain is reserved ({', '.join('.' + name for name in RESERVED_TOP_LEVEL_DOMAINS)}): no mail reaches it"),
]
COLUMN_RULES: dict[str, list[Rule]] = {
    "email": [
        _NOT_BLANK,
        Rule(_lacks(_CONTROL), "email contains control characters", implied=True),  # the grammar excludes them
        Rule(lambda value: value.str.len_bytes() <= MAX_EMAIL_LENGTH, f"email longer than {MAX_EMAIL_LENGTH} bytes"),
        *(Rule(_lacks(pattern), reason, implied=True) for pattern, reason in _EMAIL_SHAPES),
        Rule(_matches(EMAIL_ADDRESS), "not a valid email address"),
    ],
    "sha256": [
        _NOT_BLANK,
        Rule(_matches(f"{HEX_SHA256}|{BASE64_SHA256}"), "not a SHA-256 hash (expected 64 hex characters or a 44-character base64 digest)"),
    ],
    "phone": [Rule(_matches(r"^\+[1-9][0-9]{6,14}$"), "not a valid phone number")],
    "request_type": [
        Rule(_matches(r"^(NETWORK_OPT_OUT|NETWORK_DATA_DELETION)$"),
             "unknown request type (expected NETWORK_OPT_OUT or NETWORK_DATA_DELETION)"),
    ],
    "account_id": [Rule(_matches(r"^[A-Za-z0-9_-]{1,64}$"), "not an account ID (letters, digits, - and _ only)")],
}


assert all(any(not rule.implied for rule in rules) for rules in COLUMN_RULES.values()), "each column needs a deciding rule"

# A cheap test on the *raw* value that implies its normalised form passes every rule of the column: the ASCII
# grammar in any case, with at most spaces or tabs around it (email_grammar.PADDED_ASCII_EMAIL_ADDRESS). It lets
# the reject threshold be judged in one regex scan per row for typical files; rows it cannot vouch for are judged
# exactly. test_certainly_valid proves the implication.
CERTAINLY_VALID_RAW: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "email": lambda raw: (raw.str.len_bytes() <= MAX_EMAIL_LENGTH) & raw.str.contains(PADDED_ASCII_EMAIL_ADDRESS),
}


@dataclass(frozen=True)
class RowRule:
    """A rule about the row as a whole: `ok` is True for every acceptable row."""

    ok: pl.Expr
    reason: str


def row_rule(ok: pl.Expr, reason: str) -> RowRule:
    return RowRule(ok, reason)


def identifier_schema(roles: list[str], nullable: bool = False, row_rules: list[RowRule] | None = None) -> pa.DataFrameSchema:
    pa = _pandera()

    def column_check(rule: Rule) -> pa.Check:
        return pa.Check(lambda data: data.lazyframe.select(rule.test(pl.col(data.key))), error=rule.reason)

    def frame_check(rule: RowRule) -> pa.Check:
        return pa.Check(lambda data: data.lazyframe.select(rule.ok), error=rule.reason)

    return pa.DataFrameSchema(
        {role: pa.Column(pl.String, nullable=nullable, checks=[column_check(r) for r in COLUMN_RULES[role]]) for role in roles},
        checks=[frame_check(r) for r in row_rules or []],
        strict=False,
    )


def warmed_schema(roles: list[str], nullable: bool = False, row_rules: list[RowRule] | None = None) -> pa.DataFrameSchema:
    """identifier_schema, after one validation of no rows.

    pandera loads its polars backends at its first validation (12-15 ms, done here on the stream's background
    thread), so the first call for real rows is quicker: in a 1M-row dry run that call comes after the last chunk,
    with nothing else left to do, and took 12-16 ms instead of 17-20 ms.
    """
    schema = identifier_schema(roles, nullable, row_rules)
    # Only a head start: whatever fails here fails again, and is reported, where real rows are validated.
    with contextlib.suppress(Exception):
        failing_rows(pl.DataFrame(schema={role: pl.String for role in roles}), roles, schema=schema)  # its own types
    return schema


def valid_expression(roles: list[str], nullable: bool = False, row_rules: list[RowRule] | None = None) -> pl.Expr:
    """True exactly for the rows the schema accepts (pandera's checks pass on nulls; not_nullable fails them)."""
    conditions = []
    for role in roles:
        value = pl.col(role)
        passes = pl.all_horizontal([rule.test(value) for rule in COLUMN_RULES[role] if not rule.implied])
        conditions.append(value.is_null() | passes if nullable else value.is_not_null() & passes.fill_null(False))
    conditions += [rule.ok.fill_null(False) for rule in row_rules or []]
    return pl.all_horizontal(conditions).fill_null(False) if conditions else pl.lit(True)


def failing_rows(frame: pl.DataFrame, roles: list[str], nullable: bool = False, row_rules: list[RowRule] | None = None,
                 schema: pa.DataFrameSchema | None = None) -> pl.DataFrame:
    """Rows of `frame` that fail validation: (position, role, reason), one per row (its first failure)."""
    pa = _pandera()
    try:
        (schema or identifier_schema(roles, nullable, row_rules)).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        # failure_cases also holds the failing values: never log it, keep only positions and reasons.
        cases = errors.failure_cases
        schema_level = cases.filter(pl.col("index").is_null())
        if schema_level.height:
            raise TypeError(f"identifier columns do not have the expected type: {schema_level['check'].to_list()}")
        return (
            cases.select(
                pl.col("index").cast(pl.UInt32).alias("position"),
                pl.col("column").fill_null(ROW_LEVEL).alias("role"),
                pl.when(pl.col("check") == "not_nullable").then(pl.lit(EMPTY_REASON)).otherwise(pl.col("check")).alias("reason"),
            )
            .unique(subset="position", keep="first", maintain_order=True)
            .sort("position")
        )
    return pl.DataFrame(schema={"position": pl.UInt32, "role": pl.String, "reason": pl.String})
