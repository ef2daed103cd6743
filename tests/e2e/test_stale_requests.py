"""Requests that stall before or while sending their body, ended by a newer request: raw sockets
against real gunicorn (2 workers), SQLite and PostgreSQL.

Resumable uploads §"Concurrency" (-04 on): an offset the server reports MUST be accepted by the
next append, and a new HEAD, append or DELETE SHOULD end the in-flight request first;
§"Upload Cancellation": DELETE SHOULD abort in-flight requests by closing their connections.
The hard case is a request whose body has not sent a single byte: its range is reserved as soon
as its header fields are processed, so it can be ended like any other.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from .conftest import GunicornServer
from .conftest import running
from .test_ietf import PARTIAL
from .test_ietf import read_head
from .test_ietf import request

pytestmark = pytest.mark.e2e

IETF = {"Upload-Draft-Interop-Version": "8"}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    with running(GunicornServer(database_url, tmp_path / "server", workers=2)) as server:
        yield server


def _create(server: GunicornServer, length: int) -> str:
    created = request(
        server,
        "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
        f"Upload-Complete: ?0\r\nUpload-Length: {length}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n",
    )
    assert created[-1][0] == 201, created
    return created[-1][1]["location"]


def _open(server: GunicornServer, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.sendall(head.replace("Host: 127.0.0.1\r\n", f"Host: 127.0.0.1:{server.port}\r\n").encode() + body)
    return sock


def _stalled_append(server: GunicornServer, url: str, total: int, sent: bytes = b"") -> socket.socket:
    """An IETF append of ``total`` bytes that sends ``sent`` and then nothing (keep-alive)."""
    return _open(
        server,
        f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
        f"Content-Type: {PARTIAL}\r\nUpload-Offset: 0\r\nUpload-Complete: ?1\r\n"
        f"Content-Length: {total}\r\n\r\n",
        sent,
    )


def _late_bytes_then_close(sock: socket.socket, data: bytes) -> None:
    """What a half-dead client does at last: sends some of its body, then goes."""
    with contextlib.suppress(OSError):  # the server may have closed its side already
        sock.sendall(data)
    time.sleep(0.3)
    sock.close()


def _closed(sock: socket.socket, seconds: float = 10.0) -> bool:
    """Whether the server closes the connection within ``seconds`` (after its answer)."""
    sock.settimeout(seconds)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True
    return False


def _append_all(url: str, data: bytes, offset: int) -> requests.Response:
    return requests.patch(url, data=data[offset:], timeout=30, headers={
        **IETF, "Content-Type": PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?1"})


def test_head_ends_an_append_that_sent_nothing_and_its_offset_is_accepted(server: GunicornServer):
    """(-04…-11 §"Concurrency", MUST and SHOULD) An append whose client sent its header fields and
    then stalled holds its range already: a HEAD revokes it and waits for it to end (the stalled
    request is answered), reports offset 0, and the stale connection's later bytes can never
    commit behind that offset: the next append at 0 is accepted."""
    data = random.Random(21).randbytes(100_000)
    url = _create(server, len(data))
    stalled = _stalled_append(server, url, len(data))
    try:
        time.sleep(0.5)  # the append's header fields were processed; its body read is blocked
        head = requests.head(url, headers=IETF, timeout=30)
        assert head.status_code == 204 and head.headers["Upload-Offset"] == "0", dict(head.headers)
        status, fields, _ = read_head(stalled, b"")  # ended, not left hanging
        assert status == 400 and fields["upload-offset"] == "0", (status, fields)
        _late_bytes_then_close(stalled, data[:20_000])
    finally:
        stalled.close()
    time.sleep(1.0)
    reply = _append_all(url, data, 0)
    assert reply.status_code == 204 and reply.headers["Upload-Complete"] == "?1", reply.text
    assert requests.get(url, timeout=30).content == data


def test_head_ends_a_creation_that_sent_nothing_and_its_offset_is_accepted(server: GunicornServer):
    """(-04…-11 §"Concurrency", MUST) The same for a creation whose content stalled before its
    first byte: the 104 told the client where the upload is; HEAD there ends the creation's
    append, and an append at the offset it reports is accepted."""
    data = random.Random(22).randbytes(100_000)
    stalled = _open(
        server,
        "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
        f"Upload-Complete: ?0\r\nUpload-Length: {len(data)}\r\nContent-Length: {len(data)}\r\n\r\n",
    )
    try:
        status, interim, rest = read_head(stalled, b"")
        assert status == 104, (status, interim)
        url = interim["location"]
        time.sleep(0.5)
        head = requests.head(url, headers=IETF, timeout=30)
        assert head.status_code == 204 and head.headers["Upload-Offset"] == "0", dict(head.headers)
        status, fields, _ = read_head(stalled, rest)
        assert status == 400 and fields["location"] == url, (status, fields)
        _late_bytes_then_close(stalled, data[:20_000])
    finally:
        stalled.close()
    time.sleep(1.0)
    reply = _append_all(url, data, 0)
    assert reply.status_code == 204 and reply.headers["Upload-Complete"] == "?1", reply.text
    assert requests.get(url, timeout=30).content == data


@pytest.mark.parametrize("sent", [0, 50_000], ids=["sent-nothing", "sent-some"])
def test_delete_closes_the_connection_of_an_inflight_append(server: GunicornServer, sent: int):
    """(§"Upload Cancellation", SHOULD) DELETE aborts the in-flight append by closing its
    connection, through the database, whichever worker (or host) serves each: the append's
    reservation goes with the resource, its process's lease keeper sees that within a tick and
    cuts the body; it answers 404 with ``Connection: close`` and the connection closes."""
    data = random.Random(23).randbytes(200_000)
    url = _create(server, len(data))
    stalled = _stalled_append(server, url, len(data), data[:sent])
    try:
        time.sleep(0.5)
        deleted = requests.delete(url, headers=IETF, timeout=30)
        assert deleted.status_code == 204
        status, fields, _ = read_head(stalled, b"")
        assert status == 404 and fields.get("connection") == "close", (status, fields)
        assert _closed(stalled), "the deleted upload's append kept its connection open"
    finally:
        stalled.close()
    assert requests.head(url, headers=IETF, timeout=30).status_code == 404
