"""Abuse of the wire itself on a real gunicorn (our worker, byterange_server/runtime/worker.py): slow
request heads, refused requests that keep sending body, malformed and interrupted chunked bodies,
and transfer codings other than chunked. Raw sockets, since clients do none of this.

The servers here are small (1 worker x 2 threads) so that a handful of connections would hold
every thread if they could; "answered" means within generous bounds, never a timing figure (those
are measured by ``python -m bench.slowloris``).
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from .conftest import GunicornServer
from .conftest import running
from .test_shutdown import read_response

HEADER_TIMEOUT = 2
#: Longer than any answer should take here, shorter than a test that hangs.
ANSWER_WITHIN = 15


@pytest.fixture
def small(database_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    server = GunicornServer(
        database_url,
        tmp_path / "server",
        workers=1,
        threads=2,
        extra_env={"BYTERANGE_HEADER_TIMEOUT": str(HEADER_TIMEOUT)},
    )
    with running(server) as started:
        yield started


def _connect(server: GunicornServer, timeout: float = ANSWER_WITHIN) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _head_responses(sock: socket.socket, count: int = 1) -> list[int]:
    """The statuses of the answers to ``count`` HEADs (their Content-Length announces a body that
    is never sent, so each answer ends at its blank line)."""
    buffer = b""
    while buffer.count(b"\r\n\r\n") < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {buffer!r}"
        buffer += data
    return [int(head.split(b" ", 2)[1]) for head in buffer.split(b"\r\n\r\n")[:count]]


def _head_response(sock: socket.socket) -> int:
    return _head_responses(sock)[0]


def _problem(body: bytes) -> dict:
    return json.loads(body)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (EOF, not a reset) without more from us."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False


def _head_answers(server: GunicornServer, url: str) -> int:
    """The status of a HEAD from another client (raises if it is not answered in time)."""
    return requests.head(url, timeout=ANSWER_WITHIN).status_code


def _patch_head(server: GunicornServer, url: str, length: int, extra: str = "") -> bytes:
    return (
        f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: message/byterange\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


# -- slow heads ------------------------------------------------------------------------------------


def test_slow_heads_hold_no_thread_and_get_408(small):
    url = small.allocate()
    slow = []
    try:
        for _ in range(6):  # three times the threads
            sock = _connect(small)
            sock.sendall(b"HEAD " + urlsplit(url).path.encode() + b" HTTP/1.1\r\nHo")
            slow.append(sock)
        time.sleep(0.5)
        for sock in slow:
            sock.sendall(b"s")  # still coming, a byte at a time
        # Another client is answered meanwhile: no thread is waiting for those heads.
        assert _head_answers(small, url) == 200
        # Each slow head gets its 408 once the deadline passes, and is closed.
        started = time.monotonic()
        for sock in slow:
            status, fields, body = read_response(sock)
            assert status == 408, body
            assert fields["content-type"] == "application/problem+json"
            assert fields["connection"] == "close"
            assert _problem(body)["type"] == "tag:byterange-server,2026:problem:header-too-slow"
            assert _closed_by_server(sock)
        assert time.monotonic() - started < ANSWER_WITHIN
    finally:
        for sock in slow:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_silently(small):
    with _connect(small) as sock:
        assert sock.recv(100) == b""  # after the header timeout: no answer, just the close


def test_a_head_that_arrives_in_time_is_served_however_it_is_split(small):
    url = small.allocate()
    head = f"HEAD {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with _connect(small) as sock:
        for byte in range(len(head)):
            sock.sendall(head[byte : byte + 1])
        assert _head_response(sock) == 200
        # Two pipelined requests in one segment: both answered, in order, on one connection.
        sock.sendall(head + head)
        assert _head_responses(sock, 2) == [200, 200]


def test_an_oversized_head_is_431_without_waiting_for_its_end(small):
    with _connect(small) as sock:
        sock.sendall(b"GET /files HTTP/1.1\r\n")
        try:
            # 1.9 MB of fields and no blank line: over gunicorn's 200 x 8 KiB, and over twice
            # BYTERANGE_MAX_HEADER_BYTES, past which the worker buffers no more.
            for _ in range(60):
                sock.sendall((b"X-Big: " + b"b" * 32000 + b"\r\n"))
        except OSError:
            pass  # refused and closed while we were still sending
        status, fields, body = read_response(sock)
    assert status == 431, body
    assert _problem(body)["type"].endswith(":header-fields-too-large")


def test_too_many_header_fields_for_gunicorn_are_a_problem_document(small):
    fields = "".join(f"X-F{index}: v\r\n" for index in range(250))  # gunicorn allows 200
    with _connect(small) as sock:
        sock.sendall(f"GET /files HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
        status, headers, body = read_response(sock)
    assert status == 431, body
    assert headers["content-type"] == "application/problem+json"


# -- refused requests with pending bodies ----------------------------------------------------------


def test_an_early_409_is_answered_before_the_rest_of_the_body(small):
    url = small.allocate(100)
    # The part's own fields contradict the resource's length: refused on the first bytes.
    part = b"Content-Range: bytes 0-199/200\r\n\r\n" + b"x" * 10
    with _connect(small) as sock:
        sock.sendall(_patch_head(small, url, len(part) + 1024 * 1024) + part)
        status, fields, body = read_response(sock)  # without sending the other MiB
        assert status == 409, body
        assert fields["connection"] == "close"
        assert _closed_by_server(sock)  # a FIN after the answer, not a reset
    assert small.head(url).ranges in (None, [])


def test_an_early_429_is_answered_before_the_rest_of_the_body(database_url, tmp_path):
    env = {"BYTERANGE_MAX_WRITES_PER_RESOURCE": "1", "BYTERANGE_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=env)) as server:
        url = server.allocate(4096)
        part = b"Content-Range: bytes 0-2047/4096\r\n\r\n" + b"a" * 10
        other = b"Content-Range: bytes 2048-4095/4096\r\n\r\n" + b"b" * 10
        with _connect(server) as holder, _connect(server) as second:
            holder.sendall(_patch_head(server, url, len(part) + 2038) + part)  # holds the slot
            deadline = time.monotonic() + ANSWER_WITHIN
            while True:  # its reservation happens on its first read: retry until it holds it
                second.sendall(_patch_head(server, url, len(other) + 2038) + other)
                status, fields, body = read_response(second)
                if status == 429 or time.monotonic() > deadline:
                    break
                second.close()
                second = _connect(server)
                time.sleep(0.1)
            assert status == 429, body
            assert fields["connection"] == "close"
            holder.sendall(b"a" * 2038)
            assert read_response(holder)[0] == 204


def test_refused_requests_that_trickle_their_body_hold_no_thread(small):
    url = small.allocate(100)
    part = b"Content-Range: bytes 0-199/200\r\n\r\n"
    trickling = []
    try:
        for _ in range(6):
            sock = _connect(small)
            sock.sendall(_patch_head(small, url, len(part) + 1024 * 1024) + part)
            trickling.append(sock)
        for _ in range(3):
            for sock in trickling:
                try:
                    sock.sendall(b"t")
                except OSError:
                    pass  # closed by the server after its answer: expected
            time.sleep(0.3)
        assert _head_answers(small, url) == 200
        for sock in trickling:
            assert read_response(sock)[0] == 409
    finally:
        for sock in trickling:
            sock.close()


def test_a_refused_request_whose_small_body_arrived_keeps_its_connection(small):
    missing = small.url + "/" + "n" * 22
    body = b"Content-Range: bytes 0-9/10\r\n\r\n0123456789"
    with _connect(small) as sock:
        sock.sendall(_patch_head(small, missing, len(body)) + body)
        status, fields, _ = read_response(sock)
        assert status == 404
        assert fields.get("connection") != "close"
        sock.sendall(f"HEAD /files/{'n' * 22} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert _head_response(sock) == 404  # the same connection carried the next request


# -- chunked bodies --------------------------------------------------------------------------------

PREFIX_BYTES = 200_000


def _chunked_patch(server: GunicornServer, url: str, declared: int) -> tuple[socket.socket, bytes]:
    sock = _connect(server, timeout=30)
    sock.sendall(
        (
            f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: message/byterange\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    fields = b"Content-Range: bytes 0-%d/*\r\n\r\n" % (declared - 1)
    sock.sendall(b"%x\r\n%s\r\n" % (len(fields), fields))
    return sock, fields


def _send_chunks(sock: socket.socket, data: bytes, size: int = 16 * 1024) -> None:
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))


def _committed(server: GunicornServer, url: str, data: bytes, expected: int) -> None:
    state = server.head(url)
    assert state.ranges == ([(0, expected - 1)] if expected else None) or (not expected and not state.ranges)
    if expected:
        assert server.get(url, {"Range": f"bytes=0-{expected - 1}"}).content == data[:expected]


MALFORMED = {
    "hex prefix": (b"0x5\r\nabcde\r\n", 0),
    "negative": (b"-5\r\nabcde\r\n", 0),
    "space before": (b" 5\r\nabcde\r\n", 0),
    "space after": (b"5 \r\nabcde\r\n", 0),
    "no CRLF after the data": (b"5\r\nabcdeXY", 5),
    "size line too long": (b"0" * 9000 + b"5\r\nabcde\r\n", 0),
    "bare LF": (b"5\nabcde\r\n", 0),
    "bad extension": (b"5;=x\r\nabcde\r\n", 0),
    "bad trailer": (b"0\r\nno colon here\r\n\r\n", 0),
}


@pytest.mark.parametrize("variant", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_chunk_ends_the_body_and_keeps_what_came_before(small, variant):
    tail, extra = MALFORMED[variant]
    data = bytes(range(256)) * (PREFIX_BYTES // 256 + 1)
    url = small.allocate()
    sock, _ = _chunked_patch(small, url, len(data))
    with sock:
        _send_chunks(sock, data[:PREFIX_BYTES])
        sock.sendall(tail)
        status, fields, body = read_response(sock)
    assert status == 400, body
    problem = _problem(body)
    assert problem["type"] == "tag:byterange-server,2026:problem:malformed-chunk", problem
    assert fields["connection"] == "close"
    kept = PREFIX_BYTES + extra
    _committed(small, url, data[:PREFIX_BYTES] + b"abcde", kept)


@pytest.mark.parametrize("sent", [200_000, 4_000_000])
def test_an_interrupted_chunked_body_keeps_every_byte_received(small, sent):
    data = bytes(range(251)) * (sent // 251 + 1)
    url = small.allocate()
    sock, _ = _chunked_patch(small, url, len(data) + 1000)
    with sock:
        _send_chunks(sock, data[: sent - 1000], size=64 * 1024)
        # The last chunk announces more than is sent: the client goes in the middle of it.
        sock.sendall(b"%x\r\n%s" % (10_000, data[sent - 1000 : sent]))
        sock.shutdown(socket.SHUT_WR)
        status, _, body = read_response(sock)
    assert status == 400, body
    assert _problem(body)["type"].endswith(":truncated-body")
    _committed(small, url, data, sent)


def test_a_chunked_body_with_extensions_and_trailers_is_stored(small):
    data = b"0123456789" * 1000
    url = small.allocate(len(data))
    sock, _ = _chunked_patch(small, url, len(data))
    with sock:
        sock.sendall(b"%x ; name=value;q=\"quoted \\\" string\"\r\n%s\r\n" % (len(data), data))
        sock.sendall(b"0;last\r\nX-Checksum: none\r\n\r\n")
        status, fields, body = read_response(sock)
        assert status == 204, body
        assert fields.get("connection") != "close"
        sock.sendall(f"HEAD {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert _head_response(sock) == 200
    assert small.get(url).content == data


# -- transfer codings ------------------------------------------------------------------------------

CODINGS = {
    "gzip, chunked": 501,
    "deflate, chunked": 501,
    "identity, chunked": 501,
    "x-custom, chunked": 501,
    "chunked, chunked": 400,
    "chunked, gzip": 400,
    "gzip": 400,
}


@pytest.mark.parametrize("coding", CODINGS, ids=list(CODINGS))
def test_transfer_codings_other_than_chunked_are_refused_and_store_nothing(small, coding):
    url = small.allocate()
    fields = b"Content-Range: bytes 0-9/*\r\n\r\n0123456789"
    payload = gzip.compress(fields) if coding.startswith("gzip") else fields
    with _connect(small) as sock:
        sock.sendall(
            (
                f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: x\r\nContent-Type: message/byterange\r\n"
                f"Transfer-Encoding: {coding}\r\n\r\n"
            ).encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
        )
        status, headers, body = read_response(sock)
    assert status == CODINGS[coding], body
    assert headers["content-type"] == "application/problem+json"
    expected = "unsupported-transfer-coding" if status == 501 else "malformed-header"
    assert _problem(body)["type"] == f"tag:byterange-server,2026:problem:{expected}"
    assert small.head(url).ranges in (None, [])
