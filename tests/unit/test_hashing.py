"""Normalisation and both hash encodings, against hashlib and the documents' vectors."""

from __future__ import annotations

import base64
import hashlib
import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.prepare.hashing import wire_identifier
from pipeline.prepare.normalise import WHITE_SPACE, ZERO_WIDTH, normalise_email, strip_hash

HELLO_HEX = "1753bdb368271a785887ddbfb926164f2f7c6a88f609c07ff0401c5572955206"
HELLO_BASE64 = "F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgY="
# Every Unicode White_Space character and the zero-width ones, written out here apart from normalise.py's list.
WHITESPACE = (" \t\n\r\x0b\x0c\x85\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
              "\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff")


def reference_normalise(value: str) -> str:
    return re.sub(r"[\s\u200b\u200c\u200d\u2060\ufeff]", "", value).lower()


def wire(values: list[str | None], role: str, encoding: str) -> list[str | None]:
    frame = pl.DataFrame({role: values}, schema={role: pl.String})
    normaliser = normalise_email if role == "email" else strip_hash
    return frame.select(normaliser(role)).select(wire_identifier(role, encoding)).to_series().to_list()


def test_documented_vectors() -> None:
    assert wire(["hello@example.com"], "email", "hex") == [HELLO_HEX]
    assert wire(["hello@example.com"], "email", "base64") == [HELLO_BASE64]
    assert wire(["  HELLO@Example.COM\t"], "email", "hex") == [HELLO_HEX]


def test_removed_characters_are_exactly_white_space_and_zero_width() -> None:
    """Both normalisers remove what the regex `\\s` matches in polars (Rust's Unicode White_Space) and the
    zero-width characters, from every code point, no more and no less, on both engines."""
    every_character = pl.Series("value", [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000])
    assert sorted(WHITE_SPACE) == every_character.filter(every_character.str.contains(r"^\s$")).to_list()
    assert sorted([*WHITE_SPACE, *ZERO_WIDTH]) == sorted(WHITESPACE)
    values = pl.concat([every_character, every_character + "a b", pl.Series("value", [None, "", "\u200bX\u3000y\ufeff"])])
    expected = values.str.replace_all(r"[\s\u200b\u200c\u200d\u2060\ufeff]", "")
    for engine in ("in-memory", "streaming"):
        frame = values.to_frame().lazy()
        assert frame.select(strip_hash("value")).collect(engine=engine).to_series().to_list() == expected.to_list()
        assert (frame.select(normalise_email("value")).collect(engine=engine).to_series().to_list()
                == expected.str.to_lowercase().to_list())


def test_prehashed_input_converts_between_encodings() -> None:
    assert wire([HELLO_BASE64, HELLO_HEX.upper(), f" {HELLO_HEX} "], "sha256", "hex") == [HELLO_HEX] * 3
    assert wire([HELLO_HEX, HELLO_BASE64], "sha256", "base64") == [HELLO_BASE64] * 2


emails = st.text(
    alphabet=st.one_of(
        st.characters(categories=("L", "N", "P", "S"), max_codepoint=0x2FFF),
        st.sampled_from(WHITESPACE),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(emails, min_size=1, max_size=30))
def test_normalisation_matches_reference(values: list[str]) -> None:
    frame = pl.DataFrame({"email": values}, schema={"email": pl.String})
    assert frame.select(normalise_email("email")).to_series().to_list() == [reference_normalise(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60), min_size=1, max_size=30))
def test_hex_and_base64_match_hashlib(values: list[str]) -> None:
    frame = pl.DataFrame({"email": values}, schema={"email": pl.String})
    hexes = frame.select(wire_identifier("email", "hex")).to_series().to_list()
    base64s = frame.select(wire_identifier("email", "base64")).to_series().to_list()
    for value, hex_digest, b64_digest in zip(values, hexes, base64s):
        digest = hashlib.sha256(value.encode("utf-8")).digest()
        assert hex_digest == digest.hex()
        assert b64_digest == base64.b64encode(digest).decode()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20))
def test_prehashed_round_trip(digests: list[bytes]) -> None:
    as_base64 = [base64.b64encode(d).decode() for d in digests]
    as_hex = [d.hex() for d in digests]
    assert wire(as_base64, "sha256", "hex") == as_hex
    assert wire(as_hex, "sha256", "base64") == as_base64


def test_encodings_are_never_mixed_up() -> None:
    [hex_digest] = wire(["a@b.co"], "email", "hex")
    [b64_digest] = wire(["a@b.co"], "email", "base64")
    assert re.fullmatch(r"[0-9a-f]{64}", hex_digest)
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", b64_digest)
