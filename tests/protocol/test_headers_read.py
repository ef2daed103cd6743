"""Tests for :mod:`byterange_server.protocol.headers`: reading side.

``Range`` (parse, resolve, reject policy), ``Committed-Ranges``, entity tags, ``If-Range`` and
HTTP dates.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.protocol.headers import IGNORE_RANGE
from byterange_server.protocol.headers import ByteRangeSpec
from byterange_server.protocol.headers import ETag
from byterange_server.protocol.headers import format_http_date
from byterange_server.protocol.headers import format_range
from byterange_server.protocol.headers import format_ranges
from byterange_server.protocol.headers import parse_committed_ranges
from byterange_server.protocol.headers import parse_etag_list
from byterange_server.protocol.headers import parse_if_range
from byterange_server.protocol.headers import parse_range
from byterange_server.protocol.headers import resolve_ranges
from byterange_server.protocol.headers import should_reject_ranges
from byterange_server.protocol.headers import strong_match
from byterange_server.protocol.headers import weak_match

P = pytest.param
S = ByteRangeSpec


def suffix(n):
    return ByteRangeSpec(suffix=n)


# -- parse_range ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("bytes=0-99", [S(0, 99)], id="one"),
        P("bytes=0-99,200-,-500", [S(0, 99), S(200), suffix(500)], id="all-forms"),
        P("bytes=0-0", [S(0, 0)], id="first-byte"),
        P("bytes=-0", [suffix(0)], id="suffix-zero-parses"),
        P("bytes=0-", [S(0)], id="open"),
        P("BYTES=0-1", [S(0, 1)], id="unit-upper"),
        P("bytes=0-1, 4-5 ,\t8-9", [S(0, 1), S(4, 5), S(8, 9)], id="ows-around-commas"),
        P("bytes=0-1,,4-5", [S(0, 1), S(4, 5)], id="empty-element"),
        P("bytes=,0-1,", [S(0, 1)], id="leading-trailing-commas"),
        P("bytes=5-9,0-4,5-9", [S(5, 9), S(0, 4), S(5, 9)], id="order-and-duplicates-kept"),
        P(" bytes=0-1 ", [S(0, 1)], id="surrounding-ows"),
        P("bytes=0-" + "9" * 15, [S(0, 10**15 - 1)], id="15-digits"),
        P("bytes=007-009", [S(7, 9)], id="leading-zeros"),
    ],
)
def test_parse_range_valid(raw, expected):
    assert parse_range(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P("bytes=", id="no-ranges"),
        P("bytes=,", id="only-commas"),
        P("bytes 0-1", id="space-not-equals"),
        P("bytes = 0-1", id="spaces-around-equals"),
        P("bytes=0 -1", id="space-inside"),
        P("bytes=0-1 2-3", id="missing-comma"),
        P("bytes=5-4", id="last-before-first"),
        P("bytes=0-1,5-4", id="one-invalid-spec"),
        P("bytes=-", id="dash-only"),
        P("bytes=--1", id="double-dash"),
        P("bytes=+1-2", id="plus-sign"),
        P("bytes=1_0-20", id="underscore"),
        P("bytes=١-٢", id="arabic-indic-digits"),
        P("bytes=0-1" + "0" * 15, id="16-digit-last"),
        P("bytes=" + "1" * 16 + "-", id="16-digit-first"),
        P("bytes=-" + "1" * 16, id="16-digit-suffix"),
        P("bytes=0-1/10", id="content-range-syntax"),
        P("items=0-1", id="other-unit"),
        P("none", id="none"),
        P("bytes=a-b", id="other-range"),
        P("=0-1", id="no-unit"),
    ],
)
def test_parse_range_ignored(raw):
    assert parse_range(raw) is None


@pytest.mark.parametrize(
    ("specs", "text"),
    [
        P([S(0, 99), S(200), suffix(500)], "bytes=0-99,200-,-500", id="all-forms"),
        P([S(7, 7)], "bytes=7-7", id="one"),
    ],
)
def test_format_range(specs, text):
    assert format_range(specs) == text
    assert parse_range(text) == specs


def test_format_range_needs_a_spec():
    with pytest.raises(ValueError):
        format_range([])


@pytest.mark.parametrize(
    "kwargs",
    [
        P({}, id="nothing"),
        P({"last": 5}, id="last-only"),
        P({"first": 5, "last": 4}, id="reversed"),
        P({"first": -1}, id="negative"),
        P({"first": 0, "suffix": 5}, id="first-and-suffix"),
        P({"suffix": -1}, id="negative-suffix"),
    ],
)
def test_byte_range_spec_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        ByteRangeSpec(**kwargs)


# -- resolve_ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "size", "expected"),
    [
        P("bytes=0-99", 1000, [(0, 100)], id="inside"),
        P("bytes=0-99", 50, [(0, 50)], id="last-clipped"),
        P("bytes=0-", 50, [(0, 50)], id="open"),
        P("bytes=49-", 50, [(49, 50)], id="open-last-byte"),
        P("bytes=50-", 50, [], id="first-at-size"),
        P("bytes=60-70", 50, [], id="first-past-size"),
        P("bytes=-10", 50, [(40, 50)], id="suffix"),
        P("bytes=-50", 50, [(0, 50)], id="suffix-exact"),
        P("bytes=-500", 50, [(0, 50)], id="suffix-longer-than-size"),
        P("bytes=-0", 50, [], id="suffix-zero"),
        P("bytes=0-0", 0, [], id="empty-representation"),
        P("bytes=-5", 0, [], id="empty-representation-suffix"),
        P("bytes=60-70,0-9,-5", 50, [(0, 10), (45, 50)], id="mixed-keeps-order"),
        P("bytes=10-19,0-9", 50, [(10, 20), (0, 10)], id="request-order"),
        P("bytes=0-9,0-9", 50, [(0, 10), (0, 10)], id="duplicates-kept"),
    ],
)
def test_resolve_ranges(raw, size, expected):
    assert resolve_ranges(parse_range(raw), size) == expected


def test_resolve_ranges_rejects_negative_size():
    with pytest.raises(ValueError):
        resolve_ranges([S(0)], -1)


# -- should_reject_ranges ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolved", "reject"),
    [
        P([], False, id="none"),
        P([(0, 10)], False, id="one"),
        P([(0, 10), (10, 20), (20, 30)], False, id="touching-is-not-overlapping"),
        P([(0, 10), (5, 15)], False, id="one-overlapping-pair"),
        P([(0, 10), (0, 10)], False, id="one-duplicate-pair"),
        P([(0, 10), (5, 15), (20, 30)], False, id="pair-and-separate"),
        P([(0, 10), (5, 15), (8, 12)], True, id="three-overlapping"),
        P([(0, 100), (10, 20), (30, 40)], True, id="two-inside-one"),
        P([(0, 10), (5, 15), (10, 20)], True, id="chain"),
        P([(0, 10), (5, 15), (20, 30), (25, 35)], True, id="two-overlapping-pairs"),
        P([(0, 10)] * 3, True, id="three-duplicates"),
        P([(i, i + 1) for i in range(128)], False, id="128-ranges"),
        P([(i, i + 1) for i in range(129)], True, id="129-ranges"),
        P([(20, 30), (0, 5), (25, 26), (40, 50)], False, id="unsorted-pair"),
    ],
)
def test_should_reject_ranges(resolved, reject):
    assert should_reject_ranges(resolved) is reject


# -- Committed-Ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extents", "text"),
    [
        P([], "none", id="none"),
        P([(0, 1048576), (3145728, 4194304)], "bytes=0-1048575,3145728-4194303", id="two"),
        P([(0, 1)], "bytes=0-0", id="one-byte"),
        P([(5, 10), (0, 2)], "bytes=5-9,0-1", id="order-kept"),
    ],
)
def test_format_ranges(extents, text):
    assert format_ranges(extents) == text
    assert parse_committed_ranges(text) == extents


@pytest.mark.parametrize(
    "extents",
    [P([(5, 5)], id="empty"), P([(6, 5)], id="reversed"), P([(-1, 5)], id="negative")],
)
def test_format_ranges_rejects_bad_extents(extents):
    with pytest.raises(ValueError):
        format_ranges(extents)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("NONE", [], id="none-upper"),
        P(" none ", [], id="none-ows"),
        P("bytes=0-0, 5-9", [(0, 1), (5, 10)], id="ows"),
        P("Bytes=0-0,,5-9", [(0, 1), (5, 10)], id="empty-element"),
    ],
)
def test_parse_committed_ranges_lenient_forms(raw, expected):
    assert parse_committed_ranges(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        P("", MalformedHeaderError, id="empty"),
        P("bytes=", MalformedHeaderError, id="no-ranges"),
        P("bytes=0-", MalformedHeaderError, id="open"),
        P("bytes=-5", MalformedHeaderError, id="suffix"),
        P("bytes=5-4", MalformedHeaderError, id="reversed"),
        P("bytes=0 -4", MalformedHeaderError, id="space-inside"),
        P("bytes=0-" + "1" * 16, MalformedHeaderError, id="16-digits"),
        P("bytes=٠-٤", MalformedHeaderError, id="arabic-indic-digits"),
        P("bytes 0-4", MalformedHeaderError, id="content-range-syntax"),
        P("none,bytes=0-1", MalformedHeaderError, id="none-and-ranges"),
        P("items=0-4", UnsupportedRangeUnitError, id="other-unit"),
    ],
)
def test_parse_committed_ranges_invalid(raw, error):
    with pytest.raises(error):
        parse_committed_ranges(raw)


# -- entity tags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P('"xyzzy"', ETag("xyzzy"), id="strong"),
        P('W/"xyzzy"', ETag("xyzzy", weak=True), id="weak"),
        P('""', ETag(""), id="empty-opaque"),
        P('"a,b"', ETag("a,b"), id="comma-inside"),
        P('"\xe9"', ETag("\xe9"), id="obs-text"),
        P(' "x" ', ETag("x"), id="surrounding-ows"),
    ],
)
def test_etag_parse(raw, expected):
    assert ETag.parse(raw) == expected
    assert ETag.parse(expected.format()) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("xyzzy", id="unquoted"),
        P('w/"x"', id="lowercase-weak"),
        P('W/ "x"', id="space-after-weak"),
        P('"x', id="unterminated"),
        P('"x"y"', id="quote-inside"),
        P('"x y"', id="space-inside"),
        P("*", id="star"),
        P('"x", "y"', id="list"),
        P('"\u0100"', id="beyond-latin-1"),
    ],
)
def test_etag_parse_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        ETag.parse(raw)


def test_etag_rejects_a_quote_in_opaque():
    with pytest.raises(ValueError):
        ETag('a"b')


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("*", "*", id="star"),
        P(" * ", "*", id="star-ows"),
        P('"a"', [ETag("a")], id="one"),
        P('"a", W/"b",\t"c"', [ETag("a"), ETag("b", True), ETag("c")], id="three"),
        P('"a,b","c"', [ETag("a,b"), ETag("c")], id="comma-in-tag"),
        P(',"a",,', [ETag("a")], id="empty-elements"),
        P("", [], id="empty"),
    ],
)
def test_parse_etag_list(raw, expected):
    assert parse_etag_list(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P('*, "a"', id="star-and-tag"),
        P('"a" "b"', id="missing-comma"),
        P("a", id="unquoted"),
        P('w/"a"', id="lowercase-weak"),
        P('"a', id="unterminated"),
        P("**", id="double-star"),
    ],
)
def test_parse_etag_list_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_etag_list(raw, field="If-None-Match")


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        # RFC 9110 §8.8.3.2 table.
        P(ETag("1", True), ETag("1", True), False, True, id="W1-W1"),
        P(ETag("1", True), ETag("2", True), False, False, id="W1-W2"),
        P(ETag("1", True), ETag("1"), False, True, id="W1-1"),
        P(ETag("1"), ETag("1"), True, True, id="1-1"),
    ],
)
def test_etag_comparison(a, b, strong, weak):
    assert strong_match(a, b) is strong and strong_match(b, a) is strong
    assert weak_match(a, b) is weak and weak_match(b, a) is weak


# -- If-Range and dates --------------------------------------------------------------------------

NOV6 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P('"abc"', ETag("abc"), id="strong-etag"),
        P('W/"abc"', ETag("abc", weak=True), id="weak-etag"),
        P("Sun, 06 Nov 1994 08:49:37 GMT", NOV6, id="imf-fixdate"),
        P("Sunday, 06-Nov-94 08:49:37 GMT", NOV6, id="rfc850-date"),
        P("Sun Nov  6 08:49:37 1994", NOV6, id="asctime-date"),
        P("Mon, 06 Nov 1994 08:49:37 GMT", NOV6, id="wrong-day-name-not-checked"),
        P("Thursday, 01-Jan-76 00:00:00 GMT", datetime(2076, 1, 1, tzinfo=timezone.utc),
          id="rfc850-50-years-ahead"),
        P("Friday, 01-Jan-77 00:00:00 GMT", datetime(1977, 1, 1, tzinfo=timezone.utc),
          id="rfc850-51-years-ahead-is-past"),
    ],
)
def test_parse_if_range(raw, expected):
    assert parse_if_range(raw, now=NOW) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P("abc", id="garbage"),
        P('"abc', id="unterminated-etag"),
        P('"a" "b"', id="two-etags"),
        P("Sun, 06 Nov 1994 08:49:37 +0000", id="numeric-zone"),
        P("Sun, 06 Nov 1994 08:49:37 UTC", id="utc-not-gmt"),
        P("Sun, 6 Nov 1994 08:49:37 GMT", id="one-digit-day"),
        P("sun, 06 nov 1994 08:49:37 gmt", id="lower-case"),
        P("Sun, 31 Feb 1994 08:49:37 GMT", id="impossible-day"),
        P("Sun, 06 Foo 1994 08:49:37 GMT", id="unknown-month"),
        P("Sun, 06 Nov 1994 25:49:37 GMT", id="hour-25"),
        P("Sun, 06 Nov 0000 08:49:37 GMT", id="year-zero"),
        P("06 Nov 1994 08:49:37 GMT", id="no-day-name"),
        P("Sun, ٠٦ Nov 1994 08:49:37 GMT", id="arabic-indic-day"),
    ],
)
def test_parse_if_range_ignored(raw):
    result = parse_if_range(raw, now=NOW)
    assert result is IGNORE_RANGE
    assert not result


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        P(NOV6, "Sun, 06 Nov 1994 08:49:37 GMT", id="utc"),
        P(NOV6.replace(tzinfo=None, microsecond=999), "Sun, 06 Nov 1994 08:49:37 GMT",
          id="naive-is-utc-fraction-dropped"),
        P(NOV6.astimezone(timezone(timedelta(hours=2))), "Sun, 06 Nov 1994 08:49:37 GMT",
          id="converted-to-utc"),
        P(datetime(2026, 2, 28, 23, 0, 5, tzinfo=timezone(timedelta(hours=-2))),
          "Sun, 01 Mar 2026 01:00:05 GMT", id="day-rolls-over"),
    ],
)
def test_format_http_date(moment, text):
    assert format_http_date(moment) == text
    expected = moment.replace(microsecond=0, tzinfo=moment.tzinfo or timezone.utc)
    assert parse_if_range(text) == expected
