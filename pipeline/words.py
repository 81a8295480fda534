"""Counts in sentences people read: '1 duplicate', '3 duplicates', '1,200 batches'."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else plural_form or singular + 's'}"
