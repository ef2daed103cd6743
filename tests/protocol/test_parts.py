"""Tests for :mod:`byterange_server.protocol.parts`: :class:`PartHeader` from one part's fields, from
a partial PUT's headers, or from typed values."""

from __future__ import annotations

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from strategies import ANY_TEXT
from strategies import MAX
from strategies import content_ranges
from strategies import only_client_errors
from strategies import positions

from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import MissingRangeError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.ranges import ContentOffset
from byterange_server.protocol.ranges import ContentRange

P = pytest.param


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


# -- PartHeader.from_range and PartHeader.whole (typed values) -------------------------------------


@pytest.mark.parametrize(
    ("where", "content_length", "expected"),
    [
        P(ContentOffset(600), 5, (600, 605, None), id="tus-append"),
        P(ContentOffset(600), None, (600, None, None), id="chunked-append"),
        P(ContentOffset(600, 1000), 400, (600, 1000, 1000), id="append-to-the-end"),
        P(ContentRange(2, 6, 12), 4, (2, 6, 12), id="content-range"),
        P(ContentRange(2, 6, None), None, (2, 6, None), id="content-range-chunked"),
        P(ContentRange.unsatisfied(12), None, (None, None, 12), id="set-length"),
        P(ContentRange.unsatisfied(12), 0, (None, None, 12), id="set-length-empty-body"),
    ],
)
def test_part_header_from_range(where, content_length, expected):
    part = PartHeader.from_range(where, content_length)
    assert (part.start, part.stop, part.length) == expected
    assert part.fields == ()


@pytest.mark.parametrize(
    ("where", "content_length"),
    [
        P(ContentOffset(600, 602), 5, id="past-complete-length"),
        P(ContentRange(2, 6, 12), 5, id="length-mismatch"),
        P(ContentRange.unsatisfied(12), 1, id="set-length-with-body"),
        P(ContentOffset(0), -1, id="negative-content-length"),
        P(ContentOffset(0), 10**15, id="sixteen-digit-content-length"),
    ],
)
def test_part_header_from_range_invalid(where, content_length):
    with pytest.raises(MalformedHeaderError):
        PartHeader.from_range(where, content_length)


@given(
    st.one_of(content_ranges(), st.builds(ContentOffset, positions)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**16)),
)
def test_from_range_agrees_with_the_fields_it_replaces(where, content_length):
    # What tus, IETF and PUT did before: print the fields, have them parsed again.
    name = "content-range" if isinstance(where, ContentRange) else "content-offset"
    fields = ((name, where.format()),)
    if content_length is not None:
        fields += (("content-length", str(content_length)),)
    try:
        parsed = PartHeader.from_fields(fields)
    except MalformedHeaderError as exc:
        with pytest.raises(MalformedHeaderError) as info:
            PartHeader.from_range(where, content_length)
        assert info.value.extra == exc.extra
    else:
        assert PartHeader.from_range(where, content_length) == PartHeader(
            parsed.start, parsed.stop, parsed.length
        )


@pytest.mark.parametrize(
    ("size", "expected"),
    [P(0, (None, None, 0), id="empty"), P(5, (0, 5, 5), id="five"), P(MAX, (0, MAX, MAX), id="max")],
)
def test_part_header_whole(size, expected):
    part = PartHeader.whole(size)
    assert (part.start, part.stop, part.length) == expected
    assert part.expected_size() == size


def test_part_header_whole_keeps_the_digit_limit():
    with pytest.raises(MalformedHeaderError) as info:
        PartHeader.whole(MAX + 1)
    assert info.value.extra == {"field": "Content-Length", "digits": 16, "max-digits": 15}


# -- round trips ---------------------------------------------------------------------------------


@given(content_ranges())
def test_content_range_part_round_trip(value):
    fields = (("content-range", value.format()),)
    if value.start is not None:
        fields += (("content-length", str(value.stop - value.start)),)
    part = PartHeader.from_fields(fields)
    assert (part.start, part.stop, part.length) == (value.start, value.stop, value.length)


# -- robustness: arbitrary text ------------------------------------------------------------------


PARSERS = {
    "from_request_headers": lambda text: PartHeader.from_request_headers(text, len(text)),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    only_client_errors(PARSERS[name], text)


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["content-range", "content-offset", "content-length", "x"]),
            ANY_TEXT,
        ),
        max_size=4,
    )
)
def test_part_header_from_fields_raises_only_client_errors(fields):
    only_client_errors(PartHeader.from_fields, tuple(fields))
