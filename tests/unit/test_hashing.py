"""Normalisation and both hash encodings, against hashlib and the documents' vectors."""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.prepare.hashing import wire_identifier
from pipeline.prepare.normalise import normalise_email, strip_hash
from tests.conftest import WHITE_SPACE, invisible, reference_normalise

HELLO_HEX = "1753bdb368271a785887ddbfb926164f2f7c6a88f609c07ff0401c5572955206"
HELLO_BASE64 = "F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgY="
# A sample of what must also go: zero-width characters, direction marks and embeddings, the soft hyphen, tags and
# variation selectors (the findings among them).
INVISIBLE_SAMPLE = "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u00ad\u202a\u202e\u2066\u180e\ufe0f\U000e0041\U000e0100"


def wire(values: list[str | None], role: str, encoding: str) -> list[str | None]:
    frame = pl.DataFrame({role: values}, schema={role: pl.String})
    normaliser = normalise_email if role == "email" else strip_hash
    return frame.select(normaliser(role)).select(wire_identifier(role, encoding)).to_series().to_list()


def test_documented_vectors() -> None:
    assert wire(["hello@example.com"], "email", "hex") == [HELLO_HEX]
    assert wire(["hello@example.com"], "email", "base64") == [HELLO_BASE64]
    assert wire(["  HELLO@Example.COM\t"], "email", "hex") == [HELLO_HEX]


def test_removed_characters_are_white_space_format_characters_and_variation_selectors() -> None:
    """Both normalisers remove every White_Space character, format character (Cf) and variation selector, as
    unicodedata says, no more and no less, from every code point Python's Unicode assigns, on both engines.
    (polars' regex knows a newer Unicode, where a few code points Python has unassigned are Cf: they go too.)"""
    assigned = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    removed = {c for c in assigned if invisible(c)}
    assert set(INVISIBLE_SAMPLE) <= removed and len(removed) == len(WHITE_SPACE) + 163 + 260  # Unicode 14: Cf, VS
    every_character = pl.Series("value", assigned)
    assert sorted(WHITE_SPACE) == every_character.filter(every_character.str.contains(r"^\s$")).to_list()
    values = pl.concat([every_character, every_character + "a b", pl.Series("value", [None, "", "\u200bX\u3000y\ufeff"])])
    expected = pl.Series([None if v is None else "".join(c for c in v if c not in removed) for v in values.to_list()],
                         dtype=pl.String)
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
        st.sampled_from(WHITE_SPACE + INVISIBLE_SAMPLE),
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
