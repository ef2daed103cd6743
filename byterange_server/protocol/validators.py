"""Validators (sans-IO): entity tags, the conditional fields that compare them, and HTTP dates.

``ETag`` and ``If-Match`` / ``If-None-Match`` (RFC 9110 §8.8.3, §13.1.1-§13.1.2) with the strong
and weak comparisons, ``If-Range`` (§13.1.5), and the ``HTTP-date`` of ``Last-Modified`` and
``If-Range`` (§5.6.7). The parsing rules are those of :mod:`._abnf`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Literal

from ._abnf import malformed
from ._abnf import skip_ows
from ._abnf import strip_ows

__all__ = [
    "IGNORE_RANGE",
    "ETag",
    "IfRange",
    "format_http_date",
    "parse_etag_list",
    "parse_if_range",
    "strong_match",
    "weak_match",
]


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
        m = _ETAG_RE.fullmatch(strip_ows(value))
        if m is None:
            raise malformed("ETag", "Not an entity-tag")
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
    text = strip_ows(value)
    if text == "*":
        return "*"
    tags: list[ETag] = []
    pos = 0
    expect_tag = True
    while pos < len(text):
        if text[pos] == ",":
            pos = skip_ows(text, pos + 1)
            expect_tag = True
            continue
        m = _ETAG_RE.match(text, pos)
        if m is None or not expect_tag:
            raise malformed(field, f"{field} is not '*' or a list of entity-tags")
        tags.append(ETag(m[2], weak=m[1] is not None))
        pos = skip_ows(text, m.end())
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
    text = strip_ows(value)
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
