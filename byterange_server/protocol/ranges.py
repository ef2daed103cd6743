"""Byte ranges on the wire (sans-IO): where written bytes go, and which bytes a read asks for.

- Writes: ``Content-Range`` (RFC 9110 §14.4; :class:`ContentRange`) and the byte-range PATCH
  draft's ``Content-Offset`` (:class:`ContentOffset`).
- Reads: ``Range`` (RFC 9110 §14.2; :class:`ByteRangeSpec`, :func:`parse_range`,
  :func:`resolve_ranges`, :func:`should_reject_ranges`).
- The project's ``Committed-Ranges`` field, a ``ranges-specifier`` (:func:`format_ranges`,
  :func:`parse_committed_ranges`).

Byte ranges are half-open ``(start, stop)`` in every result; HTTP's inclusive ``first-last``
appears only in the text being parsed or printed. The parsing rules are those of
:mod:`._abnf`; numbers have at most 15 digits (:mod:`.numbers`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

import http_sf

from ..errors import UnsupportedRangeUnitError
from ._abnf import DIGITS
from ._abnf import TOKEN
from ._abnf import is_sf_integer
from ._abnf import malformed
from ._abnf import sf_parse
from ._abnf import split_list
from ._abnf import strip_ows
from .numbers import MAX_DIGITS
from .numbers import parse_int

__all__ = [
    "MAX_OVERLAPPING_RANGES",
    "MAX_RANGES",
    "ByteRangeSpec",
    "ContentOffset",
    "ContentRange",
    "format_range",
    "format_ranges",
    "parse_committed_ranges",
    "parse_range",
    "resolve_ranges",
    "should_reject_ranges",
]

#: :func:`should_reject_ranges` policy: most ranges one ``Range`` field may ask for ...
MAX_RANGES = 128
#: ... and most ranges of it that may overlap another one (RFC 9110 §14.2: "more than two").
MAX_OVERLAPPING_RANGES = 2


# -- Content-Range -------------------------------------------------------------------------------

# Content-Range = range-unit SP ( range-resp / unsatisfied-range )   ; RFC 9110 §14.4
# range-unit    = token                                              ; case-insensitive
# (the unit is split off first, so that a non-bytes unit is a 422 whatever follows it)
_CR_UNIT_RE = re.compile(rf"({TOKEN}) (.*)", re.ASCII | re.DOTALL)
# range-resp        = incl-range "/" ( complete-length / "*" )
# incl-range        = first-pos "-" last-pos
# unsatisfied-range = "*/" complete-length
# first-pos = last-pos = complete-length = 1*DIGIT
_CR_BYTES_RE = re.compile(
    rf"(?:(?P<first>{DIGITS})-(?P<last>{DIGITS})/(?P<length>{DIGITS}|\*)"
    rf"|\*/(?P<unsatisfied>{DIGITS}))",
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
        m = _CR_UNIT_RE.fullmatch(strip_ows(value))
        if m is None:
            raise malformed(field, "Content-Range is not 'unit first-last/length'")
        unit, rest = m.groups()
        if unit.lower() != "bytes":
            raise UnsupportedRangeUnitError(
                "Content-Range unit is not bytes", extra={"field": field, "unit": unit[:40]}
            )
        r = _CR_BYTES_RE.fullmatch(rest)
        if r is None:
            raise malformed(
                field, "Content-Range is not 'bytes first-last/length', 'bytes first-last/*' "
                "or 'bytes */length'"
            )
        if r["unsatisfied"] is not None:
            return cls(None, None, parse_int(r["unsatisfied"], field=field))
        first = parse_int(r["first"], field=field)
        last = parse_int(r["last"], field=field)
        length = None if r["length"] == "*" else parse_int(r["length"], field=field)
        if last < first:
            raise malformed(
                field, "Content-Range last-pos is before first-pos",
                **{"first-pos": first, "last-pos": last},
            )
        if length is not None and length <= last:
            raise malformed(
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
        item, params = sf_parse(value, "item", field)
        if not is_sf_integer(item) or item < 0:
            raise malformed(field, "Content-Offset is not a non-negative Integer")
        if "unit" in params:
            unit = params["unit"]
            if not isinstance(unit, http_sf.Token) or str(unit).lower() != "bytes":
                raise UnsupportedRangeUnitError(
                    "Content-Offset unit is not bytes",
                    extra={"field": field, "unit": str(unit)[:40]},
                )
        length = params.get("complete-length")
        if length is not None:
            if not is_sf_integer(length) or length < 0:
                raise malformed(
                    field, "Content-Offset complete-length is not a non-negative Integer"
                )
            if length < item:
                raise malformed(
                    field, "Content-Offset lies beyond its complete-length",
                    offset=item, **{"complete-length": length},
                )
        return cls(int(item), None if length is None else int(length))

    def format(self) -> str:
        """The canonical field value: ``600`` or ``600;complete-length=1000``."""
        params = {} if self.length is None else {"complete-length": self.length}
        return http_sf.ser((self.offset, params))


# -- Range (downloads) ---------------------------------------------------------------------------

# ranges-specifier = range-unit "=" range-set                      ; RFC 9110 §14.1
_RANGE_UNIT_RE = re.compile(rf"({TOKEN})=(.*)", re.ASCII | re.DOTALL)
# range-spec   = int-range / suffix-range / other-range            ; RFC 9110 §14.1.1
# int-range    = first-pos "-" [ last-pos ]
# suffix-range = "-" suffix-length
_RANGE_SPEC_RE = re.compile(
    rf"(?P<first>{DIGITS})-(?P<last>{DIGITS})?|-(?P<suffix>{DIGITS})", re.ASCII
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
    m = _RANGE_UNIT_RE.fullmatch(strip_ows(value))
    if m is None or m[1].lower() != "bytes":
        return None
    elements = split_list(m[2])
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

# Committed-Ranges = ranges-specifier / "none"        ; project field, docs/spec-notes.md#committed-ranges
# ranges-specifier = range-unit "=" range-set          ; with only first-pos "-" last-pos specs
_INCL_RANGE_RE = re.compile(rf"({DIGITS})-({DIGITS})", re.ASCII)


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
    value = strip_ows(value)
    if value.lower() == "none":
        return []
    m = _RANGE_UNIT_RE.fullmatch(value)
    if m is None:
        raise malformed(field, "Committed-Ranges is not 'bytes=first-last,...' or 'none'")
    if m[1].lower() != "bytes":
        raise UnsupportedRangeUnitError(
            "Committed-Ranges unit is not bytes", extra={"field": field, "unit": m[1][:40]}
        )
    elements = split_list(m[2])
    if elements is None:
        raise malformed(field, "Committed-Ranges has whitespace inside a range")
    if not elements:
        raise malformed(field, "Committed-Ranges has no range")
    out = []
    for element in elements:
        r = _INCL_RANGE_RE.fullmatch(element)
        if r is None:
            raise malformed(field, "Committed-Ranges element is not 'first-last'")
        first = parse_int(r[1], field=field)
        last = parse_int(r[2], field=field)
        if last < first:
            raise malformed(
                field, "Committed-Ranges last-pos is before first-pos",
                **{"first-pos": first, "last-pos": last},
            )
        out.append((first, last + 1))
    return out
