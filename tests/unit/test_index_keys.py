"""The delivery index keys a hex digest by its first 16 bytes, the same way whichever decoder runs."""

from __future__ import annotations

import hashlib

import polars as pl
from hypothesis import given, strategies as st

from pipeline.audit.index import index_keys, key_of_hex


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=50), st.booleans())
def test_the_array_decoder_gives_each_digests_first_16_bytes(values, upper) -> None:
    digests = [hashlib.sha256(value).hexdigest() for value in values]
    wire = pl.Series("wire", [d.upper() if upper else d for d in digests])
    assert [bytes(key) for key in index_keys(wire, "hex").to_pylist()] == [key_of_hex(d) for d in digests]


def test_values_that_are_not_64_digits_take_the_general_path() -> None:
    wire = pl.Series("wire", ["ab" * 32, "cd" * 20])  # one short value: the array decoder must not guess
    assert [bytes(key) for key in index_keys(wire, "hex").to_pylist()] == [bytes.fromhex("ab" * 16), bytes.fromhex("cd" * 16)]
