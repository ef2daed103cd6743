"""``multipart/byteranges``: decoder (whole, byte by byte, random splits), errors, encoder."""

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
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.multipart import MultipartDecoder
from byterange_server.protocol.multipart import MultipartEncoder
from byterange_server.protocol.multipart import encode_multipart
from byterange_server.protocol.multipart import make_boundary
from byterange_server.protocol.multipart import validate_boundary
from byterange_server.protocol.parts import PartHeader

# docs/spec-notes.md#the-three-patch-formats-on-the-wire: "abcd" at 0 and "ijkl" at 8 (Content-Length: 98).
GOLDEN = (
    b"--SEP\r\n"
    b"Content-Range: bytes 0-3/12\r\n"
    b"\r\n"
    b"abcd\r\n"
    b"--SEP\r\n"
    b"Content-Range: bytes 8-11/12\r\n"
    b"\r\n"
    b"ijkl\r\n"
    b"--SEP--\r\n"
)
GOLDEN_PARTS = [
    ((("content-range", "bytes 0-3/12"),), b"abcd"),
    ((("content-range", "bytes 8-11/12"),), b"ijkl"),
]
F = (OFFSET_0,)


def start(fields: tuple[tuple[str, str], ...]) -> PartStart:
    return PartStart(PartHeader.from_fields(fields))


def sep(**kwargs: int) -> MultipartDecoder:
    return MultipartDecoder("SEP", **kwargs)


def test_golden_vector() -> None:
    assert len(GOLDEN) == 98
    assert decode_all(sep, GOLDEN) == GOLDEN_PARTS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(GOLDEN, GOLDEN_PARTS, id="golden"),
        pytest.param(GOLDEN[:-2], GOLDEN_PARTS, id="no-crlf-after-close"),
        pytest.param(
            b"This is a preamble.\r\nstill --SEP not at line start\r\n" + GOLDEN,
            GOLDEN_PARTS,
            id="preamble",
        ),
        pytest.param(b"\r\n\r\n" + GOLDEN, GOLDEN_PARTS, id="crlfs-before-first-boundary"),
        pytest.param(GOLDEN + b"epilogue\r\n--SEP\r\ngarbage", GOLDEN_PARTS, id="epilogue-ignored"),
        pytest.param(
            b"--SEP \t \r\nContent-Offset: 0\r\n\r\nab\r\n"
            b"--SEP\t\r\nContent-Offset: 0\r\n\r\ncd\r\n--SEP-- \r\n",
            [(F, b"ab"), (F, b"cd")],
            id="transport-padding",
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\n--SEP--", [(F, b"")], id="empty-body-blank-line-is-crlf"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\n\r\n--SEP--", [(F, b"")], id="empty-body-extra-crlf"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\n\r\n\r\n--SEP--", [(F, b"\r\n")], id="body-is-one-crlf"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\n"
            b"\r\r\n\n--\r\n-\r\n--S\r\n--SE \r\n--sep\n--SEP\r--SEPx--SEP"
            b"\r\n--SEP--",
            [(F, b"\r\r\n\n--\r\n-\r\n--S\r\n--SE \r\n--sep\n--SEP\r--SEPx--SEP")],
            id="near-delimiters-are-data",
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\n" + bytes(range(256)) * 4 + b"\r\n--SEP--",
            [(F, bytes(range(256)) * 4)],
            id="binary-body",
        ),
        pytest.param(
            b"--SEP\r\nA: 1\r\nb:  2 \r\n" + O + b"A: 3\r\n\r\nx\r\n--SEP--",
            [((("a", "1"), ("b", "2"), OFFSET_0, ("a", "3")), b"x")],
            id="fields-in-order",
        ),
    ],
)
def test_decodes(raw: bytes, expected: list[tuple[object, bytes]]) -> None:
    assert decode_all(sep, raw) == expected


@pytest.mark.parametrize(
    "boundary",
    [
        pytest.param("a", id="one-char"),
        pytest.param("x" * 70, id="seventy-chars"),
        pytest.param("a b", id="inner-space"),
        pytest.param("'()+_,-./:=?09AZaz", id="every-special-bchar"),
        pytest.param("--", id="dashes"),
    ],
)
def test_boundaries(boundary: str) -> None:
    parts = [(F, b"one\r\n-"), (F, b""), (F, b"-" + boundary.encode())]
    raw = encode_multipart(parts, boundary)
    assert decode_all(lambda: MultipartDecoder(boundary), raw) == parts


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"", MalformedBodyError, id="empty-body"),
        pytest.param(b"preamble only, no delimiter\r\n", MalformedBodyError, id="no-delimiter"),
        pytest.param(b"--SEP--\r\n", MalformedBodyError, id="zero-parts-close-only"),
        pytest.param(b"preamble\r\n--SEP--", MalformedBodyError, id="zero-parts-after-preamble"),
        pytest.param(b"--SEPX\r\n", MalformedBodyError, id="first-boundary-line-garbage"),
        pytest.param(b"--SEP\rContent-Offset: 0\r\n\r\n", MalformedBodyError, id="cr-without-lf"),
        pytest.param(b"--SEP\nContent-Offset: 0\r\n\r\n", MalformedBodyError, id="bare-lf-after-boundary"),
        pytest.param(
            b"--SEP\n\nContent-Offset: 0\r\n\r\nx\r\n--SEP--", MalformedBodyError, id="lf-lf-after-boundary"
        ),
        pytest.param(b"--SEP \tx\r\n", MalformedBodyError, id="garbage-after-padding"),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\n\nab\r\n--SEP--", MalformedBodyError, id="bare-lf-in-fields"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\nab\r\n--SEP--", MalformedBodyError, id="bare-lf-blank-line"
        ),
        pytest.param(
            b"--SEP\r\nBad Name: 1\r\n\r\n\r\n--SEP--", MalformedBodyError, id="bad-field-name"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n folded\r\n\r\n\r\n--SEP--", MalformedBodyError, id="obs-fold"
        ),
        pytest.param(
            b"--SEP\r\nf: a\x00b\r\n\r\n\r\n--SEP--", MalformedBodyError, id="nul-in-value"
        ),
        pytest.param(b"--SEP\r\nnocolon\r\n\r\n\r\n--SEP--", MalformedBodyError, id="no-colon"),
        pytest.param(b"--SEP\r\n--SEP--\r\n", MalformedBodyError, id="delimiter-where-fields-are"),
        pytest.param(b"--SEP\r\nf: " + b"x" * 9000, LimitExceededError, id="over-long-field-block"),
        pytest.param(
            b"--SEP\r\n" + b"Content-Offset: 0\r\n" * 2000 + b"\r\nx\r\n--SEP--",
            LimitExceededError,
            id="too-many-field-lines",
        ),
        pytest.param(b"--SEP", TruncatedBodyError, id="eof-after-first-boundary"),
        pytest.param(b"--SEP \t", TruncatedBodyError, id="eof-in-padding"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n", TruncatedBodyError, id="eof-in-fields"),
        pytest.param(b"--SEP\r\nContent-Offset: 0", TruncatedBodyError, id="eof-mid-field-line"),
        # A well-framed field block that does not say where the part goes.
        pytest.param(b"--SEP\r\n\r\nabc\r\n--SEP--", MissingRangeError, id="no-fields"),
        pytest.param(b"--SEP\r\n\r\n--SEP--", MissingRangeError, id="no-fields-no-body"),
    ],
)
def test_errors(raw: bytes, error: type[Exception]) -> None:
    outcome = feed_three_ways(sep, raw)
    assert outcome.error_type is error
    assert outcome.parts == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nab\r\n--SEPX\r\n", id="boundary-prefix-in-data"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nab\r\n--SEP-x", id="single-dash"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nab\r\n--SEP \r", id="cr-then-eof-is-truncated"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nab\r\n--SEP \rx", id="cr-without-lf-after-part"),
    ],
)
def test_bad_delimiter_line_after_a_part(raw: bytes) -> None:
    outcome = feed_three_ways(sep, raw)
    assert issubclass(outcome.error_type or type(None), MalformedBodyError)
    assert outcome.parts == [(F, b"ab")] and outcome.ended == [True]


@pytest.mark.parametrize(
    ("raw", "received", "ended"),
    [
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\n", b"", False, id="eof-after-fields"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd", b"abcd", False, id="eof-in-body"),
        pytest.param(b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd\r", b"abcd", False, id="eof-after-cr"),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd\r\n--SE", b"abcd", False, id="eof-in-delimiter"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\nab\rcd", b"ab\rcd", False, id="eof-after-lone-cr-in-data"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd\r\n--SEP", b"abcd", True, id="missing-close-delimiter"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd\r\n--SEP-", b"abcd", True, id="half-close-delimiter"
        ),
        pytest.param(
            b"--SEP\r\nContent-Offset: 0\r\n\r\nabcd\r\n--SEP\r\n", b"abcd", True, id="eof-before-next-part"
        ),
    ],
)
def test_truncation_keeps_received_prefix(raw: bytes, received: bytes, ended: bool) -> None:
    outcome = feed_three_ways(sep, raw)
    assert outcome.error_type is TruncatedBodyError
    assert outcome.parts == [(F, received)]
    assert outcome.ended == [ended]


def test_a_later_part_without_a_range_fails_once_the_earlier_ones_are_out() -> None:
    raw = GOLDEN.replace(b"Content-Range: bytes 8-11/12", b"X: 1")
    outcome = feed_three_ways(sep, raw)
    assert outcome.error_type is MissingRangeError
    assert outcome.parts == [GOLDEN_PARTS[0]] and outcome.ended == [True]


def test_truncation_in_second_part() -> None:
    outcome = feed_three_ways(sep, GOLDEN[:85])
    assert outcome.error_type is TruncatedBodyError
    assert outcome.parts == [GOLDEN_PARTS[0], (GOLDEN_PARTS[1][0], b"ij")]
    assert outcome.ended == [True, False]


def test_over_long_field_block_reports_limit() -> None:
    outcome = run(sep(max_header_bytes=64), [b"--SEP\r\nf: " + b"x" * 100])
    assert isinstance(outcome.error, LimitExceededError)
    assert outcome.error.extra == {"max-header-bytes": 64}


def test_max_parts() -> None:
    body = encode_multipart([(F, b"x")] * 3, "SEP")
    assert len(feed_three_ways(lambda: sep(max_parts=3), body).parts) == 3
    outcome = feed_three_ways(lambda: sep(max_parts=2), body)
    assert outcome.error_type is LimitExceededError
    assert outcome.error is not None and outcome.error.extra == {"max-parts": 2}
    assert outcome.parts == [(F, b"x"), (F, b"x")]


def test_body_is_zero_copy_and_held_back_only_at_a_possible_delimiter() -> None:
    decoder = sep()
    decoder.receive_data(b"--SEP\r\nContent-Offset: 0\r\n\r\n")
    assert decoder.next_event() == start(F)
    assert decoder.next_event() is NEED_DATA

    chunk = b"a" * (1 << 20)
    decoder.receive_data(chunk)
    event = decoder.next_event()
    assert isinstance(event, PartData) and event.data.obj is chunk and len(event.data) == len(chunk)
    assert decoder.next_event() is NEED_DATA

    chunk = b"b" * 1000 + b"\r\n--SE"  # ends with a proper prefix of the delimiter: held back
    decoder.receive_data(chunk)
    event = decoder.next_event()
    assert isinstance(event, PartData) and event.data.obj is chunk
    assert bytes(event.data) == b"b" * 1000
    assert decoder.next_event() is NEED_DATA

    decoder.receive_data(b"X")  # not a delimiter after all: the held-back bytes are data
    event = decoder.next_event()
    assert isinstance(event, PartData) and bytes(event.data) == b"\r\n--SE"
    event = decoder.next_event()
    assert isinstance(event, PartData) and bytes(event.data) == b"X"

    chunk = b"c" * 10 + b"\r\n--SEP--"
    decoder.receive_data(chunk)
    event = decoder.next_event()
    assert isinstance(event, PartData) and event.data.obj is chunk
    assert bytes(event.data) == b"c" * 10
    assert decoder.next_event() == PartEnd()


def test_hold_back_never_exceeds_delimiter_minus_one() -> None:
    boundary = "b" * 70
    delimiter = b"\r\n--" + boundary.encode()
    decoder = MultipartDecoder(boundary)
    decoder.receive_data(b"--" + boundary.encode() + b"\r\n" + O + b"\r\n")
    assert isinstance(decoder.next_event(), PartStart)
    received = emitted = 0
    for chunk in (b"x" * 5 + delimiter[:-1], b"\r" + delimiter[1:-1], b"y", b"\r"):
        decoder.receive_data(chunk)
        received += len(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            assert isinstance(event, PartData)
            emitted += len(event.data)
        assert received - emitted <= len(delimiter) - 1
    assert received - emitted == 1  # the final CR


def test_delimiter_search_is_linear() -> None:
    # Many near-delimiters in many small chunks: a rescanning decoder would be quadratic.
    body = (b"\r\n--SE" + b"x" * 10) * 20000
    raw = b"--SEP\r\n" + O + b"\r\n" + body + b"\r\n--SEP--"
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    assert run(sep(), chunks).parts == [(F, body)]


def test_constructor_rejects_bad_boundary() -> None:
    with pytest.raises(MalformedHeaderError):
        MultipartDecoder("x" * 71)


@pytest.mark.parametrize(
    "boundary", ["a", "x" * 70, "a b", "'()+_,-./:=?", "0123456789", "AbC-xyz_1.2"]
)
def test_validate_boundary_accepts(boundary: str) -> None:
    assert validate_boundary(boundary) == boundary


@pytest.mark.parametrize(
    "boundary",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 71, id="seventy-one"),
        pytest.param("a ", id="trailing-space"),
        pytest.param(" ", id="only-space"),
        pytest.param("a\tb", id="tab"),
        pytest.param('a"b', id="quote"),
        pytest.param("a;b", id="semicolon"),
        pytest.param("a\r\nb", id="crlf"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a\n", id="trailing-newline"),
    ],
)
def test_validate_boundary_rejects(boundary: str) -> None:
    with pytest.raises(MalformedHeaderError) as info:
        validate_boundary(boundary)
    assert info.value.status == 400


def test_make_boundary() -> None:
    first, second = make_boundary(), make_boundary()
    assert validate_boundary(first) == first and first != second


def test_encoder_golden() -> None:
    assert (
        encode_multipart(
            [
                ([("Content-Range", "bytes 0-3/12")], b"abcd"),
                ({"Content-Range": "bytes 8-11/12"}, b"ijkl"),
            ],
            "SEP",
        )
        == GOLDEN
    )


def test_encoder_streaming_pieces() -> None:
    encoder = MultipartEncoder("SEP")
    assert encoder.part_head([("A", "1")]) == b"--SEP\r\nA: 1\r\n\r\n"
    assert encoder.part_head([]) == b"\r\n--SEP\r\n\r\n"
    assert encoder.closing() == b"\r\n--SEP--\r\n"
    assert encoder.content_type == "multipart/byteranges; boundary=SEP"
    assert MultipartEncoder("a b").content_type == 'multipart/byteranges; boundary="a b"'


def test_encoder_errors() -> None:
    with pytest.raises(ValueError):
        MultipartEncoder("SEP").closing()
    with pytest.raises(MalformedHeaderError):
        MultipartEncoder("bad boundary ")
    with pytest.raises(ValueError):
        encode_multipart([(F, b"x\r\n--SEP")], "SEP")
    with pytest.raises(ValueError):
        encode_multipart([(F, b"--SEP")], "SEP")  # would follow the blank line's CRLF
    with pytest.raises(ValueError):
        encode_multipart([], "SEP")
    with pytest.raises(ValueError):
        encode_multipart([([("A", "1\r\n")], b"")], "SEP")
