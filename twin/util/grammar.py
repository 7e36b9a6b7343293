"""Explicit grammars for text from outside (API fields, CLI options, scenario files, dashboard
forms): ASCII only, whole-string matches, no Python conversion run on unchecked text.

Python's own parsers are lenient in ways an identifier must not be: `int()` and `float()` take any
Unicode decimal digits (Arabic-Indic U+0661 U+0662, full-width U+FF11 U+FF12), underscores ('1_2'), a sign and surrounding
Unicode whitespace; `str.isdigit()` is true for digits `int()` refuses ('²'); `str.upper()` and
`lower()` map non-ASCII letters onto ASCII ones ('ß' -> 'SS', long s U+017F -> 'S', the Kelvin sign -> 'k');
`\\d`, `\\w` and `\\s` in a regex without re.ASCII match far beyond ASCII. Every parser here
raises `GrammarError` (a ValueError) with a message that shows the offending text escaped."""

from __future__ import annotations

import math
import re

# Surrounding blanks a person may type around a value: ASCII space and tab only.
BLANKS = " \t"
_DECIMAL = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
# Printable ASCII words: letters, digits, space and the punctuation names use (the comma of
# "North Wales, Merseyside and Cheshire", a DNO area the API must accept by its own name).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,&'()/_+-]{0,79}", re.ASCII)


class GrammarError(ValueError):
    """Text that does not follow its grammar."""


def shown(text: object, limit: int = 40) -> str:
    """`text` as it may appear in an error: escaped (control and non-ASCII characters visible as
    \\x.., \\u..), cut to `limit` characters."""
    s = ascii(text) if isinstance(text, str) else ascii(str(text))
    return s if len(s) <= limit else s[: limit - 4] + "...'"


def parse_decimal(text: str, what: str = "value", *, signed: bool = False) -> int:
    """A whole number written with ASCII digits 0-9 only (at most 20), e.g. '42'; a leading '-'
    only if `signed` (callers check ranges). No '+', underscores, inner blanks or other digits."""
    if not isinstance(text, str):
        raise GrammarError(f"{what}: expected a whole number, got {shown(text)}")
    s = text.strip(BLANKS)
    if not _DECIMAL.fullmatch(s) or (s.startswith("-") and not signed):
        raise GrammarError(f"{what}: expected a whole number, got {shown(text)} (ASCII digits 0-9)")
    return int(s)


def parse_number(text: str, what: str = "value", *, finite: bool = True) -> float:
    """A decimal number in ASCII: optional sign, digits with an optional fraction, optional
    exponent ('1.5', '-2', '.5', '1e3'). No 'nan', 'inf', underscores or non-ASCII digits; an
    exponent past float's range is refused too unless `finite` is False (then it reads as inf)."""
    if not isinstance(text, str):
        raise GrammarError(f"{what}: expected a number, got {shown(text)}")
    s = text.strip(BLANKS)
    if not _NUMBER.fullmatch(s):
        raise GrammarError(f"{what}: expected a number like 1.5, got {shown(text)} (ASCII digits)")
    v = float(s)
    if finite and not math.isfinite(v):
        raise GrammarError(f"{what}: {shown(text)} is out of range")
    return v


def name_key(text: object, what: str = "name") -> str:
    """A name (region, supplier, area, technology...) as a lower-case ASCII key for comparing with
    the known names. Only printable ASCII is accepted, so no non-ASCII letter can fold onto an
    ASCII one and silently name something else."""
    if not isinstance(text, str):
        text = str(text)
    s = text.strip(BLANKS)
    if not _NAME.fullmatch(s):
        raise GrammarError(f"{what}: {shown(text)} is not a name (ASCII letters, digits, spaces and . , & ' ( ) / _ + -)")
    return s.lower()
