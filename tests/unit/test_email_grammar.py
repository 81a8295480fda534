"""The email grammar against an independent oracle: email-validator (without its DNS checks), Python per row.

On ASCII (every normalised value of a plain export) the two must accept the same strings, apart from the two
exceptions email_grammar.py documents; on internationalised values the grammar may refuse more, never accept more.
"""

from __future__ import annotations

import itertools
import string

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.prepare.email_grammar import EMAIL_ADDRESS, RESERVED_TOP_LEVEL_DOMAINS
from pipeline.prepare.schemas import valid_expression
from tests.conftest import accepted_by_email_validator as oracle


def grammar(addresses: list[str]) -> list[bool]:
    """The pipeline's verdict on normalised values: every deciding rule of the email column (grammar and length)."""
    frame = pl.DataFrame({"email": addresses}, schema={"email": pl.String})
    return frame.select(valid_expression(["email"])).to_series().to_list()


def top_level_domain_is_letters_or_punycode(address: str) -> bool:
    tld = address.rsplit(".", 1)[-1]
    return tld.isalpha() or tld.startswith("xn--")


ASCII_PUNCTUATION = "!#$%&'*+/=?^_`{|}~-.@\"(),:;<>[\\]"
labels = st.text(alphabet=st.sampled_from(list("ab9-")), min_size=0, max_size=66)
ascii_addresses = st.one_of(
    st.text(alphabet=st.sampled_from(list(string.ascii_lowercase[:3] + string.digits[:2] + ASCII_PUNCTUATION)), max_size=24),
    st.builds(
        lambda local, domain, tld: f"{local}@{'.'.join(domain)}.{tld}",
        st.text(alphabet=st.sampled_from(list("ab9" + ASCII_PUNCTUATION)), max_size=12),
        st.lists(labels, min_size=0, max_size=3),
        st.one_of(st.sampled_from([*RESERVED_TOP_LEVEL_DOMAINS, "com", "co", "c", "tests", "arp", "localhos", "c1", "1c", "c-m", "x-n"]),
                  labels),
    ),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(ascii_addresses, min_size=1, max_size=40))
@example(["a@b.co", "a-@b.co", "-a@b.co", "a@" + "b" * 63 + ".co", "a@" + "b" * 64 + ".co", "a@ab--c.co", "a@a--b.co",
          "a@abc--d.co", "a@b.test", "a@b.tests", "o'brien@x.com", "{a}|~@b.co", "a@" + ".".join(["b" * 63] * 4) + ".co"])
def test_on_ascii_the_grammar_accepts_exactly_what_email_validator_accepts(addresses) -> None:
    """Except the documented two: a top-level domain must be letters or punycode, and punycode is not decoded."""
    comparable = [a for a in addresses if "xn--" not in a]
    expected = [oracle(a) and top_level_domain_is_letters_or_punycode(a) for a in comparable]
    assert grammar(comparable) == expected, [a for a, g, e in zip(comparable, grammar(comparable), expected) if g != e]


# Beyond ASCII: letters of the scripts most addresses use, combining marks, and the look-alikes people paste.
INTERNATIONAL = list("üéßøñçœłżşğıäåđšαλωςдяёжі日本語中文のテ한국") + ["\u0301", "\u0308", "\u3099"]
LOOK_ALIKES = list("＠．“”‘’«»ａＡ𝐀𝐚ℌ½²①☃♥€·・、。") + ["\U0001f600", "\u0661"]
unicode_addresses = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.text(alphabet=st.sampled_from(list("ab9.-'") + INTERNATIONAL + LOOK_ALIKES), min_size=0, max_size=10),
    st.text(alphabet=st.sampled_from(list("ab9.-") + INTERNATIONAL + LOOK_ALIKES), min_size=0, max_size=10),
    st.text(alphabet=st.sampled_from(list("co") + INTERNATIONAL[:20]), min_size=1, max_size=4),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(unicode_addresses, min_size=1, max_size=40))
@example(["üser@exämple.com", "δοκιμή@παράδειγμα.δοκιμή", "用户@例子.广告", "a@b.рф", "e\u0301@b.co", "\u0301e@b.co",
          "a@\u0301b.co", "ａlice@b.co", "𝐀@b.co", "a“b@c.co", "a@b.co\u0301"])
def test_beyond_ascii_the_grammar_never_accepts_what_email_validator_refuses(addresses) -> None:
    accepted = [a for a, ok in zip(addresses, grammar(addresses)) if ok]
    assert [a for a in accepted if not oracle(a)] == []


def test_the_reserved_names_and_only_they_are_kept_out_of_the_top_level_domain() -> None:
    """Every string of up to four letters, and each reserved name with a letter more or less."""
    names = ["".join(letters) for n in range(1, 5) for letters in itertools.product(string.ascii_lowercase, repeat=n)]
    names += [w[:cut] for w in RESERVED_TOP_LEVEL_DOMAINS for cut in range(1, len(w) + 1)]
    names += [w + "s" for w in RESERVED_TOP_LEVEL_DOMAINS] + ["s" + w for w in RESERVED_TOP_LEVEL_DOMAINS]
    verdicts = pl.Series([f"a@b.{name}" for name in names]).str.contains(EMAIL_ADDRESS).to_list()
    assert [n for n, ok in zip(names, verdicts) if ok == (n in RESERVED_TOP_LEVEL_DOMAINS)] == []
