"""Hypothesis properties of :mod:`byterange_server.protocol.headers`.

Round trips (printers and parsers agree), the ``Range`` resolution bounds, and the robustness
contract: given arbitrary text, every parser either returns or raises a
:class:`~byterange_server.errors.ByterangeError` with a 4xx status -- never ``ValueError``,
``IndexError``, ``UnicodeError`` or anything else that would become a 500.
"""

from __future__ import annotations

import string
from datetime import datetime
from datetime import timezone

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from byterange_server.errors import ByterangeError
from byterange_server.protocol import headers as h
from byterange_server.protocol.headers import ByteRangeSpec
from byterange_server.protocol.headers import ContentOffset
from byterange_server.protocol.headers import ContentRange
from byterange_server.protocol.headers import ETag
from byterange_server.protocol.headers import PartHeader

MAX = 10**15 - 1  # the largest 15-digit number
positions = st.integers(min_value=0, max_value=MAX)


# -- round trips ---------------------------------------------------------------------------------


@st.composite
def content_ranges(draw):
    if draw(st.booleans()):
        return ContentRange.unsatisfied(draw(positions))
    first = draw(st.integers(min_value=0, max_value=MAX - 1))
    last = draw(st.integers(min_value=first, max_value=MAX - 1))
    length = draw(st.one_of(st.none(), st.integers(min_value=last + 1, max_value=MAX)))
    return ContentRange(first, last + 1, length)


@given(content_ranges())
def test_content_range_round_trip(value):
    assert ContentRange.parse(value.format()) == value


@given(content_ranges())
def test_content_range_part_round_trip(value):
    fields = (("content-range", value.format()),)
    if value.start is not None:
        fields += (("content-length", str(value.stop - value.start)),)
    part = PartHeader.from_fields(fields)
    assert (part.start, part.stop, part.length) == (value.start, value.stop, value.length)


@st.composite
def content_offsets(draw):
    offset = draw(positions)
    length = draw(st.one_of(st.none(), st.integers(min_value=offset, max_value=MAX)))
    return ContentOffset(offset, length)


@given(content_offsets())
def test_content_offset_round_trip(value):
    assert ContentOffset.parse(value.format()) == value


@st.composite
def extent_lists(draw):
    pairs = draw(st.lists(st.tuples(positions, positions), max_size=20))
    return [(min(a, b), max(a, b) + 1) for a, b in pairs if min(a, b) < MAX]


@given(extent_lists())
def test_committed_ranges_round_trip(extents):
    text = h.format_ranges(extents)
    assert h.parse_committed_ranges(text) == extents
    # Any Range parser reads the Committed-Ranges value (PROTOCOL.md §4).
    if extents:
        specs = h.parse_range(text)
        assert [(s.first, s.last + 1) for s in specs] == extents


@st.composite
def range_specs(draw):
    kind = draw(st.sampled_from(["closed", "open", "suffix"]))
    if kind == "suffix":
        return ByteRangeSpec(suffix=draw(positions))
    first = draw(positions)
    if kind == "open":
        return ByteRangeSpec(first=first)
    return ByteRangeSpec(first=first, last=draw(st.integers(min_value=first, max_value=MAX)))


@given(st.lists(range_specs(), min_size=1, max_size=10))
def test_range_round_trip(specs):
    assert h.parse_range(h.format_range(specs)) == specs


# etagc = %x21 / %x23-7E / obs-text (%x80-FF)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                      exclude_characters='"\x7f')), st.booleans())
def test_etag_round_trip(opaque, weak):
    tag = ETag(opaque, weak)
    assert ETag.parse(tag.format()) == tag
    assert h.parse_etag_list(f"{tag.format()}, {tag.format()}") == [tag, tag]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1))
def test_content_disposition_round_trip(filename):
    text = h.format_content_disposition(filename)
    assert text.isascii()
    assert "\r" not in text and "\n" not in text
    assert h.parse_content_disposition_filename(text) == filename


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_digest_round_trip(d256, d512):
    text = f"{h.format_digest('sha-256', d256)}, {h.format_digest('sha-512', d512)}"
    parsed = h.parse_digest_field(text)
    assert parsed == {"sha-256": d256, "sha-512": d512}
    assert h.pick_digest(parsed) == ("sha-512", d512)


@given(st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc))))
def test_http_date_round_trip(moment):
    text = h.format_http_date(moment)
    expected = moment.replace(microsecond=0, tzinfo=timezone.utc)
    assert h.parse_if_range(text) == expected


# -- Range resolution ----------------------------------------------------------------------------


@given(st.lists(range_specs(), max_size=20), st.integers(min_value=0, max_value=10**6))
def test_resolve_ranges_within_representation(specs, size):
    resolved = h.resolve_ranges(specs, size)
    for start, stop in resolved:
        assert 0 <= start < stop <= size
    # Exactly the satisfiable specs survive, in request order.
    satisfiable = [
        s for s in specs
        if (s.suffix is not None and s.suffix > 0 and size > 0)
        or (s.first is not None and s.first < size)
    ]
    assert len(resolved) == len(satisfiable)
    for spec, (start, stop) in zip(satisfiable, resolved, strict=True):
        if spec.suffix is not None:
            assert (start, stop) == (max(0, size - spec.suffix), size)
        else:
            assert start == spec.first
            assert stop == (size if spec.last is None else min(spec.last + 1, size))


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 50)), max_size=140))
def test_should_reject_ranges_matches_brute_force(pairs):
    resolved = [(start, start + n) for start, n in pairs]
    overlapping = sum(
        any(i != j and a < d and c < b for j, (c, d) in enumerate(resolved))
        for i, (a, b) in enumerate(resolved)
    )
    expected = len(resolved) > 128 or overlapping > 2
    assert h.should_reject_ranges(resolved) is expected


# -- robustness: arbitrary text ------------------------------------------------------------------

# Text biased towards the characters these grammars care about, plus anything at all.
_HEADERISH = st.text(
    alphabet=st.sampled_from(list("bytes=-,/*; \t\"'\\:?%W0123456789١ _+aAeé\r\n")), max_size=40
)
ANY_TEXT = st.one_of(st.text(max_size=60), _HEADERISH)


def _only_client_errors(call, *args):
    try:
        call(*args)
    except ByterangeError as exc:
        assert 400 <= exc.status < 500, exc


PARSERS = {
    "parse_int": h.parse_int,
    "parse_sf_integer": h.parse_sf_integer,
    "parse_sf_boolean": h.parse_sf_boolean,
    "ContentRange.parse": ContentRange.parse,
    "ContentOffset.parse": ContentOffset.parse,
    "parse_committed_ranges": h.parse_committed_ranges,
    "ETag.parse": ETag.parse,
    "parse_etag_list": h.parse_etag_list,
    "parse_prefer": h.parse_prefer,
    "parse_digest_field": h.parse_digest_field,
    "parse_content_disposition_filename": h.parse_content_disposition_filename,
    "parse_range": h.parse_range,
    "parse_if_range": h.parse_if_range,
    "from_request_headers": lambda text: PartHeader.from_request_headers(text, len(text)),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    _only_client_errors(PARSERS[name], text)


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
    _only_client_errors(PartHeader.from_fields, tuple(fields))


@given(ANY_TEXT)
def test_parse_range_never_raises(text):
    result = h.parse_range(text)
    assert result is None or (isinstance(result, list) and result)
    assert all(isinstance(spec, ByteRangeSpec) for spec in result or [])


@given(ANY_TEXT)
def test_parse_if_range_never_raises(text):
    result = h.parse_if_range(text)
    assert isinstance(result, (ETag, datetime)) or result is h.IGNORE_RANGE


@given(st.lists(st.tuples(st.sampled_from(string.ascii_lowercase[:3]), ANY_TEXT), max_size=3))
def test_parse_prefer_on_many_lines(lines):
    _only_client_errors(h.parse_prefer, [text for _, text in lines])
