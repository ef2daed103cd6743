"""The client's request bodies, read back by the server's own decoders, whole and byte by byte.

A body the client builds is only right if the server parses it into exactly the intended parts,
so every format is round-tripped through :func:`byterange_server.protocol.media.decoder_for`
(or the raw decoder for partial PUT), fed in one piece and one byte at a time.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from byterange_server import extents
from byterange_server.client.plan import Segment
from byterange_server.client.transport import Transient
from byterange_server.client.upload import _check_delimiter
from byterange_server.client.upload import _restrict
from byterange_server.client.wire import WireFormat
from byterange_server.client.wire import WireRequest
from byterange_server.client.wire import batch_segments
from byterange_server.client.wire import build_request
from byterange_server.extents import Extent
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import EndOfPatch
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.media import decoder_for
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.raw import RawDecoder

DATA = os.urandom(4096)


def body_of(request: WireRequest, data: bytes) -> bytes:
    return b"".join(
        piece if isinstance(piece, bytes) else data[piece.start : piece.stop] for piece in request.pieces
    )


def decode(request: WireRequest, body: bytes, *, bytewise: bool) -> list[tuple[str, bytes]]:
    """The (Content-Range, data) of every part the server would see."""
    if request.method == "PUT":
        header = PartHeader.from_request_headers(request.headers["Content-Range"], len(body))
        decoder = RawDecoder(header)
    else:
        decoder = decoder_for(request.headers["Content-Type"], max_header_bytes=8192, max_parts=1000)
    chunks = [body[i : i + 1] for i in range(len(body))] if bytewise else [body]
    parts: list[tuple[str, bytes]] = []
    current: list[bytes] = []
    cr = ""
    done = False
    for chunk in [*chunks, b""]:
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, PartStart):
                cr = dict(event.header.fields).get("content-range", "")
                current = []
            elif isinstance(event, PartData):
                current.append(bytes(event.data))
            elif isinstance(event, PartEnd):
                parts.append((cr, b"".join(current)))
            elif isinstance(event, EndOfPatch):
                done = True
                break
        if done:
            break
    assert done
    return parts


@pytest.mark.parametrize("fmt", list(WireFormat), ids=lambda f: f.name.lower())
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_single_segment_round_trips(fmt, bytewise):
    segment = Segment(100, 300)
    request = build_request(fmt, [segment], len(DATA))
    body = body_of(request, DATA)
    assert request.content_length == len(body)
    assert decode(request, body, bytewise=bytewise) == [(f"bytes 100-299/{len(DATA)}", DATA[100:300])]
    assert request.segments == (segment,)
    assert request.method == ("PUT" if fmt is WireFormat.PUT else "PATCH")


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_multipart_carries_many_segments(bytewise):
    segments = [Segment(0, 10), Segment(50, 51), Segment(4000, 4096)]
    request = build_request(WireFormat.MULTIPART, segments, len(DATA))
    body = body_of(request, DATA)
    assert request.content_length == len(body)
    assert request.boundary is not None and request.boundary.startswith(b"\r\n--")
    assert decode(request, body, bytewise=bytewise) == [
        (f"bytes {s.start}-{s.stop - 1}/{len(DATA)}", DATA[s.start : s.stop]) for s in segments
    ]


def test_unknown_total_is_a_star():
    request = build_request(WireFormat.PUT, [Segment(0, 4)], None)
    assert request.headers["Content-Range"] == "bytes 0-3/*"


def test_each_multipart_request_draws_a_new_boundary():
    a = build_request(WireFormat.MULTIPART, [Segment(0, 1)], 10)
    b = build_request(WireFormat.MULTIPART, [Segment(0, 1)], 10)
    assert a.boundary != b.boundary


def test_build_refuses_nonsense():
    with pytest.raises(ValueError):
        build_request(WireFormat.MESSAGE, [], 10)
    for fmt in (WireFormat.MESSAGE, WireFormat.BINARY, WireFormat.PUT):
        with pytest.raises(ValueError):
            build_request(fmt, [Segment(0, 1), Segment(2, 3)], 10)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("message", WireFormat.MESSAGE),
        ("MULTIPART", WireFormat.MULTIPART),
        ("application/byteranges", WireFormat.BINARY),
        ("put", WireFormat.PUT),
        (" message/byterange ", WireFormat.MESSAGE),
    ],
)
def test_format_names(name, fmt):
    assert WireFormat.parse(name) is fmt


def test_unknown_format_name():
    with pytest.raises(ValueError, match="choose from"):
        WireFormat.parse("tus")


# -- batching -------------------------------------------------------------------------------------


def test_single_segment_formats_never_batch():
    segments = [Segment(i, i + 1) for i in range(5)]
    batches = batch_segments(WireFormat.MESSAGE, segments, max_bytes=100, max_parts=100)
    assert batches == [(s,) for s in segments]


def test_multipart_batches_by_bytes_and_parts():
    segments = [Segment(i * 10, i * 10 + 4) for i in range(10)]  # 4 bytes each
    batches = batch_segments(WireFormat.MULTIPART, segments, max_bytes=12, max_parts=100)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    batches = batch_segments(WireFormat.MULTIPART, segments, max_bytes=1000, max_parts=4)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_a_segment_larger_than_max_bytes_travels_alone():
    segments = [Segment(0, 2), Segment(10, 100), Segment(200, 202)]
    batches = batch_segments(WireFormat.MULTIPART, segments, max_bytes=50, max_parts=10)
    assert batches == [(segments[0],), (segments[1],), (segments[2],)]


def test_batch_limits_must_be_positive():
    with pytest.raises(ValueError):
        batch_segments(WireFormat.MULTIPART, [], max_bytes=0, max_parts=1)


segment_lists = st.lists(st.integers(1, 50), max_size=40).map(
    lambda lengths: [Segment(sum(lengths[:i]) + i, sum(lengths[: i + 1]) + i) for i in range(len(lengths))]
)


@settings(max_examples=300)
@given(segment_lists, st.integers(1, 200), st.integers(1, 8))
def test_batches_partition_the_plan_in_order_within_limits(segments, max_bytes, max_parts):
    batches = batch_segments(WireFormat.MULTIPART, segments, max_bytes=max_bytes, max_parts=max_parts)
    assert [s for batch in batches for s in batch] == segments
    for batch in batches:
        assert 1 <= len(batch) <= max_parts
        assert len(batch) == 1 or sum(s.length for s in batch) <= max_bytes
    # Greedy: no batch could have taken the first segment of the next one.
    for batch, following in zip(batches, batches[1:], strict=False):
        fits = sum(s.length for s in batch) + following[0].length <= max_bytes
        assert not (fits and len(batch) < max_parts)


# -- resending only what is missing --------------------------------------------------------------


@settings(max_examples=300)
@given(
    segment_lists,
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 100)), max_size=10),
)
def test_restrict_keeps_exactly_the_uncommitted_bytes(segments, committed_spans):
    committed = sorted({(a, a + n) for a, n in committed_spans})
    normal = extents.normalize(committed)
    remaining = _restrict(segments, normal)
    wanted = extents.subtract(extents.normalize((s.start, s.stop) for s in segments), normal)
    assert extents.normalize((s.start, s.stop) for s in remaining) == wanted
    assert all(any(s.start <= r.start and r.stop <= s.stop for s in segments) for r in remaining)


def test_restrict_with_unknown_state_resends_everything():
    segments = [Segment(0, 4)]
    assert _restrict(segments, None) == segments
    assert _restrict(segments, [Extent(0, 4)]) == []


# -- the multipart delimiter guard ---------------------------------------------------------------


def _chunks(data: bytes, size: int) -> list[memoryview]:
    """Views that start at offset 0 of a bytearray, as Source.chunks yields them."""
    return [memoryview(bytearray(data[i : i + size])) for i in range(0, len(data), size)]


@pytest.mark.parametrize("position", [0, 1, 5, 7, 8, 9, 20])
@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
def test_delimiter_found_anywhere_even_across_chunks(position, chunk_size):
    delimiter = b"\r\n--abc"
    data = b"x" * position + delimiter + b"y" * 10
    tail = b"\r\n"
    with pytest.raises(Transient):
        for chunk in _chunks(data, chunk_size):
            tail = _check_delimiter(delimiter, tail, chunk)


def test_data_starting_with_dash_boundary_is_refused():
    # The part head ends in CRLF, so "--abc" at the start of the data forms the delimiter.
    with pytest.raises(Transient):
        _check_delimiter(b"\r\n--abc", b"\r\n", memoryview(bytearray(b"--abc and more")))


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_near_misses_pass(chunk_size):
    delimiter = b"\r\n--abc"
    data = b"\r\n--ab\r\n-abc\r--abc\n--abc" * 3
    tail = b"\r\n"
    for chunk in _chunks(data, chunk_size):
        tail = _check_delimiter(delimiter, tail, chunk)
