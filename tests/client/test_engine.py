"""The engine's retries as people see them, and the problem document of a failed HEAD.

HEAD tests run a real ``http.server`` on loopback: the behaviour under test is what goes over
the wire (which requests, which bodies are read).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from byterange_server.client import Engine
from byterange_server.client import RetryPolicy
from byterange_server.client import ServerRefused
from byterange_server.client import TransferFailed
from byterange_server.client import Transport
from byterange_server.client.transport import Transient

NO_WAIT = RetryPolicy(attempts=3, base=0.0, cap=0.0)


def engine(notices: list[str], retry: RetryPolicy = NO_WAIT) -> Engine:
    return Engine(Transport(), parallel=4, retry=retry, notify=notices.append)


def test_each_retry_is_announced_with_its_attempt_and_reason():
    notices: list[str] = []
    failing = engine(notices)
    calls = 0

    def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Transient("POST http://h/files: Connection refused")
        return "done"

    assert failing.call(attempt) == "done"
    assert notices == [
        "retrying in 0.0 s (attempt 2 of 4): POST http://h/files: Connection refused",
        "retrying in 0.0 s (attempt 3 of 4): POST http://h/files: Connection refused",
    ]


def test_tasks_meeting_the_same_outage_announce_each_attempt_once():
    notices: list[str] = []
    failing = engine(notices)
    outage = Transient("PATCH http://h/files/x: Connection refused")
    for failures in (1, 2):
        for _task in range(4):  # four workers fail in step
            failing.backoff(failures, outage)
    assert [n.split(" (")[1].split(")")[0] for n in notices] == ["attempt 2 of 4", "attempt 3 of 4"]
    failing.confirm(100)  # progress ends the outage: the next failure is news again
    failing.backoff(1, outage)
    assert len(notices) == 3 and "attempt 2 of 4" in notices[-1]


def test_giving_up_counts_its_attempts_in_words():
    outage = Transient("POST http://h/files: Connection refused")
    with pytest.raises(TransferFailed) as caught:
        engine([], RetryPolicy(attempts=0)).backoff(1, outage)
    assert str(caught.value) == "failed, and retries are off: POST http://h/files: Connection refused"
    with pytest.raises(TransferFailed) as caught:
        engine([], RetryPolicy(attempts=2)).backoff(3, outage)
    assert str(caught.value).startswith("gave up after 3 failed attempts in a row: POST")


# -- a failed HEAD and its problem document --------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """``/missing``: 404 with a problem document (none on HEAD, as HTTP wants); ``/head-only``:
    HEAD is refused but GET serves a large file (whose body must not be read)."""

    seen: list[str] = []
    body_bytes_sent = 0

    def log_message(self, *args: object) -> None:
        pass

    def _problem(self, with_body: bool) -> None:
        body = json.dumps({"type": "tag:x:not-found", "title": "No such resource", "status": 404,
                           "detail": "It expired an hour ago.", "resource": "abc"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.seen.append(f"HEAD {self.path}")
        if self.path == "/missing":
            self._problem(with_body=False)
        else:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(f"GET {self.path}")
        if self.path == "/missing":
            self._problem(with_body=True)
            return
        size = 64 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for _ in range(size // 65536):
                self.wfile.write(b"x" * 65536)
                type(self).body_bytes_sent += 65536
        except OSError:
            pass  # the client hung up, as it should


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.seen = []
    _Handler.body_bytes_sent = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_failed_head_is_explained_by_the_problem_document_of_a_get(http_server):
    with pytest.raises(ServerRefused) as caught:
        engine([]).head(f"{http_server}/missing")
    error = caught.value
    assert error.status == 404 and error.problem["detail"] == "It expired an hour ago."
    assert str(error) == (
        f"HEAD {http_server}/missing: HTTP 404 No such resource: It expired an hour ago. (resource abc)"
    )
    assert _Handler.seen == ["HEAD /missing", "GET /missing"]


def test_a_get_that_succeeds_where_head_failed_is_not_read(http_server):
    with pytest.raises(ServerRefused) as caught:
        engine([]).head(f"{http_server}/head-only")
    assert caught.value.status == 403 and caught.value.problem == {}
    assert _Handler.seen == ["HEAD /head-only", "GET /head-only"]
    # The 64 MiB body was not downloaded: the connection was closed after its head.
    assert _Handler.body_bytes_sent < 16 * 1024 * 1024
