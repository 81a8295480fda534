"""What an email address is: regular expressions that polars evaluates on the normalised value (no per-row Python).

The grammar is email-validator's without its DNS checks: RFC 5322's dot-atom before the @; after it, RFC 1035
host-name labels with RFC 5890's rule on hyphens, and a top-level domain that is not a reserved name. It is one
regex, so a row is judged in one scan. tests/unit/test_email_grammar.py holds email-validator up as the oracle: on
ASCII addresses the two accept the same strings, except that the grammar wants a top-level domain of letters only
or punycode (email-validator: any that ends with a letter; no real one differs) and does not decode a punycode
label (`xn--…`). On internationalised addresses the grammar is the stricter: letters, digits and combining marks,
not other scripts' punctuation and symbols; and of a Unicode domain label it checks the shape (no hyphen or mark
first, no hyphen last, no two in a row), not IDNA 2008's per-script rules (right-to-left labels, contextual
characters, the length once encoded), which need tables a regex cannot hold.
"""

from __future__ import annotations


def _either(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


# RFC 5322 atext, in lower case: the value is normalised.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~\-]"
# A letter (or digit) beyond ASCII that lowering left as it was: never upper or title case (mathematical capitals
# and the like are styled text, not an address) nor a full-width form (typed on a CJK keyboard: the address is its
# ASCII twin).
_INTL_LETTER = r"[\p{L}--[\x00-\x7f]--\p{Lu}--\p{Lt}--[\x{FF00}-\x{FFEF}]]"
_INTL_WORD = r"[[\p{L}\p{Nd}]--[\x00-\x7f]--\p{Lu}--\p{Lt}--[\x{FF00}-\x{FFEF}]]"
# Never first: a combining mark would combine with whatever is written before it. Not an enclosing mark (a circle or
# a keycap drawn around a character), which IDNA 2008 forbids.
_MARK = r"[\p{Mn}\p{Mc}]"


def _ascii_label() -> str:
    """An RFC 1035 label: 1 to 63 letters, digits and inner hyphens, never with hyphens in both its third and
    fourth places (RFC 5890) unless it is punycode (`xn--`)."""
    alnum, inner = "[a-z0-9]", "[a-z0-9-]"
    return _either(
        f"{alnum}(?:{inner}?{alnum})?",
        f"{alnum}{inner}{alnum}{inner}{{0,59}}{alnum}",
        f"{alnum}{inner}-{alnum}(?:{inner}{{0,58}}{alnum})?",
        f"xn--{inner}{{0,58}}{alnum}",
    )


def _unicode_label(last: str) -> str:
    """A label with a letter or combining mark beyond ASCII: it starts with a letter or digit, ends with `last`, and
    never has two hyphens in a row (stricter than RFC 5890, which forbids them in the third and fourth places only)."""
    word = _either("[a-z0-9]", _INTL_LETTER, _MARK)
    return _either(f"[a-z0-9](?:-?{word})*-?" + _either(_INTL_LETTER, _MARK), _INTL_LETTER) + f"(?:(?:-?{word})*-?{last})?"


def _letters_except(words: tuple[str, ...], longest: int) -> str:
    """1 to `longest` letters that spell none of `words`, down the words' trie: at each prefix the value may end
    (unless the prefix is a word), turn onto a letter no word continues with, or follow a word one letter more."""

    def after(prefix: str) -> str:
        nexts = sorted({word[len(prefix)] for word in words if word.startswith(prefix) and len(word) > len(prefix)})
        others = f"[a-z--[{''.join(nexts)}]]" if nexts else "[a-z]"
        ways = [f"{others}[a-z]{{0,{longest - len(prefix) - 1}}}", *(letter + after(prefix + letter) for letter in nexts)]
        if prefix and prefix not in words:
            ways.append("")
        return _either(*ways)

    return after("")


# Special-use names no mail can reach (RFC 6761, 6762, 7686), as email-validator lists them.
RESERVED_TOP_LEVEL_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
# Kept out by the grammar itself: a second regex per row cost 0.15 CPU-s per 10M rows.
_ASCII_TOP_LEVEL_DOMAIN = _either(_letters_except(RESERVED_TOP_LEVEL_DOMAINS, 63), "xn--[a-z0-9-]{0,58}[a-z]")
_ASCII_DOMAIN = rf"(?:{_ascii_label()}\.)+{_ASCII_TOP_LEVEL_DOMAIN}"
_ASCII_LOCAL_PART = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"

_ATOM = _either(_ATEXT, _INTL_WORD) + _either(_ATEXT, _INTL_WORD, _MARK) + "*"
_LOCAL_PART = rf"{_ATOM}(?:\.{_ATOM})*"
_LABEL = _either(_ascii_label(), _unicode_label(_either("[a-z0-9]", _INTL_LETTER, _MARK)))
_TOP_LEVEL_DOMAIN = _either(_ASCII_TOP_LEVEL_DOMAIN, _unicode_label(_either("[a-z]", _INTL_LETTER, _MARK)))

EMAIL_ADDRESS = rf"^{_LOCAL_PART}@(?:{_LABEL}\.)+{_TOP_LEVEL_DOMAIN}$"
# The ASCII grammar over a raw value in any case with spaces or tabs around it: normalisation lowers its letters and
# removes those, so whatever this matches (within 254 bytes) is valid once normalised.
PADDED_ASCII_EMAIL_ADDRESS = rf"^[ \t]*(?i-u:{_ASCII_LOCAL_PART}@{_ASCII_DOMAIN})[ \t]*$"
