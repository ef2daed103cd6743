"""Tests for :mod:`byterange_server.protocol.headers`: numbers and write ranges.

``Content-Range``, ``Content-Offset`` and :class:`PartHeader` (one part's fields, or a partial
PUT's headers).  Read ranges, validators, ``Prefer``, digests and ``Content-Disposition`` are in
``test_headers_read.py`` and ``test_headers_misc.py``; hypothesis properties in
``test_headers_properties.py``.
"""

from __future__ import annotations

import pytest

from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import MissingRangeError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.protocol.headers import ContentOffset
from byterange_server.protocol.headers import ContentRange
from byterange_server.protocol.headers import PartHeader
from byterange_server.protocol.headers import parse_int
from byterange_server.protocol.headers import parse_sf_boolean
from byterange_server.protocol.headers import parse_sf_integer

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


# -- Content-Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("bytes 2-5/12", ContentRange(2, 6, 12), id="full"),
        P("bytes 0-11/*", ContentRange(0, 12, None), id="unknown-length"),
        P("bytes */1000", ContentRange(None, None, 1000), id="unsatisfied"),
        P("bytes */0", ContentRange(None, None, 0), id="unsatisfied-zero"),
        P("bytes 0-0/1", ContentRange(0, 1, 1), id="one-byte"),
        P("bytes 5-5/*", ContentRange(5, 6, None), id="one-byte-unknown"),
        P("BYTES 2-5/12", ContentRange(2, 6, 12), id="unit-upper"),
        P("Bytes 2-5/12", ContentRange(2, 6, 12), id="unit-mixed"),
        P(" bytes 2-5/12\t", ContentRange(2, 6, 12), id="surrounding-ows"),
        P("bytes 002-005/012", ContentRange(2, 6, 12), id="leading-zeros"),
        P(
            f"bytes 0-{'9' * 15}/*", ContentRange(0, 10**15, None), id="15-digit-last"
        ),
    ],
)
def test_content_range_valid(raw, expected):
    assert ContentRange.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        P("", MalformedHeaderError, id="empty"),
        P("bytes", MalformedHeaderError, id="unit-only"),
        P("bytes=2-5/12", MalformedHeaderError, id="equals-not-space"),
        P("bytes  2-5/12", MalformedHeaderError, id="two-spaces"),
        P("bytes\t2-5/12", MalformedHeaderError, id="tab-separator"),
        P("bytes 2 -5/12", MalformedHeaderError, id="space-before-dash"),
        P("bytes 2- 5/12", MalformedHeaderError, id="space-after-dash"),
        P("bytes 2-5 /12", MalformedHeaderError, id="space-before-slash"),
        P("bytes 2-5/ 12", MalformedHeaderError, id="space-after-slash"),
        P("bytes +2-5/12", MalformedHeaderError, id="plus-sign"),
        P("bytes -2-5/12", MalformedHeaderError, id="minus-sign"),
        P("bytes 2-5/-12", MalformedHeaderError, id="negative-length"),
        P("bytes 1_0-20/*", MalformedHeaderError, id="underscore"),
        P("bytes ١-5/12", MalformedHeaderError, id="arabic-indic-digit"),
        P("bytes 2-５/12", MalformedHeaderError, id="fullwidth-digit"),
        P(f"bytes {'1' * 16}-{'1' * 16}/*", MalformedHeaderError, id="16-digit-first"),
        P(f"bytes 0-{'1' * 16}/*", MalformedHeaderError, id="16-digit-last"),
        P(f"bytes 0-1/{'1' * 16}", MalformedHeaderError, id="16-digit-length"),
        P(f"bytes */{'1' * 16}", MalformedHeaderError, id="16-digit-unsatisfied"),
        P("bytes 5-4/12", MalformedHeaderError, id="last-before-first"),
        P("bytes 5-4/*", MalformedHeaderError, id="last-before-first-unknown"),
        P("bytes 0-11/11", MalformedHeaderError, id="length-equals-last"),
        P("bytes 0-11/5", MalformedHeaderError, id="length-below-last"),
        P("bytes 0-0/0", MalformedHeaderError, id="zero-length-with-range"),
        P("bytes */*", MalformedHeaderError, id="star-star"),
        P("bytes 100-/*", MalformedHeaderError, id="legacy-indeterminate-end"),
        P("bytes 100-/1000", MalformedHeaderError, id="legacy-indeterminate-end-length"),
        P("bytes -5/12", MalformedHeaderError, id="suffix-form"),
        P("bytes 2-5", MalformedHeaderError, id="no-length"),
        P("bytes 2-5/", MalformedHeaderError, id="empty-length"),
        P("bytes 2-5/12, bytes 7-8/12", MalformedHeaderError, id="two-values"),
        P("bytes */", MalformedHeaderError, id="unsatisfied-empty"),
        P("bytes *", MalformedHeaderError, id="star-only"),
        P("bytes 2-5/12\n", MalformedHeaderError, id="trailing-newline"),
        P("byt es 2-5/12", UnsupportedRangeUnitError, id="split-unit"),
        P("items 2-5/12", UnsupportedRangeUnitError, id="unit-items"),
        P("bits 0-7/*", UnsupportedRangeUnitError, id="unit-bits"),
        P("none */12", UnsupportedRangeUnitError, id="unit-none"),
        P("byte 2-5/12", UnsupportedRangeUnitError, id="unit-byte-singular"),
        P("bytés 2-5/12", MalformedHeaderError, id="unit-not-a-token"),
    ],
)
def test_content_range_invalid(raw, error):
    with pytest.raises(error) as info:
        ContentRange.parse(raw)
    assert type(info.value) is error
    assert info.value.status == (422 if error is UnsupportedRangeUnitError else 400)


def test_content_range_errors_carry_the_figures():
    with pytest.raises(MalformedHeaderError) as info:
        ContentRange.parse("bytes 5-4/12")
    assert info.value.extra == {"field": "Content-Range", "first-pos": 5, "last-pos": 4}
    with pytest.raises(MalformedHeaderError) as info:
        ContentRange.parse("bytes 0-11/11")
    assert info.value.extra == {"field": "Content-Range", "last-pos": 11, "complete-length": 11}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        P(ContentRange(2, 6, 12), "bytes 2-5/12", id="full"),
        P(ContentRange(0, 12, None), "bytes 0-11/*", id="unknown-length"),
        P(ContentRange.unsatisfied(1000), "bytes */1000", id="unsatisfied"),
    ],
)
def test_content_range_format(value, text):
    assert value.format() == text
    assert ContentRange.parse(text) == value


def test_content_range_inclusive_properties():
    cr = ContentRange(2, 6, 12)
    assert (cr.first, cr.last, cr.is_unsatisfied) == (2, 5, False)
    star = ContentRange.unsatisfied(12)
    assert (star.first, star.last, star.is_unsatisfied) == (None, None, True)


@pytest.mark.parametrize(
    "args",
    [
        P((None, None, None), id="nothing"),
        P((0, None, 10), id="start-without-stop"),
        P((5, 5, None), id="empty"),
        P((6, 5, None), id="reversed"),
        P((-1, 5, None), id="negative"),
        P((0, 10, 9), id="length-below-stop"),
        P((None, None, -1), id="negative-length"),
    ],
)
def test_content_range_rejects_impossible_values(args):
    with pytest.raises(ValueError):
        ContentRange(*args)


# -- Content-Offset ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("600", ContentOffset(600), id="bare"),
        P("0", ContentOffset(0), id="zero"),
        P("600; complete-length=1000", ContentOffset(600, 1000), id="with-length"),
        P("600;complete-length=1000", ContentOffset(600, 1000), id="no-space"),
        P("600;unit=bytes", ContentOffset(600), id="unit-bytes"),
        P("600;unit=BYTES", ContentOffset(600), id="unit-bytes-upper"),
        P("600;unit=bytes;complete-length=600", ContentOffset(600, 600), id="offset-at-end"),
        P("600;foo=bar;complete-length=700", ContentOffset(600, 700), id="unknown-param"),
        P(" 600 ", ContentOffset(600), id="surrounding-space"),
        P("9" * 15, ContentOffset(10**15 - 1), id="15-digits"),
    ],
)
def test_content_offset_valid(raw, expected):
    assert ContentOffset.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        P("", MalformedHeaderError, id="empty"),
        P("-1", MalformedHeaderError, id="negative"),
        P("+1", MalformedHeaderError, id="plus-sign"),
        P("1" * 16, MalformedHeaderError, id="16-digits"),
        P("1.5", MalformedHeaderError, id="decimal"),
        P("?1", MalformedHeaderError, id="boolean"),
        P('"600"', MalformedHeaderError, id="string"),
        P("abc", MalformedHeaderError, id="token"),
        P("1_000", MalformedHeaderError, id="underscore"),
        P("١", MalformedHeaderError, id="arabic-indic-digit"),
        P("600, 700", MalformedHeaderError, id="list"),
        P("600;complete-length=-1", MalformedHeaderError, id="negative-length"),
        P("600;complete-length=?1", MalformedHeaderError, id="boolean-length"),
        P("600;complete-length", MalformedHeaderError, id="bare-length"),
        P("600;complete-length=1.0", MalformedHeaderError, id="decimal-length"),
        P("600;complete-length=599", MalformedHeaderError, id="offset-past-length"),
        P("600;complete-length=" + "1" * 16, MalformedHeaderError, id="16-digit-length"),
        P("600;unit=items", UnsupportedRangeUnitError, id="unit-items"),
        P('600;unit="bytes"', UnsupportedRangeUnitError, id="unit-string"),
        P("600;unit", UnsupportedRangeUnitError, id="unit-boolean"),
    ],
)
def test_content_offset_invalid(raw, error):
    with pytest.raises(error) as info:
        ContentOffset.parse(raw)
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("value", "text"),
    [
        P(ContentOffset(600), "600", id="bare"),
        P(ContentOffset(600, 1000), "600;complete-length=1000", id="with-length"),
    ],
)
def test_content_offset_format(value, text):
    assert value.format() == text
    assert ContentOffset.parse(text) == value


# -- PartHeader.from_fields ----------------------------------------------------------------------


def cr(value):
    return ("content-range", value)


def co(value):
    return ("content-offset", value)


def cl(value):
    return ("content-length", value)


@pytest.mark.parametrize(
    ("fields", "expected", "size"),
    [
        P((cr("bytes 2-5/12"),), (2, 6, 12), 4, id="range"),
        P((cr("bytes 2-5/*"), cl("4")), (2, 6, None), 4, id="range-matching-length"),
        P((cr("bytes */12"),), (None, None, 12), 0, id="length-only"),
        P((cr("bytes */12"), cl("0")), (None, None, 12), 0, id="length-only-zero-cl"),
        P((co("600"),), (600, None, None), None, id="offset-open"),
        P((co("600"), cl("5")), (600, 605, None), 5, id="offset-with-cl"),
        P((co("600"), cl("0")), (600, 600, None), 0, id="offset-empty"),
        P((co("600;complete-length=1000"),), (600, None, 1000), None, id="offset-length"),
        P((co("600;complete-length=1000"), cl("400")), (600, 1000, 1000), 400,
          id="offset-to-end"),
        P((("content-type", "text/plain"), cr("bytes 0-0/1")), (0, 1, 1), 1,
          id="other-fields"),
    ],
)
def test_part_header_from_fields(fields, expected, size):
    part = PartHeader.from_fields(fields)
    assert (part.start, part.stop, part.length) == expected
    assert part.expected_size() == size
    assert part.fields == fields
    assert part.is_length_only is (expected[0] is None)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        P((), MissingRangeError, id="no-fields"),
        P((("content-type", "text/plain"), cl("4")), MissingRangeError, id="no-range"),
        P((cr("bytes 0-1/*"), cr("bytes 0-1/*")), MalformedHeaderError, id="two-ranges-same"),
        P((cr("bytes 0-1/*"), cr("bytes 4-5/*")), MalformedHeaderError, id="two-ranges"),
        P((co("0"), co("0")), MalformedHeaderError, id="two-offsets"),
        P((cr("bytes 0-1/*"), co("0")), MalformedHeaderError, id="range-and-offset"),
        P((cr("bytes 0-1/*"), cl("3")), MalformedHeaderError, id="cl-too-long"),
        P((cr("bytes 0-1/*"), cl("1")), MalformedHeaderError, id="cl-too-short"),
        P((cr("bytes 0-1/*"), cl("2"), cl("2")), MalformedHeaderError, id="two-cl"),
        P((cr("bytes 0-1/*"), cl("+2")), MalformedHeaderError, id="cl-signed"),
        P((cr("bytes 0-1/*"), cl("1" * 16)), MalformedHeaderError, id="cl-16-digits"),
        P((cr("bytes 0-1/*"), cl("٢")), MalformedHeaderError, id="cl-arabic-indic"),
        P((cr("bytes */12"), cl("1")), MalformedHeaderError, id="length-only-with-cl"),
        P((cr("bytes 5-4/*"),), MalformedHeaderError, id="bad-range"),
        P((cr("items 0-1/*"),), UnsupportedRangeUnitError, id="bad-unit"),
        P((co("1;unit=items"),), UnsupportedRangeUnitError, id="bad-offset-unit"),
        P((co("-1"),), MalformedHeaderError, id="bad-offset"),
        P((co("600;complete-length=1000"), cl("401")), MalformedHeaderError,
          id="offset-past-length"),
    ],
)
def test_part_header_from_fields_invalid(fields, error):
    with pytest.raises(error) as info:
        PartHeader.from_fields(fields)
    assert type(info.value) is error
    assert info.value.status == (400 if error is MalformedHeaderError else 422)


def test_part_content_length_mismatch_carries_both_lengths():
    with pytest.raises(MalformedHeaderError) as info:
        PartHeader.from_fields((cr("bytes 0-9/*"), cl("11")))
    assert info.value.extra["content-length"] == 11
    assert info.value.extra["range-length"] == 10


def test_part_header_get_all():
    part = PartHeader.from_fields(
        (cr("bytes 0-0/1"), ("repr-digest", "a=:AA==:"), ("repr-digest", "b=:AA==:"))
    )
    assert part.get_all("Repr-Digest") == ["a=:AA==:", "b=:AA==:"]
    assert part.get_all("content-type") == []


# -- PartHeader.from_request_headers (partial PUT) -----------------------------------------------


@pytest.mark.parametrize(
    ("content_range", "content_length", "expected", "size"),
    [
        P("bytes 0-9/100", 10, (0, 10, 100), 10, id="range"),
        P("bytes 0-9/*", None, (0, 10, None), 10, id="chunked"),
        P("bytes */100", 0, (None, None, 100), 0, id="set-length"),
        P("bytes */100", None, (None, None, 100), 0, id="set-length-chunked"),
    ],
)
def test_part_header_from_request_headers(content_range, content_length, expected, size):
    part = PartHeader.from_request_headers(content_range, content_length)
    assert (part.start, part.stop, part.length) == expected
    assert part.expected_size() == size


@pytest.mark.parametrize(
    ("content_range", "content_length", "error"),
    [
        P(None, 10, MissingRangeError, id="no-content-range"),
        P("bytes */100", 1, MalformedHeaderError, id="set-length-with-body-E15"),
        P("bytes 0-9/100", 11, MalformedHeaderError, id="length-mismatch"),
        P("bytes 0-9/100", -1, MalformedHeaderError, id="negative-content-length"),
        P("bytes 9-0/100", 10, MalformedHeaderError, id="bad-range"),
        P("bytes 100-/*", 10, MalformedHeaderError, id="legacy-form"),
        P("items 0-9/100", 10, UnsupportedRangeUnitError, id="bad-unit"),
    ],
)
def test_part_header_from_request_headers_invalid(content_range, content_length, error):
    with pytest.raises(error) as info:
        PartHeader.from_request_headers(content_range, content_length)
    assert type(info.value) is error
