"""The worker's body stream (byterange_server/runtime/worker.py): ``wsgi.input`` over a real socket
pair, with the strict chunked decoder of protocol/chunked.py (tested in tests/protocol). The
worker itself runs in tests/e2e."""

from __future__ import annotations

import socket
import threading

import pytest
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE
from gunicorn.http.unreader import SocketUnreader

from byterange_server.protocol.chunked import MAX_LINE
from byterange_server.protocol.chunked import BodyFramingError
from byterange_server.runtime.worker import IncompleteBodyError
from byterange_server.runtime.worker import WireBody


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


def test_the_chunk_size_line_limit_is_gunicorns_field_limit():
    # protocol/ cannot import gunicorn; its default is gunicorn's own, and must stay so.
    assert MAX_LINE == DEFAULT_MAX_HEADERFIELD_SIZE
