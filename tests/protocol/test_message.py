"""``message/byterange``: decoder (whole, byte by byte, random splits), errors, encoder."""

from __future__ import annotations

import pytest
from decoding import OFFSET_0
from decoding import OFFSET_0_LINE as O
from decoding import decode_all
from decoding import feed_three_ways
from decoding import run

from byterange_server.errors import LimitExceededError
from byterange_server.errors import MalformedBodyError
from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import MissingRangeError
from byterange_server.errors import TruncatedBodyError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import EndOfPatch
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.message import MessageDecoder
from byterange_server.protocol.message import encode_message
from byterange_server.protocol.message import encode_message_head
from byterange_server.protocol.message import format_fields
from byterange_server.protocol.message import parse_field_line
from byterange_server.protocol.parts import PartHeader

# docs/spec-notes.md#the-three-patch-formats-on-the-wire: writing "wxyz" at offset 2 of
# "0123456789\r\n" (Content-Length: 35).
GOLDEN = b"Content-Range: bytes 2-5/12\r\n\r\nwxyz"
CR = (("content-range", "bytes 2-5/12"),)


def start(fields: tuple[tuple[str, str], ...]) -> PartStart:
    return PartStart(PartHeader.from_fields(fields))


def test_golden_vector() -> None:
    assert len(GOLDEN) == 35
    assert decode_all(MessageDecoder, GOLDEN) == [(CR, b"wxyz")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(GOLDEN, [(CR, b"wxyz")], id="golden"),
        pytest.param(
            b"Content-Range: bytes 0-0/*\r\n\r\n",
            [((("content-range", "bytes 0-0/*"),), b"")],
            id="empty-body",
        ),
        pytest.param(
            O + b"A: 1\r\n\r\n\r\n\r\nX: y\r\n\r\n",
            [((OFFSET_0, ("a", "1")), b"\r\n\r\nX: y\r\n\r\n")],
            id="only-first-blank-line-ends-fields",
        ),
        pytest.param(
            O + b"A: 1\r\n\r\nbare\nlf\rcr",
            [((OFFSET_0, ("a", "1")), b"bare\nlf\rcr")],
            id="body-is-opaque",
        ),
        pytest.param(
            b"Content-RANGE:   bytes 2-5/12 \t \r\n\r\nwxyz",
            [(CR, b"wxyz")],
            id="name-lowered-ows-stripped",
        ),
        pytest.param(O + b"A:b\r\n\r\n", [((OFFSET_0, ("a", "b")), b"")], id="no-ows"),
        pytest.param(O + b"X-Empty:\r\n\r\n", [((OFFSET_0, ("x-empty", "")), b"")], id="empty-value"),
        pytest.param(
            O + b"X-Empty: \t \r\n\r\n", [((OFFSET_0, ("x-empty", "")), b"")], id="ows-only-value"
        ),
        pytest.param(
            O + b"X-V: a \t b:c\r\n\r\n",
            [((OFFSET_0, ("x-v", "a \t b:c")), b"")],
            id="inner-whitespace-and-colon",
        ),
        pytest.param(
            O + b"X-Latin: caf\xe9\r\n\r\n",
            [((OFFSET_0, ("x-latin", "caf\xe9")), b"")],
            id="obs-text-latin-1",
        ),
        pytest.param(
            b"B: 2\r\nA: 1\r\n" + O + b"b: 3\r\n\r\n",
            [((("b", "2"), ("a", "1"), OFFSET_0, ("b", "3")), b"")],
            id="order-and-duplicates-kept",
        ),
        pytest.param(
            O + b"!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n",
            [((OFFSET_0, ("!#$%&'*+-.^_`|~09azaz", "v")), b"")],
            id="every-tchar",
        ),
    ],
)
def test_decodes(raw: bytes, expected: list[tuple[object, bytes]]) -> None:
    assert decode_all(MessageDecoder, raw) == expected


def test_part_start_carries_the_parsed_header() -> None:
    decoder = MessageDecoder()
    decoder.receive_data(b"Content-Range: bytes 2-5/12\r\nRepr-Digest: sha-256=:x:\r\n\r\nwxyz")
    event = decoder.next_event()
    assert isinstance(event, PartStart)
    assert (event.header.start, event.header.stop, event.header.length) == (2, 6, 12)
    assert event.header.get_all("Repr-Digest") == ["sha-256=:x:"]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"A: 1\r\n\r\nwxyz", MissingRangeError, id="no-range"),
        pytest.param(b"Content-Range: items 2-5/12\r\n\r\nwxyz", UnsupportedRangeUnitError, id="unit"),
        pytest.param(
            b"Content-Range: bytes 2-5/12\r\nContent-Offset: 2\r\n\r\nwxyz",
            MalformedHeaderError,
            id="two-ranges",
        ),
        pytest.param(b"Content-Range: bytes 5-2/12\r\n\r\nwxyz", MalformedHeaderError, id="bad-range"),
    ],
)
def test_a_part_that_does_not_say_where_it_goes_is_refused(raw: bytes, error: type[Exception]) -> None:
    outcome = feed_three_ways(MessageDecoder, raw)
    assert outcome.error_type is error
    assert outcome.parts == []


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"", MalformedBodyError, id="empty-body-zero-parts"),
        pytest.param(b"Content-Range: bytes 2-5/12\n\nwxyz", MalformedBodyError, id="bare-lf"),
        pytest.param(b"A: 1\r\n\nwxyz", MalformedBodyError, id="bare-lf-blank-line"),
        pytest.param(b"\nwxyz", MalformedBodyError, id="bare-lf-first-line"),
        pytest.param(b"A: 1\r\nB: 2\n\r\n", MalformedBodyError, id="bare-lf-second-line"),
        pytest.param(b"A: 1\r\n", TruncatedBodyError, id="missing-blank-line"),
        pytest.param(b"A: 1\r\nB", TruncatedBodyError, id="ends-mid-line"),
        pytest.param(b"A: 1\r", TruncatedBodyError, id="ends-after-cr"),
        pytest.param(b"wxyz", TruncatedBodyError, id="raw-body-no-field-block"),
        pytest.param(b"A" * 9000, LimitExceededError, id="no-blank-line-within-cap"),
        pytest.param(b"A: " + b"x" * 9000 + b"\r\n\r\n", LimitExceededError, id="over-long-line"),
        pytest.param(b"Bad Name: x\r\n\r\n", MalformedBodyError, id="space-in-name"),
        pytest.param(b"A : x\r\n\r\n", MalformedBodyError, id="space-before-colon"),
        pytest.param(b"a@b: x\r\n\r\n", MalformedBodyError, id="non-tchar-in-name"),
        pytest.param(b"(a): x\r\n\r\n", MalformedBodyError, id="delimiter-in-name"),
        pytest.param(b": x\r\n\r\n", MalformedBodyError, id="empty-name"),
        pytest.param(b"no colon\r\n\r\n", MalformedBodyError, id="no-colon"),
        pytest.param(b"A: 1\r\n folded\r\n\r\n", MalformedBodyError, id="obs-fold-space"),
        pytest.param(b"A: 1\r\n\tfolded\r\n\r\n", MalformedBodyError, id="obs-fold-tab"),
        pytest.param(b" A: 1\r\n\r\n", MalformedBodyError, id="leading-space"),
        pytest.param(b"A: b\x00c\r\n\r\n", MalformedBodyError, id="nul-in-value"),
        pytest.param(b"A: b\rc\r\n\r\n", MalformedBodyError, id="bare-cr-in-value"),
        pytest.param(b"A: b\x7fc\r\n\r\n", MalformedBodyError, id="del-in-value"),
        pytest.param(b"A: b\x0bc\r\n\r\n", MalformedBodyError, id="vt-in-value"),
        pytest.param(b"\xe9: x\r\n\r\n", MalformedBodyError, id="non-ascii-name"),
        # A well-framed field block that does not say where the part goes.
        pytest.param(b"\r\nabc", MissingRangeError, id="no-fields"),
        pytest.param(b"\r\n", MissingRangeError, id="blank-line-only"),
    ],
)
def test_errors(raw: bytes, error: type[Exception]) -> None:
    outcome = feed_three_ways(MessageDecoder, raw)
    assert outcome.error_type is error
    assert outcome.parts == []


def test_over_long_field_block_reports_limit() -> None:
    outcome = run(MessageDecoder(max_header_bytes=100), [b"A: " + b"x" * 200])
    assert isinstance(outcome.error, LimitExceededError)
    assert outcome.error.status == 400
    assert outcome.error.extra == {"max-header-bytes": 100}


@pytest.mark.parametrize("cap", [6, 7, 16, 100])
def test_cap_includes_blank_line_exactly(cap: int) -> None:
    # `cap` bytes past the range line every part needs: "A:", its padding and the blank line.
    limit = len(O) + cap
    head = O + b"A:" + b"x" * (cap - 6) + b"\r\n\r\n"  # exactly `limit` bytes
    assert len(head) == limit
    assert feed_three_ways(lambda: MessageDecoder(limit), head + b"body").parts == [
        ((OFFSET_0, ("a", "x" * (cap - 6))), b"body")
    ]
    longer = O + b"A:" + b"x" * (cap - 5) + b"\r\n\r\n"
    assert feed_three_ways(lambda: MessageDecoder(limit), longer).error_type is LimitExceededError


def test_limit_fails_before_whole_block_arrives() -> None:
    decoder = MessageDecoder(max_header_bytes=10)
    decoder.receive_data(b"A: 12345678")  # 11 bytes, no LF: the block cannot fit any more
    with pytest.raises(LimitExceededError):
        decoder.next_event()


def test_body_is_zero_copy_views_of_received_chunks() -> None:
    decoder = MessageDecoder()
    first = GOLDEN + b"0" * 1000
    second = b"1" * (1 << 20)
    decoder.receive_data(first)
    assert decoder.next_event() == start(CR)
    event = decoder.next_event()
    assert isinstance(event, PartData)
    assert event.data.obj is first and bytes(event.data) == b"wxyz" + b"0" * 1000
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(second)
    event = decoder.next_event()
    assert isinstance(event, PartData)
    assert event.data.obj is second and len(event.data) == len(second)
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    assert decoder.next_event() == PartEnd()
    assert decoder.next_event() == EndOfPatch()
    assert decoder.next_event() == EndOfPatch()


def test_several_chunks_queued_before_next_event() -> None:
    decoder = MessageDecoder()
    for chunk in (O + b"A: 1\r", b"\n\r\nab", b"cd", b""):
        decoder.receive_data(chunk)
    events = []
    while not isinstance(event := decoder.next_event(), EndOfPatch):
        events.append(event)
    assert events[0] == start((OFFSET_0, ("a", "1")))
    assert b"".join(bytes(e.data) for e in events if isinstance(e, PartData)) == b"abcd"
    assert events[-1] == PartEnd()


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_mutable_input_is_copied(kind: type) -> None:
    buf = bytearray(GOLDEN)
    outcome = run(MessageDecoder(), [kind(buf)])
    buf[-4:] = b"XXXX"
    assert outcome.parts == [(CR, b"wxyz")]


def test_error_state_is_sticky() -> None:
    decoder = MessageDecoder()
    decoder.receive_data(b"A: 1\n\n")
    with pytest.raises(MalformedBodyError):
        decoder.next_event()
    decoder.receive_data(b"\r\n\r\n")  # ignored
    with pytest.raises(MalformedBodyError):
        decoder.next_event()


def test_truncated_field_block_is_raised_after_eof_only() -> None:
    decoder = MessageDecoder()
    decoder.receive_data(b"A: 1\r\n")
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    with pytest.raises(TruncatedBodyError) as info:
        decoder.next_event()
    assert info.value.status == 400


def test_data_after_eof_is_a_caller_bug() -> None:
    decoder = MessageDecoder()
    decoder.receive_data(b"")
    decoder.receive_data(b"")  # repeating the end is harmless
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"x")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"Content-Range: bytes 0-1/2", ("content-range", "bytes 0-1/2")),
        (b"x:", ("x", "")),
        (b"X:\t a b \t", ("x", "a b")),
    ],
)
def test_parse_field_line(line: bytes, expected: tuple[str, str]) -> None:
    assert parse_field_line(line) == expected


def test_encode_golden() -> None:
    assert encode_message([("Content-Range", "bytes 2-5/12")], b"wxyz") == GOLDEN
    assert encode_message_head({"Content-Range": "bytes 2-5/12"}) + b"wxyz" == GOLDEN
    assert encode_message_head([]) == b"\r\n"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([("Bad Name", "x")], id="space-in-name"),
        pytest.param([("", "x")], id="empty-name"),
        pytest.param([("A", "x\r\nInjected: 1")], id="crlf-injection"),
        pytest.param([("A", "x\ny")], id="lf-in-value"),
        pytest.param([("A", "x\x00")], id="nul-in-value"),
        pytest.param([("A", "\u20ac")], id="not-latin-1"),
        pytest.param([("N\u00e4me", "x")], id="non-ascii-name"),
    ],
)
def test_encoder_rejects_what_the_decoder_would(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        format_fields(fields)
