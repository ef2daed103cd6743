"""IETF Resumable Uploads end to end: raw sockets against real gunicorn, SQLite and PostgreSQL.

Raw sockets because the interim response is the point: Python's http.client (requests,
urllib3) reads a 104 as if it were the final response.
"""

from __future__ import annotations

import random
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from byterange_server.auth.signing import signed_url
from byterange_server.protocol.ietf import INTEROP_VERSIONS

from .conftest import GunicornServer
from .conftest import running

pytestmark = pytest.mark.e2e

PARTIAL = "application/partial-upload"


def read_head(sock: socket.socket, buffer: bytes) -> tuple[int, dict[str, str], bytes]:
    """One response head (status, lower-cased fields) and what was read after it."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed after {buffer!r}")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, rest


def responses(sock: socket.socket) -> list[tuple[int, dict[str, str]]]:
    """Interim responses, then the final one (its body is not read)."""
    found = []
    rest = b""
    while True:
        status, fields, rest = read_head(sock, rest)
        found.append((status, fields))
        if status >= 200:
            return found


def request(server: GunicornServer, head: str, body: bytes = b"") -> list[tuple[int, dict[str, str]]]:
    head = head.replace("Host: 127.0.0.1\r\n", f"Host: 127.0.0.1:{server.port}\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        return responses(sock)


def test_104_on_creation_carries_the_same_location(gunicorn_server: GunicornServer):
    body = random.Random(1).randbytes(300_000)
    got = request(
        gunicorn_server,
        "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
        f"Upload-Complete: ?1\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n",
        body,
    )
    assert [status for status, _ in got] == [104, 201], got
    interim, final = got[0][1], got[1][1]
    assert interim["location"] == final["location"]
    assert interim["upload-draft-interop-version"] == "8"
    assert "max-size=" in interim["upload-limit"]
    assert final["upload-complete"] == "?1"
    assert requests.get(final["location"], timeout=30).content == body


def test_104_also_with_expect_100_continue(gunicorn_server: GunicornServer):
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=30) as sock:
        sock.sendall(
            f"POST /files HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn_server.port}\r\n".encode()
            + b"Upload-Draft-Interop-Version: 6\r\n"
            b"Upload-Complete: ?0\r\nUpload-Length: 10\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        status, _fields, rest = read_head(sock, b"")
        assert status == 100
        sock.sendall(b"abcd")
        status, interim, rest = read_head(sock, rest)
        assert status == 104 and "expires=" in interim["upload-limit"]  # interop 6 name
        status, final, _ = read_head(sock, rest)
    assert status == 201 and final["upload-offset"] == "4"
    assert final["location"] == interim["location"]


def test_interrupted_creation_resumes_from_the_104_location(gunicorn_server: GunicornServer):
    """What URLSession does: an optimistic creation (?1) is cut off; the 104 told the client
    where the upload lives, so it asks HEAD there and appends the rest."""
    data = random.Random(2).randbytes(600_000)
    sent = 250_000
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /files HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn_server.port}\r\n"
                "Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?1\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:sent]
        )
        status, interim, _ = read_head(sock, b"")
        assert status == 104
        time.sleep(0.3)  # the bytes sent reach the server; then the connection drops
    url = interim["location"]
    head = requests.head(url, headers={"Upload-Draft-Interop-Version": "8"}, timeout=30)
    assert head.status_code == 204 and head.headers["Upload-Complete"] == "?0"
    offset = int(head.headers["Upload-Offset"])
    assert offset == sent, dict(head.headers)
    assert head.headers["Upload-Length"] == str(len(data))  # ?1 + Content-Length: recorded (MUST)
    reply = requests.patch(url, data=data[offset:], timeout=30, headers={
        "Upload-Draft-Interop-Version": "8", "Content-Type": PARTIAL,
        "Upload-Offset": str(offset), "Upload-Complete": "?1"})
    assert reply.status_code == 204 and reply.headers["Upload-Length"] == str(len(data)), reply.text
    assert requests.get(url, timeout=30).content == data


def test_no_104_when_turned_off(database_url: str, tmp_path: Path):
    server = GunicornServer(database_url, tmp_path / "server", workers=1,
                            extra_env={"BYTERANGE_SEND_104": "false"})
    with running(server):
        got = request(
            server,
            "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
            "Upload-Complete: ?0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    assert [status for status, _ in got] == [201], got
    assert got[0][1]["location"].startswith(server.url + "/")


#: Versions this server does not speak: one before its first, one after its newest.
UNSUPPORTED = [str(INTEROP_VERSIONS[0] - 1), str(INTEROP_VERSIONS[-1] + 1)]


@pytest.mark.parametrize("version", [None, *UNSUPPORTED])
def test_no_104_without_a_supported_version(gunicorn_server: GunicornServer, version):
    field = f"Upload-Draft-Interop-Version: {version}\r\n" if version else ""
    got = request(
        gunicorn_server,
        f"POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\n{field}Upload-Complete: ?0\r\nUpload-Length: 3\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert len(got) == 1 and got[0][0] in (201, 400), got


_ACCESS_RE = re.compile(r"^<(\d+)> (\w+) (\S+) (\d+)$")  # %(p)s is "<pid>"


def _served_by(server: GunicornServer, method: str, path: str) -> list[int]:
    pids = []
    for line in server.access_log.read_text().splitlines():
        match = _ACCESS_RE.match(line.strip())
        if match and match.group(2) == method and match.group(3) == path:
            pids.append(int(match.group(1)))
    return pids


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path):
    """2 worker processes; the access log names the pid that served each request."""
    server = GunicornServer(
        database_url, tmp_path / "server", workers=2,
        extra_env={"GUNICORN_CMD_ARGS": "--access-logformat '%(p)s %(m)s %(U)s %(s)s'"},
    )
    with running(server):
        yield server


def _stalled_append(server: GunicornServer, path: str, data: bytes, sent: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
            f"Content-Type: {PARTIAL}\r\nUpload-Offset: 0\r\nUpload-Complete: ?1\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:sent]
    )
    return sock


def test_head_ends_a_stalled_append_in_another_worker(two_workers: GunicornServer):
    """The draft's recommendation, across processes: a client stalls mid-append (a half-dead
    connection); its HEAD, served by the other worker, ends that append through the database,
    gets the offset of every byte that arrived, and the upload resumes from there."""
    server = two_workers
    data = random.Random(3).randbytes(400_000)
    sent = 150_000
    crossed = 0
    for _attempt in range(12):  # until the two requests met different workers twice
        created = request(
            server,
            "POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
            f"Upload-Complete: ?0\r\nUpload-Length: {len(data)}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n",
        )
        assert [status for status, _ in created] == [104, 201], created
        url = created[1][1]["location"]
        path = urlsplit(url).path
        stalled = _stalled_append(server, path, data, sent)
        try:
            time.sleep(0.5)  # the append has reserved and is blocked reading
            started = time.monotonic()
            head = requests.head(url, headers={"Upload-Draft-Interop-Version": "8"}, timeout=30)
            seconds = time.monotonic() - started
            assert head.status_code == 204
            offset = int(head.headers["Upload-Offset"])
            # Every byte that reached the server before the HEAD, nothing invented.
            assert offset == sent, (offset, dict(head.headers))
            assert seconds < 3, seconds
            # The stalled request was answered (its read side was cut), not left hanging.
            stalled.settimeout(10)
            status, fields, _ = read_head(stalled, b"")
            assert status == 400 and fields["upload-offset"] == str(sent), (status, fields)
        finally:
            stalled.close()
        # The reported offset is accepted by the next append.
        reply = requests.patch(url, data=data[offset:], timeout=30, headers={
            "Upload-Draft-Interop-Version": "8", "Content-Type": PARTIAL,
            "Upload-Offset": str(offset), "Upload-Complete": "?1"})
        assert reply.status_code == 204 and reply.headers["Upload-Complete"] == "?1", reply.text
        assert requests.get(url, timeout=30).content == data
        time.sleep(0.2)  # the access log line of the HEAD is written after its response
        patch_pids, head_pids = _served_by(server, "PATCH", path), _served_by(server, "HEAD", path)
        assert len(patch_pids) == 2 and len(head_pids) == 1, server.access_log.read_text()[-2000:]
        crossed += patch_pids[0] != head_pids[0]
        if crossed >= 2:
            break
    assert crossed >= 2, "the stalled append and the HEAD never met different workers"


def test_a_read_only_signed_head_does_not_cut_the_owners_append(database_url: str, tmp_path: Path):
    """Audit: a signed URL for reading (GET, HEAD) could end the owner's
    in-flight append by sending an IETF HEAD. Ending an append is a write: a read-only URL gets
    the state and the append carries on; the upload's own signed URL still ends a stalled one."""
    key = "ietf-e2e-key-0123456789abcdef"
    env = {"BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{key}"}
    with running(GunicornServer(database_url, tmp_path / "server", workers=2, extra_env=env)) as server:

        def mint(url: str, methods: set[str]) -> str:
            return signed_url(url, key_id="web", secret=key.encode(), methods=methods,
                              expires=int(time.time()) + 600, max_size=1 << 20)

        data = random.Random(11).randbytes(300_000)
        sent = 100_000
        created = request(
            server,
            f"POST {local(mint(server.url, {'POST'}))} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?0\r\nUpload-Length: {len(data)}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        location = created[-1][1]["location"]
        assert created[-1][0] == 201 and "br-sig=" in location, created
        read_only = mint(location.split("?")[0], {"GET", "HEAD"})
        stalled = _stalled_append(server, local(location), data, sent)
        try:
            time.sleep(0.5)  # the append has reserved its range and is blocked reading
            head = requests.head(read_only, headers={"Upload-Draft-Interop-Version": "8"}, timeout=30)
            assert head.status_code == 204 and head.headers["Upload-Offset"] == "0", dict(head.headers)
            time.sleep(1.0)  # four revocation polls: a revoked append would have stopped by now
            stalled.sendall(data[sent:])
            stalled.settimeout(30)
            status, fields, _ = read_head(stalled, b"")
        finally:
            stalled.close()
        assert status == 204 and fields["upload-complete"] == "?1", (status, fields)
        assert requests.get(read_only, timeout=30).content == data

        # The upload's own URL (it may PATCH) still ends a stalled append, as the draft asks.
        other = request(
            server,
            f"POST {local(mint(server.url, {'POST'}))} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?0\r\nUpload-Length: {len(data)}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n",
        )[-1][1]["location"]
        stalled = _stalled_append(server, local(other), data, sent)
        try:
            time.sleep(0.5)
            head = requests.head(other, headers={"Upload-Draft-Interop-Version": "8"}, timeout=30)
            assert head.status_code == 204 and head.headers["Upload-Offset"] == str(sent), dict(head.headers)
            stalled.settimeout(10)
            status, _fields, _ = read_head(stalled, b"")
            assert status == 400
        finally:
            stalled.close()


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
