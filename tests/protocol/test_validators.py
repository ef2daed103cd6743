"""Tests for :mod:`byterange_server.protocol.validators`: entity tags, ``If-Match`` lists, ``If-Range``
and HTTP dates."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from strategies import ANY_TEXT
from strategies import only_client_errors

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.validators import IGNORE_RANGE
from byterange_server.protocol.validators import ETag
from byterange_server.protocol.validators import format_http_date
from byterange_server.protocol.validators import parse_etag_list
from byterange_server.protocol.validators import parse_if_range
from byterange_server.protocol.validators import strong_match
from byterange_server.protocol.validators import weak_match

P = pytest.param


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


# -- round trips ---------------------------------------------------------------------------------


# etagc = %x21 / %x23-7E / obs-text (%x80-FF)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                      exclude_characters='"\x7f')), st.booleans())
def test_etag_round_trip(opaque, weak):
    tag = ETag(opaque, weak)
    assert ETag.parse(tag.format()) == tag
    assert parse_etag_list(f"{tag.format()}, {tag.format()}") == [tag, tag]


@given(st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc))))
def test_http_date_round_trip(moment):
    text = format_http_date(moment)
    expected = moment.replace(microsecond=0, tzinfo=timezone.utc)
    assert parse_if_range(text) == expected


# -- robustness: arbitrary text ------------------------------------------------------------------


PARSERS = {
    "ETag.parse": ETag.parse,
    "parse_etag_list": parse_etag_list,
    "parse_if_range": parse_if_range,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    only_client_errors(PARSERS[name], text)


@given(ANY_TEXT)
def test_parse_if_range_never_raises(text):
    result = parse_if_range(text)
    assert isinstance(result, (ETag, datetime)) or result is IGNORE_RANGE
