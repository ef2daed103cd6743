"""Strict parsers and printers for the header fields of the wire contract (sans-IO).

Every parser here takes the field value as a ``str`` (what WSGI and the patch decoders hand
over: ISO-8859-1 decoded, one character per octet) and either returns a typed value or raises a
:mod:`byterange_server.errors` exception whose ``status`` is a 4xx. None of them returns ``None``
for malformed input; where HTTP says a recipient *ignores* a bad field (``Range``,
``If-Range``) the function says so in its name or returns an explicit marker.

Conventions (see ``protocol/README.md``):

- Byte ranges are half-open ``(start, stop)`` everywhere in this module's results; HTTP's
  inclusive ``first-last`` appears only in the text being parsed or printed.
- Numbers are ASCII digits only (``[0-9]``, never ``str.isdigit``, which accepts ``'١'``) and
  at most 15 of them, the Structured Fields limit (RFC 9651 §3.3.1, edge case E17), so every
  number fits comfortably in a 64-bit integer and a 16-digit value is a 400, not an overflow.
- Leading and trailing OWS (SP / HTAB) around a whole field value is removed before parsing, as
  RFC 9110 §5.5 requires; whitespace anywhere the grammar does not allow it is an error.
- Regular expressions are compiled with ``re.ASCII`` and matched with ``fullmatch``; the ABNF
  each one implements is quoted above it.

Contents: numbers (:func:`parse_int`, :func:`parse_sf_integer`, :func:`parse_sf_boolean`),
write ranges (:class:`ContentRange`, :class:`ContentOffset`, :class:`PartHeader`), read ranges
(:class:`ByteRangeSpec`, :func:`parse_range`, :func:`resolve_ranges`,
:func:`should_reject_ranges`), the ``Committed-Ranges`` field (:func:`format_ranges`,
:func:`parse_committed_ranges`), validators (:class:`ETag`, :func:`parse_etag_list`,
:func:`parse_if_range`, :func:`format_http_date`), ``Prefer`` (:func:`parse_prefer`,
:func:`transaction_preference`), digests (:func:`parse_digest_field`, :func:`pick_digest`,
:func:`format_digest`) and ``Content-Disposition``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Literal
from urllib.parse import quote
from urllib.parse import unquote_to_bytes

import http_sf

from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import MissingRangeError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.protocol.events import Fields

__all__ = [
    "IGNORE_RANGE",
    "MAX_DIGITS",
    "MAX_OVERLAPPING_RANGES",
    "MAX_RANGES",
    "SUPPORTED_DIGESTS",
    "ByteRangeSpec",
    "ContentOffset",
    "ContentRange",
    "ETag",
    "IfRange",
    "PartHeader",
    "format_content_disposition",
    "format_digest",
    "format_http_date",
    "format_range",
    "find_link",
    "format_ranges",
    "parse_committed_ranges",
    "parse_content_disposition_filename",
    "parse_digest_field",
    "parse_etag_list",
    "parse_if_range",
    "parse_int",
    "parse_links",
    "parse_prefer",
    "parse_range",
    "parse_sf_boolean",
    "parse_sf_integer",
    "pick_digest",
    "resolve_ranges",
    "should_reject_ranges",
    "strong_match",
    "transaction_preference",
    "weak_match",
]

#: Most digits any number on the wire may have (RFC 9651 sf-integer limit; E17).
MAX_DIGITS = 15

#: :func:`should_reject_ranges` policy: most ranges one ``Range`` field may ask for ...
MAX_RANGES = 128
#: ... and most ranges of it that may overlap another one (RFC 9110 §14.2: "more than two").
MAX_OVERLAPPING_RANGES = 2

# -- shared lexical pieces -----------------------------------------------------------------------

# OWS   = *( SP / HTAB )                                         ; RFC 9110 §5.6.3
_OWS_CHARS = " \t"
# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#       / "~" / DIGIT / ALPHA                                    ; RFC 9110 §5.6.2
# token = 1*tchar
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN, re.ASCII)
# quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE       ; RFC 9110 §5.6.4
# qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
# quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
# obs-text      = %x80-FF
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

# DIGIT = %x30-39, one or more; the 15-digit limit is checked by parse_int for a clear message.
_DIGITS = r"[0-9]+"
_DIGITS_RE = re.compile(_DIGITS, re.ASCII)

# word = token / quoted-string; with BWS "=" BWS before it.  Used by Prefer (RFC 7240 §2) and
# Content-Disposition (RFC 6266 §4.1).  An empty value after "=" is tolerated: RFC 7240 says a
# zero-length value means "no value".
# pair = token [ BWS "=" BWS [ word ] ]
_PAIR_RE = re.compile(
    rf"(?P<name>{_TOKEN})(?:[ \t]*=[ \t]*(?P<value>{_TOKEN}|{_QUOTED_STRING})?)?", re.ASCII
)
# quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ), for unquoting
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.ASCII | re.DOTALL)


def _strip_ows(value: str) -> str:
    return value.strip(_OWS_CHARS)


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _OWS_CHARS:
        pos += 1
    return pos


def _unquote(word: str) -> str:
    """The value of a ``token`` or ``quoted-string`` (quotes removed, quoted-pairs resolved)."""
    if word.startswith('"'):
        return _QUOTED_PAIR_RE.sub(r"\1", word[1:-1])
    return word


def _split_list(value: str) -> list[str] | None:
    """Split a ``#element`` list whose elements cannot contain a comma.

    RFC 9110 §5.6.1: ``1#element => *( "," OWS ) element *( OWS "," [ OWS element ] )`` --
    empty elements are accepted and skipped.  Returns the non-empty elements (OWS removed), or
    ``None`` when an element contains OWS inside it (which none of the callers' grammars allow).
    """
    out = []
    for element in value.split(","):
        element = _strip_ows(element)
        if element:
            if " " in element or "\t" in element:
                return None
            out.append(element)
    return out


def _malformed(field: str | None, detail: str, **extra: Any) -> MalformedHeaderError:
    if field is not None:
        extra = {"field": field, **extra}
    return MalformedHeaderError(detail, extra=extra)


# -- numbers -------------------------------------------------------------------------------------


def parse_int(text: str, *, field: str | None = None) -> int:
    """Parse a non-negative decimal number: ASCII digits only, 1 to 15 of them.

    No sign, no whitespace, no ``_`` separators, no non-ASCII digits (``int()`` would accept
    all of those).  Leading zeros are allowed (``1*DIGIT``) but count towards the 15.

    :param field: the field name, for the error's detail and ``extra``.
    :raises MalformedHeaderError: for anything else, including a 16th digit (E17).
    """
    where = f" in {field}" if field else ""
    if not _DIGITS_RE.fullmatch(text):
        raise _malformed(field, f"Not a decimal number{where}")
    if len(text) > MAX_DIGITS:
        raise _malformed(
            field,
            f"Number{where} has more than {MAX_DIGITS} digits",
            digits=len(text),
            **{"max-digits": MAX_DIGITS},
        )
    return int(text)


def _sf_parse(value: str, tltype: str, field: str) -> Any:
    """``http_sf.parse`` with every failure turned into :class:`MalformedHeaderError`."""
    if not value.isascii():
        raise _malformed(field, f"{field} is not a valid Structured Field (non-ASCII)")
    try:
        return http_sf.parse(value.encode("ascii"), tltype=tltype)
    except (http_sf.StructuredFieldError, ValueError, OverflowError) as exc:
        raise _malformed(field, f"{field} is not a valid Structured Field: {exc}") from None


def _is_sf_integer(item: Any) -> bool:
    # bool is a subclass of int: ``?1`` must not pass for the integer 1.
    return type(item) is int


def parse_sf_integer(value: str, *, field: str = "Structured Field") -> int:
    """Parse an sf-integer Item that must be non-negative (``Upload-Offset``, ...).

    The 15-digit limit is the Structured Fields one.  Parameters are ignored, as RFC 9651 lets
    recipients do with ones they do not know.

    :raises MalformedHeaderError: if the value is not an Item, not an Integer, or negative.
    """
    item, _params = _sf_parse(value, "item", field)
    if not _is_sf_integer(item):
        raise _malformed(field, f"{field} is not an Integer")
    if item < 0:
        raise _malformed(field, f"{field} is negative")
    return int(item)


def parse_sf_boolean(value: str, *, field: str = "Structured Field") -> bool:
    """Parse an sf-boolean Item (``?0`` / ``?1``, e.g. ``Upload-Complete``); parameters ignored.

    :raises MalformedHeaderError: if the value is not an Item or not a Boolean.
    """
    item, _params = _sf_parse(value, "item", field)
    if type(item) is not bool:
        raise _malformed(field, f"{field} is not a Boolean")
    return item


# -- Content-Range -------------------------------------------------------------------------------

# Content-Range = range-unit SP ( range-resp / unsatisfied-range )   ; RFC 9110 §14.4
# range-unit    = token                                              ; case-insensitive
# (the unit is split off first, so that a non-bytes unit is a 422 whatever follows it)
_CR_UNIT_RE = re.compile(rf"({_TOKEN}) (.*)", re.ASCII | re.DOTALL)
# range-resp        = incl-range "/" ( complete-length / "*" )
# incl-range        = first-pos "-" last-pos
# unsatisfied-range = "*/" complete-length
# first-pos = last-pos = complete-length = 1*DIGIT
_CR_BYTES_RE = re.compile(
    rf"(?:(?P<first>{_DIGITS})-(?P<last>{_DIGITS})/(?P<length>{_DIGITS}|\*)"
    rf"|\*/(?P<unsatisfied>{_DIGITS}))",
    re.ASCII,
)


@dataclass(frozen=True)
class ContentRange:
    """A ``Content-Range`` value in bytes: ``[start, stop)`` of a representation of ``length``.

    Three forms (RFC 9110 §14.4; byte-range PATCH §"Content-Range")::

        bytes 2-5/12    ContentRange(start=2, stop=6, length=12)
        bytes 0-11/*    ContentRange(start=0, stop=12, length=None)
        bytes */1000    ContentRange(start=None, stop=None, length=1000)   # unsatisfied-range

    Invariants (checked on construction; a violation is a programming error,
    ``ValueError``): either ``start`` and ``stop`` are both ``None`` and ``length`` is known,
    or ``0 <= start < stop`` and ``length`` is ``None`` or at least ``stop``.
    """

    start: int | None
    stop: int | None
    length: int | None

    def __post_init__(self) -> None:
        if self.start is None or self.stop is None:
            if self.start is not None or self.stop is not None or self.length is None:
                raise ValueError(f"not a content range: {self!r}")
        elif not 0 <= self.start < self.stop:
            raise ValueError(f"not a non-empty byte range: [{self.start}, {self.stop})")
        if self.length is not None:
            if self.length < 0 or (self.stop is not None and self.length < self.stop):
                raise ValueError(f"complete length {self.length} too small for {self!r}")

    @classmethod
    def unsatisfied(cls, length: int) -> ContentRange:
        """``bytes */length``: the form of a 416 response and of a length-only write."""
        return cls(None, None, length)

    @property
    def first(self) -> int | None:
        """Inclusive first-pos, or ``None`` for ``*/length``."""
        return self.start

    @property
    def last(self) -> int | None:
        """Inclusive last-pos, or ``None`` for ``*/length``."""
        return None if self.stop is None else self.stop - 1

    @property
    def is_unsatisfied(self) -> bool:
        """True for the ``bytes */length`` form (no range, only a complete length)."""
        return self.start is None

    @classmethod
    def parse(cls, value: str) -> ContentRange:
        """Parse a ``Content-Range`` field value.

        The range unit is compared case-insensitively (RFC 9110 §14.1).  The legacy
        indeterminate-end form ``bytes 100-/*`` (dropped in draft-ietf-httpapi-patch-byterange-01
        in favour of ``Content-Offset``) is rejected like any other syntax error.

        :raises UnsupportedRangeUnitError: if the unit is a valid token other than ``bytes``.
        :raises MalformedHeaderError: for any syntax error (extra spaces, signs, ``*/*``, a
            number over 15 digits, ...), ``last-pos < first-pos``, or
            ``complete-length <= last-pos``.
        """
        field = "Content-Range"
        m = _CR_UNIT_RE.fullmatch(_strip_ows(value))
        if m is None:
            raise _malformed(field, "Content-Range is not 'unit first-last/length'")
        unit, rest = m.groups()
        if unit.lower() != "bytes":
            raise UnsupportedRangeUnitError(
                "Content-Range unit is not bytes", extra={"field": field, "unit": unit[:40]}
            )
        r = _CR_BYTES_RE.fullmatch(rest)
        if r is None:
            raise _malformed(
                field, "Content-Range is not 'bytes first-last/length', 'bytes first-last/*' "
                "or 'bytes */length'"
            )
        if r["unsatisfied"] is not None:
            return cls(None, None, parse_int(r["unsatisfied"], field=field))
        first = parse_int(r["first"], field=field)
        last = parse_int(r["last"], field=field)
        length = None if r["length"] == "*" else parse_int(r["length"], field=field)
        if last < first:
            raise _malformed(
                field, "Content-Range last-pos is before first-pos",
                **{"first-pos": first, "last-pos": last},
            )
        if length is not None and length <= last:
            raise _malformed(
                field, "Content-Range complete-length is not greater than last-pos",
                **{"last-pos": last, "complete-length": length},
            )
        return cls(first, last + 1, length)

    def format(self) -> str:
        """The canonical field value: ``bytes 2-5/12``, ``bytes 0-11/*`` or ``bytes */1000``."""
        length = "*" if self.length is None else str(self.length)
        if self.start is None or self.stop is None:
            return f"bytes */{length}"
        return f"bytes {self.start}-{self.stop - 1}/{length}"


# -- Content-Offset ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentOffset:
    """A ``Content-Offset`` value: the part's bytes start at ``offset``; end unknown.

    Byte-range PATCH (draft-ietf-httpapi-patch-byterange-01 and later)::

        Content-Offset = sf-item     ; an sf-integer: the number of bytes skipped
          params: unit=<token>       ; absent = bytes
                  complete-length=<sf-integer>   ; absent = "*"

    ``Content-Offset: 600; complete-length=1000`` → ``ContentOffset(offset=600, length=1000)``.
    """

    offset: int
    length: int | None = None

    def __post_init__(self) -> None:
        if self.offset < 0 or (self.length is not None and self.length < self.offset):
            raise ValueError(f"not a content offset: {self!r}")

    @classmethod
    def parse(cls, value: str) -> ContentOffset:
        """Parse a ``Content-Offset`` field value.  Unknown parameters are ignored.

        :raises UnsupportedRangeUnitError: if a ``unit`` parameter is present and is not the
            token ``bytes`` (compared case-insensitively, like a range-unit).
        :raises MalformedHeaderError: if the value is not an sf-item, the offset or
            ``complete-length`` is not a non-negative sf-integer, or the offset lies beyond
            ``complete-length``.
        """
        field = "Content-Offset"
        item, params = _sf_parse(value, "item", field)
        if not _is_sf_integer(item) or item < 0:
            raise _malformed(field, "Content-Offset is not a non-negative Integer")
        if "unit" in params:
            unit = params["unit"]
            if not isinstance(unit, http_sf.Token) or str(unit).lower() != "bytes":
                raise UnsupportedRangeUnitError(
                    "Content-Offset unit is not bytes",
                    extra={"field": field, "unit": str(unit)[:40]},
                )
        length = params.get("complete-length")
        if length is not None:
            if not _is_sf_integer(length) or length < 0:
                raise _malformed(
                    field, "Content-Offset complete-length is not a non-negative Integer"
                )
            if length < item:
                raise _malformed(
                    field, "Content-Offset lies beyond its complete-length",
                    offset=item, **{"complete-length": length},
                )
        return cls(int(item), None if length is None else int(length))

    def format(self) -> str:
        """The canonical field value: ``600`` or ``600;complete-length=1000``."""
        params = {} if self.length is None else {"complete-length": self.length}
        return http_sf.ser((self.offset, params))


# -- one part's fields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PartHeader:
    """Where one part of a patch writes, from its field block (or a partial PUT's headers).

    ``start``/``stop`` are half-open; ``length`` is the complete length the part declares (a
    hint, or the length-setting of ``*/L``), ``None`` when it says ``*`` or nothing.

    ::

        part fields                                    start  stop   length
        Content-Range: bytes 2-5/12                    2      6      12
        Content-Range: bytes */12                      None   None   12
        Content-Offset: 600                            600    None   None
        Content-Offset: 600 + Content-Length: 5        600    605    None
        Content-Offset: 600;complete-length=1000       600    None   1000

    ``fields`` keeps the whole field block, so callers can read ``Content-Type``,
    ``Repr-Digest`` and the like of the part.
    """

    start: int | None
    stop: int | None
    length: int | None
    fields: Fields = ()

    def __post_init__(self) -> None:
        if self.start is None:
            if self.stop is not None or self.length is None:
                raise ValueError(f"not a part header: {self!r}")
        elif self.start < 0 or (self.stop is not None and self.stop < self.start):
            raise ValueError(f"not a part header: {self!r}")

    @property
    def is_length_only(self) -> bool:
        """True for ``Content-Range: bytes */L``: sets the length, carries no bytes."""
        return self.start is None

    def expected_size(self) -> int | None:
        """Bytes the part body should carry: ``stop - start``; 0 for ``*/L``; ``None`` when
        the end is unknown (``Content-Offset`` without ``Content-Length``: read to the end of
        the part).
        """
        if self.start is None:
            return 0
        if self.stop is None:
            return None
        return self.stop - self.start

    def get_all(self, name: str) -> list[str]:
        """Every value of the field ``name`` (case-insensitive) in the part, in order."""
        name = name.lower()
        return [value for key, value in self.fields if key == name]

    @classmethod
    def from_fields(cls, fields: Fields) -> PartHeader:
        """Interpret one part's field lines (lower-cased names, as the decoders produce them).

        :raises MissingRangeError: if there is neither ``Content-Range`` nor
            ``Content-Offset`` (422; E6).
        :raises MalformedHeaderError: for two ``Content-Range`` (or two ``Content-Offset``,
            or two ``Content-Length``) fields, both ``Content-Range`` and ``Content-Offset``,
            any unparsable one, a ``Content-Length`` that differs from the range's length
            (E8; ``extra`` has both), a non-zero ``Content-Length`` on ``*/L``, or a
            ``Content-Offset`` part that would end past its ``complete-length``.
        :raises UnsupportedRangeUnitError: for a unit other than ``bytes`` (422; E6).
        """
        ranges = [value for name, value in fields if name == "content-range"]
        offsets = [value for name, value in fields if name == "content-offset"]
        lengths = [value for name, value in fields if name == "content-length"]
        if not ranges and not offsets:
            raise MissingRangeError("Part has neither Content-Range nor Content-Offset")
        if len(ranges) + len(offsets) > 1:
            raise _malformed(
                None, "Part must have exactly one Content-Range or Content-Offset field",
                **{"content-range-fields": len(ranges), "content-offset-fields": len(offsets)},
            )
        if len(lengths) > 1:
            raise _malformed("Content-Length", "Part has more than one Content-Length field")
        content_length = (
            parse_int(_strip_ows(lengths[0]), field="Content-Length") if lengths else None
        )
        if ranges:
            return cls._from_content_range(
                ContentRange.parse(ranges[0]), content_length, tuple(fields)
            )
        offset = ContentOffset.parse(offsets[0])
        stop = None if content_length is None else offset.offset + content_length
        if stop is not None and offset.length is not None and stop > offset.length:
            raise _malformed(
                "Content-Offset", "Part would end past its complete-length",
                offset=offset.offset, **{"content-length": content_length,
                                         "complete-length": offset.length},
            )
        return cls(offset.offset, stop, offset.length, tuple(fields))

    @classmethod
    def _from_content_range(
        cls, content_range: ContentRange, content_length: int | None, fields: Fields
    ) -> PartHeader:
        if content_range.start is None or content_range.stop is None:
            if content_length:
                raise _malformed(
                    "Content-Length", "A 'bytes */length' part must have no content",
                    **{"content-length": content_length, "range-length": 0},
                )
            return cls(None, None, content_range.length, fields)
        range_length = content_range.stop - content_range.start
        if content_length is not None and content_length != range_length:
            raise _malformed(
                "Content-Length", "Content-Length differs from the length of the Content-Range",
                **{"content-length": content_length, "range-length": range_length},
            )
        return cls(content_range.start, content_range.stop, content_range.length, fields)

    @classmethod
    def from_request_headers(
        cls, content_range: str | None, content_length: int | None
    ) -> PartHeader:
        """Interpret the request headers of a partial ``PUT`` (RFC 9110 §14.5).

        :param content_range: the request's ``Content-Range`` value, or ``None`` if absent.
        :param content_length: the request's ``Content-Length`` as the HTTP layer parsed it,
            or ``None`` (chunked body).  With ``None`` the caller must itself check that the
            body carries exactly :meth:`expected_size` bytes (in particular none for ``*/L``).
        :raises MissingRangeError: if ``content_range`` is ``None``.
        :raises MalformedHeaderError: for a bad ``Content-Range``, a ``Content-Length`` that
            differs from the range's length, or a non-empty body with ``bytes */L`` (E15).
        :raises UnsupportedRangeUnitError: for a unit other than ``bytes``.
        """
        if content_range is None:
            raise MissingRangeError("PUT without Content-Range")
        if content_length is not None and content_length < 0:
            raise _malformed("Content-Length", "Content-Length is negative")
        fields: Fields = (("content-range", content_range),)
        if content_length is not None:
            fields += (("content-length", str(content_length)),)
        return cls._from_content_range(ContentRange.parse(content_range), content_length, fields)


# -- Range (downloads) ---------------------------------------------------------------------------

# ranges-specifier = range-unit "=" range-set                      ; RFC 9110 §14.1
_RANGE_UNIT_RE = re.compile(rf"({_TOKEN})=(.*)", re.ASCII | re.DOTALL)
# range-spec   = int-range / suffix-range / other-range            ; RFC 9110 §14.1.1
# int-range    = first-pos "-" [ last-pos ]
# suffix-range = "-" suffix-length
_RANGE_SPEC_RE = re.compile(
    rf"(?P<first>{_DIGITS})-(?P<last>{_DIGITS})?|-(?P<suffix>{_DIGITS})", re.ASCII
)


@dataclass(frozen=True)
class ByteRangeSpec:
    """One ``range-spec`` of a ``Range`` field, inclusive as on the wire.

    ``ByteRangeSpec(first=0, last=99)`` is ``0-99``, ``ByteRangeSpec(first=200)`` is ``200-``
    (to the end), ``ByteRangeSpec(suffix=500)`` is ``-500`` (the last 500 bytes).  Exactly one
    of ``first`` and ``suffix`` is set; ``last`` only with ``first`` and never below it.
    """

    first: int | None = None
    last: int | None = None
    suffix: int | None = None

    def __post_init__(self) -> None:
        if self.suffix is not None:
            ok = self.first is None and self.last is None and self.suffix >= 0
        else:
            ok = self.first is not None and self.first >= 0 and (
                self.last is None or self.last >= self.first
            )
        if not ok:
            raise ValueError(f"not a byte range-spec: {self!r}")

    @property
    def is_suffix(self) -> bool:
        """True for ``-N`` (the last N bytes)."""
        return self.suffix is not None

    def format(self) -> str:
        """``0-99``, ``200-`` or ``-500``."""
        if self.suffix is not None:
            return f"-{self.suffix}"
        return f"{self.first}-{'' if self.last is None else self.last}"


def parse_range(value: str) -> list[ByteRangeSpec] | None:
    """Parse a ``Range`` request field: ``bytes=0-99,200-,-500``.

    Never raises: RFC 9110 §14.2 lets a server ignore a ``Range`` it does not understand, so
    ``None`` means "ignore this field and answer as if it were absent".  That is returned for a
    unit other than ``bytes`` (case-insensitive), any syntax error, an ``int-range`` with
    ``last-pos < first-pos`` (invalid per §14.1.1), and numbers of more than 15 digits (project
    rule).  Empty list elements are skipped (``bytes=0-1,,5-6``); at least one range is needed.
    """
    m = _RANGE_UNIT_RE.fullmatch(_strip_ows(value))
    if m is None or m[1].lower() != "bytes":
        return None
    elements = _split_list(m[2])
    if not elements:
        return None
    specs = []
    for element in elements:
        r = _RANGE_SPEC_RE.fullmatch(element)
        if r is None:
            return None
        numbers = [r[name] for name in ("first", "last", "suffix") if r[name] is not None]
        if any(len(number) > MAX_DIGITS for number in numbers):
            return None
        if r["suffix"] is not None:
            specs.append(ByteRangeSpec(suffix=int(r["suffix"])))
            continue
        first = int(r["first"])
        last = None if r["last"] is None else int(r["last"])
        if last is not None and last < first:
            return None
        specs.append(ByteRangeSpec(first=first, last=last))
    return specs


def format_range(specs: Iterable[ByteRangeSpec]) -> str:
    """A ``Range`` field value for ``specs``: ``bytes=0-99,200-,-500`` (for the client).

    :raises ValueError: if ``specs`` is empty.
    """
    text = ",".join(spec.format() for spec in specs)
    if not text:
        raise ValueError("a Range needs at least one range-spec")
    return f"bytes={text}"


def resolve_ranges(specs: Iterable[ByteRangeSpec], size: int) -> list[tuple[int, int]]:
    """The satisfiable ranges of ``specs`` against ``size`` bytes, half-open, in request order.

    RFC 9110 §14.1.1-§14.1.2: an ``int-range`` is satisfiable when ``first < size`` and its
    ``last`` is clipped to ``size - 1``; a suffix is satisfiable when non-zero and covers
    ``[max(0, size - n), size)``.  Overlapping or duplicate ranges are kept as asked (see
    :func:`should_reject_ranges`); nothing is coalesced.

    Every result satisfies ``0 <= start < stop <= size``.  An empty list means none is
    satisfiable (the caller answers 416 with ``Content-Range: bytes */size``).  For
    ``size == 0`` the list is always empty: RFC 9110 calls a non-zero suffix satisfiable there,
    but a 206 cannot describe zero bytes, so a caller may answer 200 with the empty
    representation instead of 416 (ignoring ``Range`` is always allowed).

    :raises ValueError: if ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"negative size: {size}")
    out = []
    for spec in specs:
        if spec.suffix is not None:
            if spec.suffix == 0 or size == 0:
                continue
            out.append((max(0, size - spec.suffix), size))
            continue
        assert spec.first is not None
        if spec.first >= size:
            continue
        stop = size if spec.last is None else min(spec.last + 1, size)
        out.append((spec.first, stop))
    return out


def should_reject_ranges(resolved: Sequence[tuple[int, int]]) -> bool:
    """Policy (RFC 9110 §14.2 "MAY ... reject"): is this set of ranges a denial-of-service risk?

    True when there are more than :data:`MAX_RANGES` (128) ranges, or when more than
    :data:`MAX_OVERLAPPING_RANGES` (2) of them overlap at least one other range (so a single
    overlapping pair is tolerated, ``0-99,50-149,100-199`` is not).  Ranges that only touch do
    not overlap.  The caller answers 416.
    """
    if len(resolved) > MAX_RANGES:
        return True
    ordered = sorted(resolved)
    overlapping = 0
    reach = -1  # highest stop among the ranges before the current one in start order
    for i, (start, stop) in enumerate(ordered):
        overlaps_earlier = start < reach
        overlaps_later = i + 1 < len(ordered) and ordered[i + 1][0] < stop
        if overlaps_earlier or overlaps_later:
            overlapping += 1
        reach = max(reach, stop)
    return overlapping > MAX_OVERLAPPING_RANGES


# -- Committed-Ranges ----------------------------------------------------------------------------

# Committed-Ranges = ranges-specifier / "none"        ; project field, PROTOCOL.md §4
# ranges-specifier = range-unit "=" range-set          ; with only first-pos "-" last-pos specs
_INCL_RANGE_RE = re.compile(rf"({_DIGITS})-({_DIGITS})", re.ASCII)


def format_ranges(extents: Iterable[tuple[int, int]]) -> str:
    """The ``Committed-Ranges`` value of half-open ``extents``, in the order given.

    ``[(0, 1048576), (3145728, 4194304)]`` → ``bytes=0-1048575,3145728-4194303``; ``[]`` →
    ``none``.  The result is a valid RFC 9110 ``ranges-specifier``.

    :raises ValueError: for an empty or negative extent.
    """
    parts = []
    for start, stop in extents:
        if not 0 <= start < stop:
            raise ValueError(f"not a non-empty extent: [{start}, {stop})")
        parts.append(f"{start}-{stop - 1}")
    return "bytes=" + ",".join(parts) if parts else "none"


def parse_committed_ranges(value: str) -> list[tuple[int, int]]:
    """Parse a ``Committed-Ranges`` value back into half-open extents, in field order.

    ``none`` (case-insensitive) is the empty list.  Only ``first-last`` specs are valid.

    :raises UnsupportedRangeUnitError: for a unit other than ``bytes``.
    :raises MalformedHeaderError: for any syntax error, ``last < first`` or a number over 15
        digits.
    """
    field = "Committed-Ranges"
    value = _strip_ows(value)
    if value.lower() == "none":
        return []
    m = _RANGE_UNIT_RE.fullmatch(value)
    if m is None:
        raise _malformed(field, "Committed-Ranges is not 'bytes=first-last,...' or 'none'")
    if m[1].lower() != "bytes":
        raise UnsupportedRangeUnitError(
            "Committed-Ranges unit is not bytes", extra={"field": field, "unit": m[1][:40]}
        )
    elements = _split_list(m[2])
    if elements is None:
        raise _malformed(field, "Committed-Ranges has whitespace inside a range")
    if not elements:
        raise _malformed(field, "Committed-Ranges has no range")
    out = []
    for element in elements:
        r = _INCL_RANGE_RE.fullmatch(element)
        if r is None:
            raise _malformed(field, "Committed-Ranges element is not 'first-last'")
        first = parse_int(r[1], field=field)
        last = parse_int(r[2], field=field)
        if last < first:
            raise _malformed(
                field, "Committed-Ranges last-pos is before first-pos",
                **{"first-pos": first, "last-pos": last},
            )
        out.append((first, last + 1))
    return out


# -- Link (RFC 8288) -----------------------------------------------------------------------------

# Link       = #link-value                                          ; RFC 8288 §3
# link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
# link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
_LINK_TARGET_RE = re.compile(r"[ \t]*<([^<>\s]*)>", re.ASCII)
_LINK_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*(?P<name>{_TOKEN})(?:[ \t]*=[ \t]*(?P<value>{_TOKEN}|{_QUOTED_STRING}))?",
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
            if not _strip_ows(text[pos:]):
                break
            raise _malformed("Link", "Link value does not start with <URI-Reference>")
        pos = target.end()
        params: dict[str, str] = {}
        while (param := _LINK_PARAM_RE.match(text, pos)) is not None:
            pos = param.end()
            raw = param["value"]
            params.setdefault(param["name"].lower(), _unquote(raw) if raw is not None else "")
        end = _LINK_SEPARATOR_RE.match(text, pos)
        if end is None:
            raise _malformed("Link", "Link has a malformed parameter")
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


# -- entity tags and dates -----------------------------------------------------------------------

# entity-tag = [ weak ] opaque-tag                    ; RFC 9110 §8.8.3
# weak       = %s"W/"                                 ; case-sensitive
# opaque-tag = DQUOTE *etagc DQUOTE
# etagc      = %x21 / %x23-7E / obs-text
_ETAGC = r"[\x21\x23-\x7e\x80-\xff]"
_ETAG_RE = re.compile(rf'(W/)?"({_ETAGC}*)"', re.ASCII)
_ETAGC_RE = re.compile(rf"{_ETAGC}*", re.ASCII)


@dataclass(frozen=True)
class ETag:
    """An entity tag: ``opaque`` is the text between the quotes; ``weak`` for ``W/"..."``."""

    opaque: str
    weak: bool = False

    def __post_init__(self) -> None:
        if not _ETAGC_RE.fullmatch(self.opaque):
            raise ValueError(f"not an opaque-tag: {self.opaque!r}")

    @classmethod
    def parse(cls, value: str) -> ETag:
        """Parse one ``entity-tag`` (an ``ETag`` field value).

        :raises MalformedHeaderError: if ``value`` is not ``"..."`` or ``W/"..."``.
        """
        m = _ETAG_RE.fullmatch(_strip_ows(value))
        if m is None:
            raise _malformed("ETag", "Not an entity-tag")
        return cls(m[2], weak=m[1] is not None)

    def format(self) -> str:
        """``"opaque"`` or ``W/"opaque"``."""
        return f'{"W/" if self.weak else ""}"{self.opaque}"'


def parse_etag_list(value: str, *, field: str = "If-Match") -> list[ETag] | Literal["*"]:
    """Parse ``If-Match`` / ``If-None-Match``: ``"*"`` or a list of entity tags.

    ``If-Match = "*" / #entity-tag`` (RFC 9110 §13.1.1).  Empty list elements are skipped, so an
    empty value is the empty list (which matches nothing).  Commas may appear inside an
    opaque-tag, so the list is scanned tag by tag rather than split.

    :raises MalformedHeaderError: for anything else (``*`` mixed with tags, lower-case ``w/``,
        unquoted tags, ...).
    """
    text = _strip_ows(value)
    if text == "*":
        return "*"
    tags: list[ETag] = []
    pos = 0
    expect_tag = True
    while pos < len(text):
        if text[pos] == ",":
            pos = _skip_ows(text, pos + 1)
            expect_tag = True
            continue
        m = _ETAG_RE.match(text, pos)
        if m is None or not expect_tag:
            raise _malformed(field, f"{field} is not '*' or a list of entity-tags")
        tags.append(ETag(m[2], weak=m[1] is not None))
        pos = _skip_ows(text, m.end())
        expect_tag = False
    return tags


def strong_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both strong and the same opaque-tag."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: the same opaque-tag, weakness ignored."""
    return a.opaque == b.opaque


class IfRange(enum.Enum):
    """Marker returned by :func:`parse_if_range` for a value that is neither validator."""

    IGNORE_RANGE = "ignore-range"

    def __bool__(self) -> bool:
        return False


#: :func:`parse_if_range` result for an invalid ``If-Range``: falsy, like ``None``.  The
#: condition is then false and the caller ignores ``Range`` (sends 200 with everything).
IGNORE_RANGE = IfRange.IGNORE_RANGE

# Fixed English names: calendar.day_abbr / month_abbr follow the C locale and must not be used.
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: i for i, name in enumerate(_MONTH_NAMES, start=1)}
# HTTP-date    = IMF-fixdate / obs-date                                 ; RFC 9110 §5.6.7
# IMF-fixdate  = day-name "," SP date1 SP time-of-day SP GMT
#   day-name = %s"Mon" / ... ; date1 = day SP month SP year ; day = 2DIGIT ; year = 4DIGIT
#   time-of-day = hour ":" minute ":" second ; GMT = %s"GMT"
_IMF_FIXDATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<day>[0-9]{2}) (?P<month>[A-Z][a-z]{2}) "
    r"(?P<year>[0-9]{4}) (?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}) GMT",
    re.ASCII,
)
# rfc850-date  = day-name-l "," SP date2 SP time-of-day SP GMT
#   day-name-l = %s"Monday" / ... ; date2 = day "-" month "-" 2DIGIT
_RFC850_DATE_RE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"(?P<day>[0-9]{2})-(?P<month>[A-Z][a-z]{2})-(?P<year>[0-9]{2}) "
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}) GMT",
    re.ASCII,
)
# asctime-date = day-name SP date3 SP time-of-day SP year
#   date3 = month SP ( 2DIGIT / ( SP DIGIT ) )
_ASCTIME_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<month>[A-Z][a-z]{2}) (?P<day>[0-9]{2}| [0-9]) "
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}) (?P<year>[0-9]{4})",
    re.ASCII,
)


def _parse_http_date(value: str, now: datetime | None = None) -> datetime | None:
    """An aware UTC datetime for any of the three HTTP-date forms, else ``None``."""
    for regex in (_IMF_FIXDATE_RE, _RFC850_DATE_RE, _ASCTIME_DATE_RE):
        m = regex.fullmatch(value)
        if m is not None:
            break
    else:
        return None
    month = _MONTHS.get(m["month"])
    if month is None:
        return None
    year = int(m["year"])
    if regex is _RFC850_DATE_RE:
        # RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past.
        this_year = (now or datetime.now(timezone.utc)).year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    hour, minute, second = (int(part) for part in m["time"].split(":"))
    try:
        return datetime(year, month, int(m["day"]), hour, minute, second, tzinfo=timezone.utc)
    except ValueError:  # 31 Feb, 25:00:00, year 0000, a leap second ...
        return None


def parse_if_range(value: str, *, now: datetime | None = None) -> ETag | datetime | IfRange:
    """Parse ``If-Range = entity-tag / HTTP-date`` (RFC 9110 §13.1.5).

    Returns an :class:`ETag` (possibly weak: a weak tag never strongly matches, so the
    condition is false, as the RFC wants), an aware UTC :class:`~datetime.datetime`, or
    :data:`IGNORE_RANGE` -- falsy -- when the value is neither.  Never raises: an invalid
    ``If-Range`` makes the condition false, and the caller then ignores ``Range``.  Dates are
    parsed strictly (IMF-fixdate, rfc850-date, asctime-date only).

    :param now: the current time, used only for the two-digit years of rfc850-date
        (default: the clock).
    """
    text = _strip_ows(value)
    if text.startswith(('"', 'W/"')):
        m = _ETAG_RE.fullmatch(text)
        return IGNORE_RANGE if m is None else ETag(m[2], weak=m[1] is not None)
    date = _parse_http_date(text, now)
    return IGNORE_RANGE if date is None else date


def format_http_date(moment: datetime) -> str:
    """IMF-fixdate of ``moment``: ``Sun, 06 Nov 1994 08:49:37 GMT`` (fractions dropped).

    A naive datetime is taken as UTC; an aware one is converted to UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    utc = moment.astimezone(timezone.utc)
    return (
        f"{_DAY_NAMES[utc.weekday()]}, {utc.day:02d} {_MONTH_NAMES[utc.month - 1]} "
        f"{utc.year:04d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


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
        text = _strip_ows(text)
        pos = 0
        while pos < len(text):
            if text[pos] == ",":
                pos = _skip_ows(text, pos + 1)
                continue
            m = _PAIR_RE.match(text, pos)
            if m is None:
                raise _malformed("Prefer", "Prefer is not a list of preferences")
            name = m["name"].lower()
            word = m["value"]
            if name not in out:
                out[name] = (_unquote(word) or None) if word is not None else None
            pos = _skip_ows(text, m.end())
            while pos < len(text) and text[pos] == ";":
                pos = _skip_ows(text, pos + 1)
                param = _PAIR_RE.match(text, pos)
                if param is not None:
                    pos = _skip_ows(text, param.end())
            if pos < len(text) and text[pos] != ",":
                raise _malformed("Prefer", "Prefer is not a list of preferences")
    return out


def transaction_preference(prefer: dict[str, str | None]) -> Literal["persist", "atomic"]:
    """The ``transaction`` preference of byte-range PATCH: ``atomic`` only when asked for
    (case-insensitively); ``persist`` by default and for any other value.
    """
    value = prefer.get("transaction")
    return "atomic" if value is not None and value.lower() == "atomic" else "persist"


# -- digests (RFC 9530) --------------------------------------------------------------------------

#: Algorithms we compute, by their RFC 9530 registry key.
SUPPORTED_DIGESTS: dict[str, Callable[..., Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}
# Strongest first.
_DIGEST_PREFERENCE = ("sha-512", "sha-256")
_DIGEST_SIZES = {name: factory().digest_size for name, factory in SUPPORTED_DIGESTS.items()}


def parse_digest_field(value: str, *, field: str = "Content-Digest") -> dict[str, bytes]:
    """Parse ``Content-Digest`` / ``Repr-Digest``: an sf-dictionary of Byte Sequences.

    ``sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:`` → ``{"sha-256": b"..."}``.
    Member parameters are ignored; a repeated key keeps its last value (RFC 9651).

    :raises MalformedHeaderError: if the value is not an sf-dictionary, a member is not a
        Byte Sequence, or the digest of a supported algorithm has the wrong length.
    """
    parsed = _sf_parse(value, "dictionary", field)
    out = {}
    for name, member in parsed.items():
        item = member[0]
        if type(item) is not bytes:
            raise _malformed(field, f"{field} member is not a Byte Sequence", algorithm=name)
        size = _DIGEST_SIZES.get(name)
        if size is not None and len(item) != size:
            raise _malformed(
                field, f"{field} {name} digest has the wrong length",
                algorithm=name, expected=size, actual=len(item),
            )
        out[name] = item
    return out


def pick_digest(parsed: dict[str, bytes]) -> tuple[str, bytes] | None:
    """The strongest supported algorithm in ``parsed`` and its digest; ``None`` if none is."""
    for name in _DIGEST_PREFERENCE:
        if name in parsed:
            return name, parsed[name]
    return None


def format_digest(algorithm: str, digest: bytes) -> str:
    """``sha-256=:base64:`` -- one member of a ``Content-Digest`` / ``Repr-Digest`` value.

    :raises ValueError: if ``algorithm`` is not a valid dictionary key.
    """
    return http_sf.ser({algorithm: bytes(digest)})


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
    text = _strip_ows(value)
    m = _TOKEN_RE.match(text)
    if m is None:
        raise _malformed(field, "Content-Disposition has no disposition type")
    params: dict[str, tuple[str, bool]] = {}
    pos = _skip_ows(text, m.end())
    while pos < len(text):
        if text[pos] != ";":
            raise _malformed(field, "Content-Disposition parameters must follow ';'")
        pos = _skip_ows(text, pos + 1)
        p = _PAIR_RE.match(text, pos)
        if p is None or p["value"] is None:
            raise _malformed(field, "Content-Disposition parameter is not 'name=value'")
        name = p["name"].lower()
        if name in params:
            raise _malformed(field, f"Content-Disposition repeats the {name} parameter")
        params[name] = (p["value"], p["value"].startswith('"'))
        pos = _skip_ows(text, p.end())
    filename: str | None = None
    if "filename*" in params:
        raw, quoted = params["filename*"]
        e = None if quoted else _EXT_VALUE_RE.fullmatch(raw)
        if e is None:
            raise _malformed(field, "Content-Disposition filename* is not an RFC 8187 ext-value")
        codec = _EXT_CHARSETS.get(e["charset"].lower())
        if codec is not None:
            try:
                filename = unquote_to_bytes(e["chars"]).decode(codec)
            except UnicodeDecodeError:
                raise _malformed(
                    field, "Content-Disposition filename* is not valid UTF-8"
                ) from None
    if filename is None and "filename" in params:
        filename = _unquote(params["filename"][0])
        if not filename.isascii():
            # Officially ISO-8859-1, but many clients send raw UTF-8 octets, which arrive here
            # decoded as ISO-8859-1; a valid UTF-8 reading is all but certainly the intended one.
            try:
                filename = filename.encode("latin-1").decode("utf-8")
            except UnicodeError:
                pass
    if filename is not None and _CONTROL_RE.search(filename):
        raise _malformed(field, "Content-Disposition filename contains control characters")
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
    if not _TOKEN_RE.fullmatch(disposition):
        raise ValueError(f"not a disposition type: {disposition!r}")
    fallback = "".join(c if " " <= c <= "~" else "_" for c in filename)
    escaped = fallback.replace("\\", "\\\\").replace('"', '\\"')
    out = f'{disposition}; filename="{escaped}"'
    if fallback != filename:
        out += "; filename*=UTF-8''" + quote(filename, safe=_ATTR_CHAR_SAFE, encoding="utf-8")
    return out

