"""``application/byteranges``: varints, decoder (whole, byte by byte, random splits), errors,
encoders."""

from __future__ import annotations

import pytest
from decoding import OFFSET_0
from decoding import decode_all
from decoding import feed_three_ways
from decoding import run

from byterange_server.errors import LimitExceededError
from byterange_server.errors import MalformedBodyError
from byterange_server.errors import MissingRangeError
from byterange_server.errors import TruncatedBodyError
from byterange_server.protocol.binary import MAX_VARINT
from byterange_server.protocol.binary import BinaryDecoder
from byterange_server.protocol.binary import decode_varint
from byterange_server.protocol.binary import encode_indeterminate_chunk
from byterange_server.protocol.binary import encode_indeterminate_end
from byterange_server.protocol.binary import encode_indeterminate_head
from byterange_server.protocol.binary import encode_known_length
from byterange_server.protocol.binary import encode_known_length_head
from byterange_server.protocol.binary import encode_varint
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.parts import PartHeader

# The draft's example (docs/spec-notes.md#the-three-patch-formats-on-the-wire), byte for byte.
KNOWN = b"\x08\x1b\x0dcontent-range\x0cbytes 2-5/12\x04wxyz"
INDETERMINATE = b"\x0a\x0dcontent-range\x0cbytes 2-5/12\x00\x02wx\x02yz\x00"
CR = (("content-range", "bytes 2-5/12"),)
SECTION = b"\x0dcontent-range\x0cbytes 2-5/12"  # the 27-byte field section of both
# "content-offset: 0", the field that any content fits: 17 bytes (0x11) of field line, which the
# framing cases below put before the fields they are about.
OFF = b"\x0econtent-offset\x010"
F0 = (OFFSET_0,)


def start(fields: tuple[tuple[str, str], ...]) -> PartStart:
    return PartStart(PartHeader.from_fields(fields))


def test_golden_vectors() -> None:
    assert len(KNOWN) == 34 and len(INDETERMINATE) == 36
    assert decode_all(BinaryDecoder, KNOWN) == [(CR, b"wxyz")]
    assert decode_all(BinaryDecoder, INDETERMINATE) == [(CR, b"wxyz")]
    assert decode_all(BinaryDecoder, KNOWN + INDETERMINATE + KNOWN) == [(CR, b"wxyz")] * 3


def test_encoders_produce_the_golden_vectors() -> None:
    assert encode_known_length([("Content-Range", "bytes 2-5/12")], b"wxyz") == KNOWN
    assert encode_known_length_head({"content-range": "bytes 2-5/12"}, 4) + b"wxyz" == KNOWN
    assert (
        encode_indeterminate_head([("content-range", "bytes 2-5/12")])
        + encode_indeterminate_chunk(b"wx")
        + encode_indeterminate_chunk(b"")
        + encode_indeterminate_chunk(b"yz")
        + encode_indeterminate_end()
        == INDETERMINATE
    )


# RFC 9000 Appendix A.1 sample encodings, plus the limits of each length.
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        pytest.param(bytes.fromhex("c2197c5eff14e88c"), 151288809941952652, id="rfc9000-8-byte"),
        pytest.param(bytes.fromhex("9d7f3e7d"), 494878333, id="rfc9000-4-byte"),
        pytest.param(bytes.fromhex("7bbd"), 15293, id="rfc9000-2-byte"),
        pytest.param(bytes.fromhex("25"), 37, id="rfc9000-1-byte"),
        pytest.param(bytes.fromhex("4025"), 37, id="rfc9000-non-minimal"),
        pytest.param(bytes.fromhex("00"), 0, id="zero"),
        pytest.param(bytes.fromhex("3f"), 63, id="max-1"),
        pytest.param(bytes.fromhex("7fff"), 16383, id="max-2"),
        pytest.param(bytes.fromhex("bfffffff"), (1 << 30) - 1, id="max-4"),
        pytest.param(bytes.fromhex("ffffffffffffffff"), MAX_VARINT, id="max-8"),
    ],
)
def test_decode_varint(raw: bytes, value: int) -> None:
    assert decode_varint(raw) == (value, len(raw))
    assert decode_varint(b"\xff" + raw + b"\xff", 1) == (value, len(raw) + 1)
    for cut in range(len(raw)):
        assert decode_varint(raw[:cut]) is None


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4),
        ((1 << 30) - 1, 4), (1 << 30, 8), (MAX_VARINT, 8),
    ],
)
def test_encode_varint_is_minimal(value: int, size: int) -> None:
    raw = encode_varint(value)
    assert len(raw) == size and decode_varint(raw) == (value, size)


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_encode_varint_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"\x08\x11" + OFF + b"\x00", [(F0, b"")], id="empty-section-empty-content"),
        pytest.param(b"\x0a" + OFF + b"\x00\x00", [(F0, b"")], id="indeterminate-empty"),
        pytest.param(
            b"\x40\x08\x40\x1b" + SECTION + b"\x80\x00\x00\x04wxyz",
            [(CR, b"wxyz")],
            id="non-minimal-varints",
        ),
        pytest.param(
            b"\xc0\x00\x00\x00\x00\x00\x00\x0a" + SECTION + b"\x00\x40\x04wxyz\x00",
            [(CR, b"wxyz")],
            id="non-minimal-indeterminate",
        ),
        pytest.param(
            b"\x08\x1b\x0dContent-RANGE\x0cbytes 2-5/12\x04wxyz",
            [(CR, b"wxyz")],
            id="name-lower-cased",
        ),
        pytest.param(
            b"\x08\x18" + OFF + b"\x01a\x04 \tb \x00",
            [((OFFSET_0, ("a", "b")), b"")],
            id="value-ows-stripped",
        ),
        pytest.param(
            b"\x08\x14" + OFF + b"\x01a\x00\x00", [((OFFSET_0, ("a", "")), b"")], id="empty-value"
        ),
        pytest.param(
            b"\x0a\x01a\x011" + OFF + b"\x01b\x012\x01a\x013\x00\x00",
            [((("a", "1"), OFFSET_0, ("b", "2"), ("a", "3")), b"")],
            id="fields-in-order",
        ),
        pytest.param(
            b"\x08\x15" + OFF + b"\x01x\x01\xe9\x00", [((OFFSET_0, ("x", "\xe9")), b"")], id="obs-text"
        ),
        pytest.param(
            b"\x08\x11" + OFF + b"\x41\x00" + bytes(range(256)),
            [(F0, bytes(range(256)))],
            id="binary-content-2-byte-length",
        ),
    ],
)
def test_decodes(raw: bytes, expected: list[tuple[object, bytes]]) -> None:
    assert decode_all(BinaryDecoder, raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"", MalformedBodyError, id="empty-body-zero-parts"),
        pytest.param(b"\x00", MalformedBodyError, id="framing-indicator-0"),
        pytest.param(b"\x01", MalformedBodyError, id="framing-indicator-1"),
        pytest.param(b"\x09", MalformedBodyError, id="framing-indicator-9"),
        pytest.param(b"\x0b", MalformedBodyError, id="framing-indicator-11"),
        pytest.param(b"\x02\x00\x00\x00", MalformedBodyError, id="framing-indicator-2-bhttp"),
        pytest.param(b"\x40\x09", MalformedBodyError, id="framing-indicator-9-non-minimal"),
        pytest.param(b"\x08\x03\x00\x01a\x00", MalformedBodyError, id="name-length-0"),
        pytest.param(
            b"\x08\x06\x01a\x01b\x00\x01c\x00", MalformedBodyError, id="name-length-0-second"
        ),
        pytest.param(
            b"\x08\x1a" + SECTION + b"\x04wxyz", MalformedBodyError, id="section-length-short"
        ),
        pytest.param(
            b"\x08\x1c" + SECTION + b"\x04wxyz", MalformedBodyError, id="section-length-long"
        ),
        pytest.param(
            b"\x08\x02\x01a\x04wxyz", MalformedBodyError, id="section-ends-before-value-length"
        ),
        pytest.param(b"\x08\x02\x41\x00", MalformedBodyError, id="truncated-varint-in-section"),
        pytest.param(b"\x08\x04\x01 \x01b\x00", MalformedBodyError, id="space-name"),
        pytest.param(b"\x08\x04\x01:\x01b\x00", MalformedBodyError, id="colon-name"),
        pytest.param(b"\x08\x06\x03a b\x01b\x00", MalformedBodyError, id="inner-space-name"),
        pytest.param(b"\x08\x04\x01a\x01\n\x00", MalformedBodyError, id="lf-in-value"),
        pytest.param(b"\x08\x06\x01a\x03b\rc\x00", MalformedBodyError, id="cr-in-value"),
        pytest.param(b"\x08\x04\x01a\x01\x00\x00", MalformedBodyError, id="nul-in-value"),
        pytest.param(
            b"\x0a\x01a\x01\x7f\x00\x00", MalformedBodyError, id="del-in-value-indeterminate"
        ),
        pytest.param(
            b"\x0a\x01\xff\x01b\x00\x00", MalformedBodyError, id="non-ascii-name-indeterminate"
        ),
        pytest.param(b"\x40", TruncatedBodyError, id="truncated-varint-indicator"),
        pytest.param(b"\x08", TruncatedBodyError, id="eof-after-indicator"),
        pytest.param(b"\x08\x5f", TruncatedBodyError, id="truncated-varint-section-length"),
        pytest.param(b"\x08\x1b" + SECTION[:10], TruncatedBodyError, id="eof-in-known-section"),
        pytest.param(b"\x0a" + SECTION, TruncatedBodyError, id="eof-in-indeterminate-section"),
        pytest.param(b"\x0a\x01", TruncatedBodyError, id="eof-in-indeterminate-name"),
        pytest.param(
            b"\x08\x60\x01" + b"\x00" * 100, LimitExceededError, id="section-length-over-cap"
        ),
        pytest.param(
            b"\x0a" + b"\x01a\x01b" * 3000 + b"\x00\x00",
            LimitExceededError,
            id="indeterminate-section-over-cap",
        ),
        pytest.param(
            b"\x0a\x80\x01\x00\x00", LimitExceededError, id="indeterminate-name-length-over-cap"
        ),
        pytest.param(
            b"\x0a\x01a\x80\x01\x00\x00",
            LimitExceededError,
            id="indeterminate-value-length-over-cap",
        ),
        # Well-framed field sections that do not say where the part goes.
        pytest.param(b"\x08\x00\x00", MissingRangeError, id="empty-section"),
        pytest.param(b"\x0a\x00\x00", MissingRangeError, id="indeterminate-empty-section"),
    ],
)
def test_errors(raw: bytes, error: type[Exception]) -> None:
    outcome = feed_three_ways(BinaryDecoder, raw)
    assert outcome.error_type is error
    assert outcome.parts == []


def test_known_section_length_over_cap_fails_at_once() -> None:
    decoder = BinaryDecoder(max_header_bytes=26)
    decoder.receive_data(b"\x08\x1b")
    with pytest.raises(LimitExceededError) as info:
        decoder.next_event()
    assert info.value.extra == {"max-header-bytes": 26}
    assert decode_all(lambda: BinaryDecoder(max_header_bytes=27), KNOWN) == [(CR, b"wxyz")]


@pytest.mark.parametrize("cap", [27, 28, 40])
def test_indeterminate_section_cap_includes_terminator(cap: int) -> None:
    # The section of INDETERMINATE is 27 bytes of field lines plus the 1-byte terminator.
    outcome = feed_three_ways(lambda: BinaryDecoder(max_header_bytes=cap), INDETERMINATE)
    if cap >= 28:
        assert outcome.parts == [(CR, b"wxyz")]
    else:
        assert outcome.error_type is LimitExceededError
        assert outcome.error is not None and outcome.error.extra == {"max-header-bytes": cap}


@pytest.mark.parametrize(
    ("raw", "received", "ended"),
    [
        pytest.param(KNOWN[:-4], b"", False, id="known-eof-before-content"),
        pytest.param(KNOWN[:-2], b"wx", False, id="known-eof-in-content"),
        pytest.param(KNOWN[:-5], b"", False, id="known-eof-before-content-length"),
        pytest.param(INDETERMINATE[:-4], b"wx", False, id="indeterminate-eof-before-chunk"),
        pytest.param(INDETERMINATE[:-2], b"wxy", False, id="indeterminate-eof-in-chunk"),
        pytest.param(INDETERMINATE[:-1], b"wxyz", False, id="indeterminate-missing-terminator"),
        pytest.param(b"\x08\x11" + OFF + b"\x80\x00\x10\x00abc", b"abc", False, id="known-long-declared"),
        pytest.param(b"\x08\x11" + OFF + b"\x80", b"", False, id="known-eof-in-content-length-varint"),
    ],
)
def test_truncation_keeps_received_prefix(raw: bytes, received: bytes, ended: bool) -> None:
    outcome = feed_three_ways(BinaryDecoder, raw)
    assert outcome.error_type is TruncatedBodyError
    assert outcome.parts[-1][1] == received
    assert outcome.ended == [ended]


def test_eof_after_complete_message_is_the_end_even_mid_patch() -> None:
    outcome = feed_three_ways(BinaryDecoder, KNOWN + INDETERMINATE[:3])
    assert outcome.error_type is TruncatedBodyError
    assert outcome.parts == [(CR, b"wxyz")] and outcome.ended == [True]


def test_max_parts() -> None:
    assert len(decode_all(lambda: BinaryDecoder(max_parts=3), KNOWN * 3)) == 3
    outcome = feed_three_ways(lambda: BinaryDecoder(max_parts=2), KNOWN * 3)
    assert outcome.error_type is LimitExceededError
    assert outcome.error is not None and outcome.error.extra == {"max-parts": 2}
    assert outcome.parts == [(CR, b"wxyz")] * 2


def test_content_is_zero_copy_and_not_buffered() -> None:
    decoder = BinaryDecoder()
    size = 3 << 20
    decoder.receive_data(encode_known_length_head(CR, size))
    assert decoder.next_event() == start(CR)
    assert decoder.next_event() is NEED_DATA
    for _ in range(3):
        chunk = bytes(1 << 20)
        decoder.receive_data(chunk)
        event = decoder.next_event()
        assert isinstance(event, PartData) and event.data.obj is chunk
        assert len(event.data) == 1 << 20
    assert decoder.next_event() == PartEnd()
    assert decoder.next_event() is NEED_DATA


def test_content_and_next_message_in_one_chunk() -> None:
    chunk = KNOWN + INDETERMINATE
    outcome = run(BinaryDecoder(), [chunk])
    assert outcome.parts == [(CR, b"wxyz")] * 2


def test_several_messages_stream() -> None:
    parts = [(CR, b"a" * 100), (F0, b""), ((OFFSET_0, ("x", "y")), bytes(range(256)) * 70)]
    raw = b"".join(
        encode_known_length(fields, data)
        if i % 2 == 0
        else encode_indeterminate_head(fields)
        + encode_indeterminate_chunk(data[:7])
        + encode_indeterminate_chunk(data[7:])
        + encode_indeterminate_end()
        for i, (fields, data) in enumerate(parts * 2)
    )
    assert decode_all(BinaryDecoder, raw) == parts * 2


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([("Bad Name", "x")], id="space-in-name"),
        pytest.param([("A", "x\r\n")], id="crlf-in-value"),
        pytest.param([("A", "\u20ac")], id="not-latin-1"),
    ],
)
def test_encoder_rejects_bad_fields(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        encode_known_length(fields, b"")
    with pytest.raises(ValueError):
        encode_indeterminate_head(fields)
