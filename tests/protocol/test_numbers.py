"""Tests for :mod:`byterange_server.protocol.numbers`: decimal numbers, sf-integer, sf-boolean."""

from __future__ import annotations

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from strategies import ANY_TEXT
from strategies import only_client_errors

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.numbers import check_int
from byterange_server.protocol.numbers import parse_int
from byterange_server.protocol.numbers import parse_sf_boolean
from byterange_server.protocol.numbers import parse_sf_integer

P = pytest.param


# -- parse_int -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("0", 0, id="zero"),
        P("42", 42, id="plain"),
        P("007", 7, id="leading-zeros"),
        P("9" * 15, 999_999_999_999_999, id="15-digits"),
        P("0" * 14 + "1", 1, id="15-digits-leading-zeros"),
    ],
)
def test_parse_int_valid(raw, expected):
    assert parse_int(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P("1" * 16, id="16-digits"),
        P("0" * 16, id="16-zeros"),
        P("+1", id="plus-sign"),
        P("-1", id="minus-sign"),
        P("1_000", id="underscore"),
        P(" 1", id="leading-space"),
        P("1 ", id="trailing-space"),
        P("1\n", id="trailing-newline"),
        P("١", id="arabic-indic-digit"),
        P("１", id="fullwidth-digit"),
        P("²", id="superscript-two"),
        P("0x10", id="hex"),
        P("1e3", id="exponent"),
        P("1.0", id="decimal"),
    ],
)
def test_parse_int_invalid(raw):
    with pytest.raises(MalformedHeaderError) as info:
        parse_int(raw)
    assert info.value.status == 400


def test_parse_int_reports_the_digit_limit():
    with pytest.raises(MalformedHeaderError) as info:
        parse_int("1" * 16, field="Content-Length")
    assert info.value.extra == {"field": "Content-Length", "digits": 16, "max-digits": 15}


@pytest.mark.parametrize("value", [0, 1, 10**15 - 1])
def test_check_int_accepts_what_parse_int_could_return(value):
    assert check_int(value) == value == parse_int(str(value))


@pytest.mark.parametrize("value", [-1, 10**15, 10**30])
def test_check_int_refuses_what_parse_int_would(value):
    with pytest.raises(MalformedHeaderError) as checked:
        check_int(value, field="Content-Length")
    with pytest.raises(MalformedHeaderError) as parsed:
        parse_int(str(value), field="Content-Length")
    assert checked.value.detail == parsed.value.detail
    assert checked.value.extra == parsed.value.extra


# -- sf-integer / sf-boolean ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("0", 0, id="zero"),
        P("600", 600, id="plain"),
        P(" 600", 600, id="leading-space"),
        P("600;foo=bar", 600, id="params-ignored"),
        P("9" * 15, 10**15 - 1, id="15-digits"),
    ],
)
def test_parse_sf_integer_valid(raw, expected):
    assert parse_sf_integer(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P("-1", id="negative"),
        P("1" * 16, id="16-digits"),
        P("1.5", id="decimal"),
        P("?1", id="boolean"),
        P('"1"', id="string"),
        P("a", id="token"),
        P("1, 2", id="list"),
        P("+1", id="plus-sign"),
        P("١", id="arabic-indic-digit"),
        P("1_0", id="underscore"),
    ],
)
def test_parse_sf_integer_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_sf_integer(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [P("?0", False, id="false"), P("?1", True, id="true"), P("?1;x=1", True, id="params")],
)
def test_parse_sf_boolean_valid(raw, expected):
    assert parse_sf_boolean(raw) is expected


@pytest.mark.parametrize(
    "raw",
    [P("", id="empty"), P("1", id="integer"), P("?2", id="two"), P("true", id="token"),
     P("?", id="bare"), P("?1 ?0", id="two-items")],
)
def test_parse_sf_boolean_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_sf_boolean(raw)


# -- robustness: arbitrary text ------------------------------------------------------------------


PARSERS = {
    "parse_int": parse_int,
    "parse_sf_integer": parse_sf_integer,
    "parse_sf_boolean": parse_sf_boolean,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    only_client_errors(PARSERS[name], text)
