"""Graceful shutdown against real gunicorn (SQLite and PostgreSQL): signals while bodies stream.

A slow PATCH is sent from a raw socket by a thread, so the test knows exactly how many bytes had
left before the signal, and can read the final response even after the server stopped reading.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from byterange_server.client import RetryPolicy
from byterange_server.client import upload

from ..support.faultproxy import FaultProxy
from .conftest import GunicornServer
from .conftest import MiB
from .conftest import running

pytestmark = pytest.mark.e2e

#: Short enough for the tests, long enough that a write in flight at the signal is still
#: streaming when the grace ends (the fixture's graceful_timeout is 5 s, so at most 2.5).
GRACE = 0.5


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """One worker, so every connection meets the worker the test signals."""
    instance = GunicornServer(
        database_url,
        tmp_path / "server",
        workers=1,
        extra_env={
            "BYTERANGE_AUTH": "off",
            "BYTERANGE_SHUTDOWN_GRACE": str(GRACE),
            "BYTERANGE_SHUTDOWN_RETRY_AFTER": "3",
            # Small reads, so the server keeps up with the trickle and holds little unread.
            "BYTERANGE_CHUNK_SIZE": "64KiB",
        },
    )
    with running(instance):
        yield instance


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased fields and body (by Content-Length) of one response."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed after {buffer!r}")
        buffer += data
    head, body = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    return int(lines[0].split()[1]), fields, body


class SlowPatch:
    """``PATCH message/byterange`` of ``data`` at offset 0, trickled from a thread."""

    def __init__(self, server: GunicornServer, url: str, data: bytes, *, step: int = 32 * 1024,
                 pause: float = 0.02, headers: str = "") -> None:
        prefix = f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\n\r\n".encode()
        self.body = prefix + data
        self.prefix = len(prefix)
        self.step = step
        self.pause = pause
        self.sent = 0
        self.send_error: OSError | None = None
        self._stop = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.sock.sendall(
            (
                f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: message/byterange\r\nContent-Length: {len(self.body)}\r\n{headers}\r\n"
            ).encode()
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.sent < len(self.body) and not self._stop.is_set():
            try:
                self.sock.sendall(self.body[self.sent : self.sent + self.step])
            except OSError as exc:  # the server stopped reading and closed: expected
                self.send_error = exc
                return
            self.sent += min(self.step, len(self.body) - self.sent)
            time.sleep(self.pause)

    def wait_sent(self, at_least: int, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.sent < at_least:
            assert time.monotonic() < deadline, f"only {self.sent} bytes sent"
            assert self.send_error is None, self.send_error
            time.sleep(0.01)
        return self.sent - self.prefix

    def response(self) -> tuple[int, dict[str, str], bytes]:
        try:
            return read_response(self.sock)
        finally:
            self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


def _wait_new_worker(server: GunicornServer, old: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = server.worker_pids()
        if pids and old not in pids:
            return
        assert time.monotonic() < deadline, f"worker {old} still there: {pids}"
        time.sleep(0.05)


def _assert_503_shutting_down(status: int, fields: dict[str, str], body: bytes) -> dict[str, object]:
    assert status == 503, (status, fields, body)
    assert fields["retry-after"] == "3", fields
    assert fields["content-type"] == "application/problem+json", fields
    problem = json.loads(body)
    assert problem["type"].endswith(":shutting-down"), problem
    return problem  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("target", "sig"),
    [
        ("master", signal.SIGTERM),  # stop
        ("worker", signal.SIGTERM),  # one worker replaced (as on reload)
        ("master", signal.SIGINT),  # fast stop: the master sends SIGQUIT to its workers
    ],
    ids=["master-TERM", "worker-TERM", "master-INT"],
)
def test_signal_during_a_large_patch_commits_the_received_prefix(
    server: GunicornServer, target: str, sig: signal.Signals
):
    data = random.Random(7).randbytes(8 * MiB)  # ~5 s at the trickle: still streaming at the cut
    url = server.allocate(len(data))
    worker = server.worker_pids()[0]
    slow = SlowPatch(server, url, data)
    try:
        slow.wait_sent(1 * MiB)
        time.sleep(0.2)  # the server has read what was sent (it keeps up with the trickle)
        before = slow.sent - slow.prefix
        server.send_signal(sig, None if target == "master" else worker)
        status, fields, body = slow.response()
    finally:
        slow.close()
    _assert_503_shutting_down(status, fields, body)
    offset = int(fields["upload-offset"])
    # Everything that arrived before the signal (and, after SIGTERM, during the grace).
    assert before <= offset < len(data), (before, offset)
    assert fields["committed-ranges"] == f"bytes=0-{offset - 1}", fields
    if target == "master":
        server.wait_exit(timeout=30)
        server.start()
    else:
        _wait_new_worker(server, worker)
    state = server.head(url)
    assert state.status == 200 and state.ranges == [(0, offset - 1)], state
    got = server.get_range(url, 0, offset - 1)
    assert got.status_code == 206 and got.content == data[:offset]
    # The upload resumes where the 503 said.
    reply = server.patch_segment(url, offset, data[offset:], len(data))
    assert reply.status == 204, reply
    _, digest = server.sha256_of(url)

    assert digest == hashlib.sha256(data).hexdigest()


def test_atomic_write_cut_by_shutdown_commits_nothing(server: GunicornServer):
    data = random.Random(8).randbytes(8 * MiB)
    url = server.allocate(len(data))
    worker = server.worker_pids()[0]
    slow = SlowPatch(server, url, data, headers="Prefer: transaction=atomic\r\n")
    try:
        slow.wait_sent(1 * MiB)
        server.send_signal(signal.SIGTERM, worker)
        status, fields, body = slow.response()
    finally:
        slow.close()
    problem = _assert_503_shutting_down(status, fields, body)
    assert "nothing of it was applied" in str(problem["detail"]), problem
    assert fields["preference-applied"] == "transaction=atomic", fields
    assert fields["upload-offset"] == "0" and fields["committed-ranges"] == "none", fields
    _wait_new_worker(server, worker)
    state = server.head(url)
    assert state.status == 200 and state.ranges == [] and state.offset == 0, state


def _keep_alive(server: GunicornServer, request: str) -> socket.socket:
    """A connection that has carried one request and is kept alive for the next one."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(request.encode())
    status, fields, _ = read_response(sock)
    assert status in (200, 204) and fields.get("connection") != "close", (status, fields)
    return sock


def test_new_requests_on_kept_alive_connections_are_refused_while_draining(server: GunicornServer):
    data = random.Random(9).randbytes(8 * MiB)
    url = server.allocate(len(data))
    path = urlsplit(url).path
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    head = f"HEAD {path} HTTP/1.1\r\n{host}\r\n"
    health = f"GET /healthz HTTP/1.1\r\n{host}\r\n"
    resource_conn = _keep_alive(server, head)
    health_conn = _keep_alive(server, health)
    slow = SlowPatch(server, url, data)
    try:
        slow.wait_sent(256 * 1024)
        server.send_signal(signal.SIGTERM)
        # The in-flight write's 503 says the worker is draining; its kept-alive connections stay
        # open for a moment (gunicorn: 2 s) for requests already on their way.
        _assert_503_shutting_down(*slow.response())
        resource_conn.sendall(head.encode())
        status, fields, _ = read_response(resource_conn)
        assert status == 503 and fields["retry-after"] == "3", (status, fields)
        assert fields["connection"] == "close", fields
        assert "upload-offset" in fields, fields  # the state, to resume from
        assert resource_conn.recv(1) == b""  # and the server did close it
        # (A client closes its end at once on "Connection: close": gunicorn's stopping worker
        # waits for that, up to 2 s, before it serves its other connections.)
        resource_conn.close()
        health_conn.sendall(health.encode())
        status, fields, body = read_response(health_conn)
        assert status == 503 and fields["content-type"] == "application/health+json", (status, fields)
        assert json.loads(body)["output"] == "draining"
    finally:
        slow.close()
        resource_conn.close()
        health_conn.close()
    server.wait_exit(timeout=30)


def test_sighup_reload_during_a_client_upload_completes_byte_exact(
    database_url: str, tmp_path: Path, source_64m: tuple[Path, bytes, str]
):
    """Reload (new workers start, the old ones drain) while our client uploads through a slow
    network: the writes the old workers were serving are cut and answered 503, the client
    retries them on the new workers, and the file arrives whole."""
    path, data, digest = source_64m
    small = tmp_path / "source-24m.bin"
    small.write_bytes(data[: 24 * MiB])

    expected = hashlib.sha256(data[: 24 * MiB]).hexdigest()
    instance = GunicornServer(
        database_url, tmp_path / "server", workers=2,
        extra_env={"BYTERANGE_AUTH": "off", "BYTERANGE_SHUTDOWN_GRACE": str(GRACE)},
    )
    with running(instance) as server, FaultProxy("127.0.0.1", server.port, rate_limit=6 * MiB) as proxy:
        old_workers = set(server.worker_pids())
        done = [0]
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(upload(
                    small, proxy.url_for("/files"), segment_size=4 * MiB, parallel=2,
                    content_digest=False, state_dir=tmp_path / "state",
                    retry=RetryPolicy(attempts=20, base=0.05, cap=1.0),
                    progress=lambda progress: done.__setitem__(0, progress.done),
                ))
            except BaseException as exc:  # reported below
                outcome.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while done[0] < 6 * MiB and thread.is_alive():
            assert time.monotonic() < deadline, done
            time.sleep(0.02)
        server.send_signal(signal.SIGHUP)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the upload did not finish"
        result = outcome[0]
        assert not isinstance(result, BaseException), result
        new_workers = set(server.worker_pids())
        assert new_workers and not new_workers & old_workers, (old_workers, new_workers)
        url = f"{server.url}/{result.url.rsplit('/', 1)[1]}"  # type: ignore[attr-defined]
        _, served = server.sha256_of(url)
        assert served == expected
        # The reload did cut writes in flight (answered 503 with Retry-After), and the client
        # took them up again.
        time.sleep(0.2)
        statuses = [line.split('"')[2].split()[0] for line in server.access_log.read_text().splitlines()
                    if '"PATCH ' in line]
        assert "503" in statuses, statuses
        assert result.retries >= 1, result  # type: ignore[attr-defined]
