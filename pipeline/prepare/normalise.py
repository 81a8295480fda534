"""Identifier normalisation as polars expressions (no per-row Python)."""

from __future__ import annotations

import polars as pl

# Unicode White_Space, as the contract says "remove all whitespace"; the zero-width characters that
# spreadsheets paste in are not White_Space but are never part of a real address either.
_WHITESPACE = r"[\s\u200b\u200c\u200d\u2060\ufeff]"


def normalise_email(column: str) -> pl.Expr:
    """Remove all whitespace, then lowercase [contract: identifier normalisation]."""
    return pl.col(column).str.replace_all(_WHITESPACE, "").str.to_lowercase()


def strip_hash(column: str) -> pl.Expr:
    """A pre-hashed value with surrounding or embedded whitespace removed; case is kept (base64 needs it)."""
    return pl.col(column).str.replace_all(_WHITESPACE, "")
