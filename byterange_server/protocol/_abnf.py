"""Grammar pieces that the header-field parsers of this package share (internal to ``protocol/``).

What every parser built from them promises (``protocol/README.md``):

- It takes the field value as a ``str``, as WSGI and the patch decoders hand it over (ISO-8859-1
  decoded, one character per octet), and returns a typed value or raises a
  :mod:`byterange_server.errors` exception whose ``status`` is a 4xx. None of them returns
  ``None`` for malformed input; where HTTP says a recipient *ignores* a bad field (``Range``,
  ``If-Range``) the function says so in its name or returns an explicit marker.
- Leading and trailing OWS (SP / HTAB) around a whole field value is removed before parsing, as
  RFC 9110 §5.5 requires; whitespace anywhere the grammar does not allow it is an error.
- Regular expressions are compiled with ``re.ASCII`` and matched with ``fullmatch``; the ABNF
  each one implements is quoted above it.
- Numbers are ASCII digits only, at most 15 of them (:mod:`.numbers`).
"""

from __future__ import annotations

import re
from typing import Any

import http_sf

from ..errors import MalformedHeaderError

# -- lexical pieces ------------------------------------------------------------------------------

# OWS   = *( SP / HTAB )                                         ; RFC 9110 §5.6.3
OWS = " \t"
# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#       / "~" / DIGIT / ALPHA                                    ; RFC 9110 §5.6.2
# token = 1*tchar
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
TOKEN_RE = re.compile(TOKEN, re.ASCII)
# quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE       ; RFC 9110 §5.6.4
# qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
# quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
# obs-text      = %x80-FF
QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

# DIGIT = %x30-39, one or more; the 15-digit limit is checked by parse_int for a clear message.
DIGITS = r"[0-9]+"
DIGITS_RE = re.compile(DIGITS, re.ASCII)

# word = token / quoted-string; with BWS "=" BWS before it.  Used by Prefer (RFC 7240 §2) and
# Content-Disposition (RFC 6266 §4.1).  An empty value after "=" is tolerated: RFC 7240 says a
# zero-length value means "no value".
# pair = token [ BWS "=" BWS [ word ] ]
PAIR_RE = re.compile(
    rf"(?P<name>{TOKEN})(?:[ \t]*=[ \t]*(?P<value>{TOKEN}|{QUOTED_STRING})?)?", re.ASCII
)
# quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ), for unquoting
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.ASCII | re.DOTALL)


def strip_ows(value: str) -> str:
    return value.strip(OWS)


def skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in OWS:
        pos += 1
    return pos


def unquote(word: str) -> str:
    """The value of a ``token`` or ``quoted-string`` (quotes removed, quoted-pairs resolved)."""
    if word.startswith('"'):
        return _QUOTED_PAIR_RE.sub(r"\1", word[1:-1])
    return word


def split_list(value: str) -> list[str] | None:
    """Split a ``#element`` list whose elements cannot contain a comma.

    RFC 9110 §5.6.1: ``1#element => *( "," OWS ) element *( OWS "," [ OWS element ] )`` --
    empty elements are accepted and skipped.  Returns the non-empty elements (OWS removed), or
    ``None`` when an element contains OWS inside it (which none of the callers' grammars allow).
    """
    out = []
    for element in value.split(","):
        element = strip_ows(element)
        if element:
            if " " in element or "\t" in element:
                return None
            out.append(element)
    return out


def malformed(field: str | None, detail: str, **extra: Any) -> MalformedHeaderError:
    if field is not None:
        extra = {"field": field, **extra}
    return MalformedHeaderError(detail, extra=extra)


# -- Structured Fields (RFC 9651) ----------------------------------------------------------------


def sf_parse(value: str, tltype: str, field: str) -> Any:
    """``http_sf.parse`` with every failure turned into :class:`MalformedHeaderError`."""
    if not value.isascii():
        raise malformed(field, f"{field} is not a valid Structured Field (non-ASCII)")
    try:
        return http_sf.parse(value.encode("ascii"), tltype=tltype)
    except (http_sf.StructuredFieldError, ValueError, OverflowError) as exc:
        raise malformed(field, f"{field} is not a valid Structured Field: {exc}") from None


def is_sf_integer(item: Any) -> bool:
    # bool is a subclass of int: ``?1`` must not pass for the integer 1.
    return type(item) is int
