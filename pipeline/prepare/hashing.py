"""SHA-256 and its two wire encodings, as polars expressions.

hex (64 lowercase characters) is for audience import; base64 of the 32-byte digest (44 characters) is for
the deletion and privacy endpoints. Mixing them silently breaks matching, so each conversion is explicit.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
import polars_hash  # noqa: F401  (registers the .chash namespace)

HEX_SHA256 = r"^[0-9a-fA-F]{64}$"
# Canonical only: 32 bytes leave two unused bits in the 43rd character, which must be zero (polars, unlike
# Python's b64decode, refuses a digest whose unused bits are set).
BASE64_SHA256 = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"

WireEncoding = Literal["hex", "base64", "email"]


def sha256_hex(expr: pl.Expr) -> pl.Expr:
    return expr.chash.sha2_256()


# Non-strict decoding: the stream hashes every row before validation drops the invalid ones, which must
# become null here rather than fail the whole chunk.
def hex_to_base64(expr: pl.Expr) -> pl.Expr:
    return expr.str.decode("hex", strict=False).bin.encode("base64")


def base64_to_hex(expr: pl.Expr) -> pl.Expr:
    return expr.str.decode("base64", strict=False).bin.encode("hex")


def prehashed_to_hex(expr: pl.Expr) -> pl.Expr:
    """A validated pre-hashed value (hex in any case, or base64) as lowercase hex."""
    return pl.when(expr.str.contains(HEX_SHA256)).then(expr.str.to_lowercase()).otherwise(base64_to_hex(expr))


def wire_identifier(role: str, encoding: WireEncoding) -> pl.Expr:
    """The identifier as the endpoint wants it, from the normalised column of `role`."""
    column = pl.col(role)
    if encoding == "email":
        if role != "email":
            raise ValueError("only a raw email column can be sent as email")
        return column
    hex_digest = sha256_hex(column) if role == "email" else prehashed_to_hex(column)
    return hex_digest if encoding == "hex" else hex_to_base64(hex_digest)
