"""The worker's body readers (byterange_server/runtime/worker.py): the strict chunked decoder and the
``wsgi.input`` stream, over a real socket pair. The worker itself runs in tests/e2e."""

from __future__ import annotations

import socket
import threading

import pytest
from gunicorn.http.unreader import SocketUnreader

from byterange_server.runtime.worker import BodyFramingError
from byterange_server.runtime.worker import ChunkedDecoder
from byterange_server.runtime.worker import IncompleteBodyError
from byterange_server.runtime.worker import WireBody

VALID = b"5\r\nhello\r\n6;ext=1;q=\"a b\"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"


def _feed_all(data: bytes, step: int) -> tuple[ChunkedDecoder, bytes]:
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    return decoder, out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_the_decoder_gives_the_same_result_however_the_bytes_are_split(step):
    decoder, out = _feed_all(VALID, step)
    assert out == b"hello world"
    assert decoder.done and decoder.error is None
    assert decoder.trailers == b"X-Sum: 1"
    assert decoder.rest == b"NEXT"


def test_leading_zeros_and_uppercase_hex_are_sizes():
    decoder, out = _feed_all(b"000A\r\n0123456789\r\n00\r\n\r\n", 4)
    assert out == b"0123456789" and decoder.done


@pytest.mark.parametrize(
    ("body", "before"),
    [
        (b"0x5\r\nabcde\r\n", b""),
        (b"-5\r\nabcde\r\n", b""),
        (b" 5\r\nabcde\r\n", b""),
        (b"5 \r\nabcde\r\n", b""),
        (b"\r\nabcde\r\n", b""),
        (b"5\nabcde\r\n", b""),
        (b"5\r\nabcdeXY", b"abcde"),
        (b"5\r\nabcde\n5\r\n", b"abcde"),
        (b"3\r\nabc\r\n5;\r\nabcde\r\n", b"abc"),
        (b"3\r\nabc\r\n5;a=\r\nabcde\r\n", b"abc"),
        (b"10000000000000000\r\n", b""),
        (b"0" * 9000 + b"5\r\n", b""),
        (b"2\r\nab\r\n0\r\nbad\rtrailer\r\n\r\n", b"ab"),
        (b"2\r\nab\r\n0\r\nbad\ntrailer\r\n\r\n", b"ab"),
    ],
)
@pytest.mark.parametrize("step", [1, 4096])
def test_malformed_framing_is_an_error_after_the_data_before_it(body, before, step):
    decoder, out = _feed_all(body, step)
    assert out == before
    assert isinstance(decoder.error, BodyFramingError)
    assert not decoder.done
    assert decoder.feed(b"5\r\nmore!\r\n") == b""  # nothing is decoded after the break


def test_a_partial_chunk_is_returned_as_it_arrives():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"10\r\n0123") == b"0123"
    assert decoder.feed(b"456789abcdef") == b"456789abcdef"
    assert decoder.feed(b"\r") == b"" and decoder.error is None
    assert decoder.feed(b"\n0\r\n\r\n") == b"" and decoder.done


class _Request:
    """What WireBody needs of gunicorn's request: its unreader, and its trailer parser."""

    def __init__(self, sock: socket.socket) -> None:
        self.unreader = SocketUnreader(sock)
        self.trailers: list[tuple[str, str]] = []

    def parse_headers(self, data: bytes, from_trailer: bool = False) -> list[tuple[str, str]]:
        fields = []
        for line in data.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon:
                from gunicorn.http.errors import InvalidHeader

                raise InvalidHeader(line)
            fields.append((name.decode().upper(), value.decode().strip()))
        return fields


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_read_returns_what_arrived_without_waiting_for_a_full_buffer(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=None)
    client.sendall(b"100\r\n" + b"x" * 10)
    assert body.read(65536) == b"x" * 10  # 256 bytes announced, 10 arrived: returned at once
    client.sendall(b"x" * 246 + b"\r\n0\r\nA: b\r\n\r\nGET")
    assert body.read(65536) == b"x" * 246
    assert body.read(65536) == b""
    assert body.finished and not body.failed
    assert body.req.trailers == [("A", "b")]
    assert body.unreader.take_buffered() == b"GET"  # the next request is left for the parser


def test_bytes_before_a_disconnect_are_returned_before_the_error(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=None)
    client.sendall(b"4000\r\n" + b"y" * 5000)
    client.shutdown(socket.SHUT_WR)
    got = b""
    with pytest.raises(IncompleteBodyError):
        while True:
            got += body.read(1024)
    assert got == b"y" * 5000
    assert body.failed


def test_bytes_before_a_malformed_chunk_are_returned_before_the_error(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=None)
    client.sendall(b"3\r\nabc\r\n0x5\r\nabcde\r\n")
    assert body.read(100) == b"abc"
    with pytest.raises(BodyFramingError):
        body.read(100)


def test_a_bad_trailer_is_a_framing_error(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=None)
    client.sendall(b"3\r\nabc\r\n0\r\nno colon\r\n\r\n")
    assert body.read(100) == b"abc"
    with pytest.raises(BodyFramingError):
        body.read(100)
    assert not body.finished and body.failed


def test_a_length_body_stops_at_its_length_and_leaves_the_rest(pair):
    server, client = pair
    request = _Request(server)
    request.unreader.unread(b"012")  # read ahead with the head
    body = WireBody(request, server, length=10)
    client.sendall(b"3456789NEXT")
    assert body.read(100) == b"0123456789"
    assert body.finished and body.read(100) == b""
    assert request.unreader.take_buffered() == b""
    assert server.recv(100) == b"NEXT"  # never read past the body: the next request is intact


def test_a_length_body_cut_short_just_ends(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=10)
    client.sendall(b"01234")
    client.shutdown(socket.SHUT_WR)
    assert body.read(100) == b"01234"
    assert body.read(100) == b""
    assert body.failed and not body.finished


def test_discarding_what_arrived_never_waits(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=1000)
    client.sendall(b"z" * 100)
    done = threading.Event()

    def discard() -> None:
        assert body.discard_arrived() is False  # 900 bytes still to come: not finished
        done.set()

    thread = threading.Thread(target=discard)
    thread.start()
    thread.join(timeout=10)
    assert done.is_set()
    client.sendall(b"z" * 900)
    assert body.discard_arrived() is True


def test_readline_and_iteration(pair):
    server, client = pair
    body = WireBody(_Request(server), server, length=12)
    client.sendall(b"one\ntwo\nthre")
    assert body.readline() == b"one\n"
    assert list(body) == [b"two\n", b"thre"]
