"""Fields whose values are parameter lists (sans-IO): ``Prefer``, ``Content-Disposition``, ``Link``.

All three are built of ``token [ "=" ( token / quoted-string ) ]`` parameters separated by
``;`` (RFC 9110 §5.6.6 style): ``Prefer`` (RFC 7240) carries the byte-range PATCH
``transaction`` preference, ``Content-Disposition`` (RFC 6266, RFC 8187) a file name, ``Link``
(RFC 8288) the committed-ranges document. The parsing rules are those of :mod:`._abnf`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal
from urllib.parse import quote
from urllib.parse import unquote_to_bytes

from ._abnf import PAIR_RE
from ._abnf import QUOTED_STRING
from ._abnf import TOKEN
from ._abnf import TOKEN_RE
from ._abnf import malformed
from ._abnf import skip_ows
from ._abnf import strip_ows
from ._abnf import unquote

__all__ = [
    "find_link",
    "format_content_disposition",
    "parse_content_disposition_filename",
    "parse_links",
    "parse_prefer",
    "transaction_preference",
]


# -- Prefer --------------------------------------------------------------------------------------


def parse_prefer(value: str | Iterable[str]) -> dict[str, str | None]:
    """Parse ``Prefer`` (RFC 7240 §2) into ``{name: value}``.

    ::

        Prefer     = 1#preference
        preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
        parameter  = token [ BWS "=" BWS word ]

    Names are lower-cased (case-insensitive); values are kept as sent, unquoted; a preference
    without a value, or with an empty one (``foo=""`` or ``foo=``), maps to ``None``.  The first
    occurrence of a name wins; parameters are ignored.  ``value`` may be one field value or the
    values of several field lines (they form one list).

    :raises MalformedHeaderError: for a syntax error.  ``Prefer`` is only a hint, so a caller
        that wants to ignore a bad one may catch this and use ``{}``.
    """
    values = [value] if isinstance(value, str) else list(value)
    out: dict[str, str | None] = {}
    for text in values:
        text = strip_ows(text)
        pos = 0
        while pos < len(text):
            if text[pos] == ",":
                pos = skip_ows(text, pos + 1)
                continue
            m = PAIR_RE.match(text, pos)
            if m is None:
                raise malformed("Prefer", "Prefer is not a list of preferences")
            name = m["name"].lower()
            word = m["value"]
            if name not in out:
                out[name] = (unquote(word) or None) if word is not None else None
            pos = skip_ows(text, m.end())
            while pos < len(text) and text[pos] == ";":
                pos = skip_ows(text, pos + 1)
                param = PAIR_RE.match(text, pos)
                if param is not None:
                    pos = skip_ows(text, param.end())
            if pos < len(text) and text[pos] != ",":
                raise malformed("Prefer", "Prefer is not a list of preferences")
    return out


def transaction_preference(prefer: dict[str, str | None]) -> Literal["persist", "atomic"]:
    """The ``transaction`` preference of byte-range PATCH: ``atomic`` only when asked for
    (case-insensitively); ``persist`` by default and for any other value.
    """
    value = prefer.get("transaction")
    return "atomic" if value is not None and value.lower() == "atomic" else "persist"


# -- Content-Disposition (RFC 6266) --------------------------------------------------------------

# ext-value   = charset "'" [ language ] "'" value-chars           ; RFC 8187 §3.2.1
# value-chars = *( pct-encoded / attr-char )
# attr-char   = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`"
#             / "|" / "~"
_EXT_VALUE_RE = re.compile(
    r"(?P<charset>[!#$%&+\-^_`{}~0-9A-Za-z]+)'(?P<language>[0-9A-Za-z\-]*)'"
    r"(?P<chars>(?:%[0-9A-Fa-f]{2}|[!#$&+\-.^_`|~0-9A-Za-z])*)",
    re.ASCII,
)
_EXT_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}
# Filenames we store must be printable: no C0 controls, DEL or C1 controls.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"


def parse_content_disposition_filename(value: str) -> str | None:
    """The filename of a ``Content-Disposition`` value, preferring ``filename*``.

    ::

        content-disposition = disposition-type *( OWS ";" OWS disposition-parm )
        disposition-parm    = token OWS "=" OWS ( token / quoted-string )
                            ; filename* takes an RFC 8187 ext-value, unquoted

    ``filename*`` in UTF-8 or ISO-8859-1 wins over ``filename``; one in another charset is
    ignored (RFC 6266 §4.3).  A plain ``filename`` with non-ASCII octets is read as UTF-8 when
    it is valid UTF-8, else as ISO-8859-1.  Returns ``None`` if neither is present or the name
    is empty.
    Directory parts are kept as sent: whoever writes the name to a file system must strip them.

    :raises MalformedHeaderError: for a syntax error, a repeated parameter (RFC 6266 §4.1), a
        bad ``filename*`` encoding, or a name containing control characters.
    """
    field = "Content-Disposition"
    text = strip_ows(value)
    m = TOKEN_RE.match(text)
    if m is None:
        raise malformed(field, "Content-Disposition has no disposition type")
    params: dict[str, tuple[str, bool]] = {}
    pos = skip_ows(text, m.end())
    while pos < len(text):
        if text[pos] != ";":
            raise malformed(field, "Content-Disposition parameters must follow ';'")
        pos = skip_ows(text, pos + 1)
        p = PAIR_RE.match(text, pos)
        if p is None or p["value"] is None:
            raise malformed(field, "Content-Disposition parameter is not 'name=value'")
        name = p["name"].lower()
        if name in params:
            raise malformed(field, f"Content-Disposition repeats the {name} parameter")
        params[name] = (p["value"], p["value"].startswith('"'))
        pos = skip_ows(text, p.end())
    filename: str | None = None
    if "filename*" in params:
        raw, quoted = params["filename*"]
        e = None if quoted else _EXT_VALUE_RE.fullmatch(raw)
        if e is None:
            raise malformed(field, "Content-Disposition filename* is not an RFC 8187 ext-value")
        codec = _EXT_CHARSETS.get(e["charset"].lower())
        if codec is not None:
            try:
                filename = unquote_to_bytes(e["chars"]).decode(codec)
            except UnicodeDecodeError:
                raise malformed(
                    field, "Content-Disposition filename* is not valid UTF-8"
                ) from None
    if filename is None and "filename" in params:
        filename = unquote(params["filename"][0])
        if not filename.isascii():
            # Officially ISO-8859-1, but many clients send raw UTF-8 octets, which arrive here
            # decoded as ISO-8859-1; a valid UTF-8 reading is all but certainly the intended one.
            try:
                filename = filename.encode("latin-1").decode("utf-8")
            except UnicodeError:
                pass
    if filename is not None and _CONTROL_RE.search(filename):
        raise malformed(field, "Content-Disposition filename contains control characters")
    return filename or None


def format_content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A ``Content-Disposition`` value naming ``filename`` (RFC 6266 §4.3, Appendix D).

    ``filename`` is always given as a quoted-string; it is the name itself when that is
    printable ASCII, else an ASCII fallback (other characters replaced by ``_``) followed by
    ``filename*=UTF-8''...`` with the exact name percent-encoded.

    :raises ValueError: for an empty name, one with control characters, or a
        ``disposition`` that is not a token.
    """
    if not filename or _CONTROL_RE.search(filename):
        raise ValueError(f"not a filename to send: {filename!r}")
    if not TOKEN_RE.fullmatch(disposition):
        raise ValueError(f"not a disposition type: {disposition!r}")
    fallback = "".join(c if " " <= c <= "~" else "_" for c in filename)
    escaped = fallback.replace("\\", "\\\\").replace('"', '\\"')
    out = f'{disposition}; filename="{escaped}"'
    if fallback != filename:
        out += "; filename*=UTF-8''" + quote(filename, safe=_ATTR_CHAR_SAFE, encoding="utf-8")
    return out


# -- Link (RFC 8288) -----------------------------------------------------------------------------

# Link       = #link-value                                          ; RFC 8288 §3
# link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
# link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
_LINK_TARGET_RE = re.compile(r"[ \t]*<([^<>\s]*)>", re.ASCII)
_LINK_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*(?P<name>{TOKEN})(?:[ \t]*=[ \t]*(?P<value>{TOKEN}|{QUOTED_STRING}))?",
    re.ASCII,
)
_LINK_SEPARATOR_RE = re.compile(r"[ \t]*(?:,|$)", re.ASCII)


def parse_links(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a ``Link`` value into ``(target, params)`` pairs, in field order.

    ``</files/x/committed-ranges>; rel="committed-ranges"`` →
    ``[("/files/x/committed-ranges", {"rel": "committed-ranges"})]``.  Parameter names are
    lower-cased, quoted values unquoted; a repeated parameter keeps its first value (RFC 8288
    §3.3 says later ``rel`` occurrences are ignored).  Targets are returned as sent: resolve a
    relative one against the request URL.

    :raises MalformedHeaderError: for anything that is not a ``#link-value`` list.
    """
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    text = value
    while pos < len(text):
        sep = _LINK_SEPARATOR_RE.match(text, pos)
        if sep is not None and sep.end() > pos and text[pos:sep.end()].strip(" \t") == ",":
            pos = sep.end()  # an empty list element, which #rule allows
            continue
        target = _LINK_TARGET_RE.match(text, pos)
        if target is None:
            if not strip_ows(text[pos:]):
                break
            raise malformed("Link", "Link value does not start with <URI-Reference>")
        pos = target.end()
        params: dict[str, str] = {}
        while (param := _LINK_PARAM_RE.match(text, pos)) is not None:
            pos = param.end()
            raw = param["value"]
            params.setdefault(param["name"].lower(), unquote(raw) if raw is not None else "")
        end = _LINK_SEPARATOR_RE.match(text, pos)
        if end is None:
            raise malformed("Link", "Link has a malformed parameter")
        pos = end.end()
        out.append((target[1], params))
    return out


def find_link(value: str | None, rel: str) -> str | None:
    """The target of the first link in ``value`` whose ``rel`` includes ``rel``, or ``None``.

    Relation types compare case-insensitively; ``rel`` may hold several, space-separated.

    :raises MalformedHeaderError: if ``value`` is not a valid ``Link`` value.
    """
    if value is None:
        return None
    wanted = rel.lower()
    for target, params in parse_links(value):
        if wanted in params.get("rel", "").lower().split():
            return target
    return None
