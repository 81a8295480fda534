"""pandera (polars backend) schemas for normalised identifier columns.

Each check's `error` text is the reason written to rejects.csv, so it must read well to a data engineer.
Validate DataFrames, not LazyFrames: pandera skips data checks on LazyFrames.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from pipeline.prepare.hashing import BASE64_SHA256, HEX_SHA256

_NOT_CONTROL = r"[^@\x00-\x1f\x7f]"
_EMAIL = rf"^{_NOT_CONTROL}+@[^@\x00-\x1f\x7f.]+(\.[^@\x00-\x1f\x7f.]+)+$"
MAX_EMAIL_LENGTH = 254

EMPTY_REASON = "empty"


def _matches(pattern: str):
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(pattern))

    return check


def _not_blank(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).str.len_chars() > 0)


def _short_enough(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).str.len_bytes() <= MAX_EMAIL_LENGTH)


def _control_free(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(~pl.col(data.key).str.contains(r"[\x00-\x1f\x7f]"))


_COLUMN_CHECKS = {
    "email": [
        pa.Check(_not_blank, name="email_not_blank", error=EMPTY_REASON),
        pa.Check(_control_free, name="email_control_free", error="email contains control characters"),
        pa.Check(_short_enough, name="email_length", error=f"email longer than {MAX_EMAIL_LENGTH} bytes"),
        pa.Check(_matches(_EMAIL), name="email_format", error="not a valid email address"),
    ],
    "sha256": [
        pa.Check(_not_blank, name="sha256_not_blank", error=EMPTY_REASON),
        pa.Check(
            _matches(f"{HEX_SHA256}|{BASE64_SHA256}"),
            name="sha256_shape",
            error="not a SHA-256 hash (expected 64 hex characters or a 44-character base64 digest)",
        ),
    ],
    "phone": [pa.Check(_matches(r"^\+[1-9][0-9]{6,14}$"), name="phone_e164", error="not a valid phone number")],
    "request_type": [
        pa.Check(_matches(r"^(NETWORK_OPT_OUT|NETWORK_DATA_DELETION)$"), name="request_type_known",
                 error="unknown request type (expected NETWORK_OPT_OUT or NETWORK_DATA_DELETION)"),
    ],
    "account_id": [
        pa.Check(_matches(r"^[A-Za-z0-9_-]{1,64}$"), name="account_id_shape",
                 error="not an account ID (letters, digits, - and _ only)"),
    ],
}

ROW_LEVEL = "row"  # the `role` of a failure that concerns the row as a whole


def identifier_schema(roles: list[str], nullable: bool = False, row_checks: list[pa.Check] | None = None) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {role: pa.Column(pl.String, nullable=nullable, checks=_COLUMN_CHECKS[role]) for role in roles},
        checks=row_checks or [],
        strict=False,
    )


def row_rule(ok: pl.Expr, reason: str) -> pa.Check:
    """A dataframe-level check: `ok` is True for every acceptable row."""
    return pa.Check(lambda data: data.lazyframe.select(ok), error=reason)


def failing_rows(frame: pl.DataFrame, roles: list[str], nullable: bool = False, row_checks: list[pa.Check] | None = None) -> pl.DataFrame:
    """Rows of `frame` that fail validation: (position, role, reason), one per row (its first failure)."""
    try:
        identifier_schema(roles, nullable, row_checks).validate(frame, lazy=True)
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
