"""CORS as a real browser does it: headless Chromium uploads from another origin (SQLite, PostgreSQL).

Three servers on loopback: gunicorn (``BYTERANGE_CORS_ORIGINS`` lists one page origin), a
recording TCP proxy in front of it that keeps every byte each way, and two tiny page servers (two
origins, one allowed, one not) serving ``browser_cors_page.html``. Chromium loads the page; its
``fetch`` calls go to the proxy, and it posts what it saw to its own page server.

The allowed origin uploads end to end -- POST, PATCH ``message/byterange``, partial PUT with
``Content-Range``, HEAD reading ``Committed-Ranges`` and ``Location`` through the exposed headers,
GET -- and the bytes come back exact. The other origin is blocked by the browser: its preflight
gets no permission, so the POST is never sent, and the answer to a simple GET is hidden from it.
The preflights are checked as Chromium actually sent them (byte-exact, from the proxy's record)
together with the server's answers.

Chromium is required (``.ci/run`` installs Debian's ``chromium``): the test fails, not skips,
without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from byterange_server.auth.signing import signed_url

from ..support.pages import PageServer
from .conftest import GunicornServer
from .conftest import running

pytestmark = pytest.mark.e2e

PAGE = Path(__file__).resolve().with_name("browser_cors_page.html")
BROWSER_TIMEOUT = 90.0


# -- a proxy that records every byte -------------------------------------------------------------


class RecordingProxy:
    """Forwards TCP connections to ``upstream_port`` and keeps each one's bytes, both ways."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        #: one (client->server bytes, server->client bytes) pair per connection
        self.connections: list[tuple[bytearray, bytearray]] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            record = (bytearray(), bytearray())
            with self._lock:
                self.connections.append(record)
            done = threading.Barrier(2, action=lambda c=client, u=upstream: (c.close(), u.close()))
            for src, dst, buf in ((client, upstream, record[0]), (upstream, client, record[1])):
                thread = threading.Thread(target=self._pipe, args=(src, dst, buf, done), daemon=True)
                thread.start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, buf: bytearray, done: threading.Barrier
    ) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    buf += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait(timeout=60)  # both directions over: the last one closes both sockets

    def close(self) -> None:
        self.listener.close()

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            records = [(bytes(a), bytes(b)) for a, b in self.connections]
        out = []
        for requests_raw, responses_raw in records:
            out.extend(_pair(requests_raw, responses_raw))
        return out


@dataclass
class Message:
    start: str  # request line or status line
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])


@dataclass
class Exchange:
    request: Message
    responses: list[Message] = field(default_factory=list)  # interim (1xx) ones, then the final

    @property
    def response(self) -> Message:
        return self.responses[-1]


def _head(raw: bytes, pos: int) -> tuple[Message, int] | None:
    end = raw.find(b"\r\n\r\n", pos)
    if end < 0:
        return None
    lines = raw[pos:end].decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    return Message(lines[0], headers), end + 4


def _pair(requests_raw: bytes, responses_raw: bytes) -> list[Exchange]:
    """Split one connection's bytes into requests and their responses (HTTP/1.1, in order)."""
    exchanges = []
    pos = 0
    while (parsed := _head(requests_raw, pos)) is not None:
        request, pos = parsed
        length = int(request.get("Content-Length") or 0)
        request.body, pos = requests_raw[pos : pos + length], pos + length
        exchanges.append(Exchange(request))
    pos = 0
    for exchange in exchanges:
        while (parsed := _head(responses_raw, pos)) is not None:
            response, pos = parsed
            exchange.responses.append(response)
            if response.status >= 200:
                break
        else:
            break  # the connection ended before this response
        response = exchange.response
        if exchange.request.method == "HEAD" or response.status in (204, 304):
            continue
        if (response.get("Transfer-Encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                line_end = responses_raw.index(b"\r\n", pos)
                size = int(responses_raw[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if not size:
                    pos = responses_raw.index(b"\r\n", pos) + 2  # no trailers from gunicorn here
                    break
                body += responses_raw[pos : pos + size]
                pos += size + 2
            response.body = bytes(body)
        else:
            length = int(response.get("Content-Length") or 0)
            response.body, pos = responses_raw[pos : pos + length], pos + length
    return exchanges


# -- the pages, on two origins --------------------------------------------------------------------


# -- the browser ----------------------------------------------------------------------------------


def run_page(chromium: str, page: PageServer, query: dict[str, str], profile: Path) -> dict:
    """Open the page in headless Chromium and return what it reported."""
    url = f"{page.origin}/page.html?{urlencode(query)}"
    argv = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        url,
    ]
    log = profile.with_suffix(".log")
    with open(log, "wb") as output:
        browser = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if not page.reported.wait(BROWSER_TIMEOUT):
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"the page reported nothing within {BROWSER_TIMEOUT} s\n{tail}")
        return page.reports[-1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(timeout=10)


@dataclass
class Setup:
    server: GunicornServer
    proxy: RecordingProxy
    allowed: PageServer
    other: PageServer
    data: bytes


@contextlib.contextmanager
def _servers(database_url: str, tmp_path: Path, data: bytes, env: dict[str, str]) -> Iterator[Setup]:
    """gunicorn (CORS for the allowed page's origin, plus ``env``), its recording proxy, and the
    two page servers."""
    allowed, other = PageServer(PAGE, data), PageServer(PAGE, data)
    server = GunicornServer(
        database_url,
        tmp_path / "server",
        workers=1,
        threads=4,
        extra_env={"BYTERANGE_CORS_ORIGINS": allowed.origin, **env},
    )
    try:
        with running(server):
            proxy = RecordingProxy(server.port)
            try:
                yield Setup(server, proxy, allowed, other, data)
            finally:
                proxy.close()
    finally:
        allowed.close()
        other.close()


@pytest.fixture
def setup(database_url: str, tmp_path: Path) -> Iterator[Setup]:
    data = random.Random(20261130).randbytes(200_000 + 17)
    with _servers(database_url, tmp_path, data, {"BYTERANGE_AUTH": "off"}) as started:
        yield started


def _names(value: str | None) -> set[str]:
    return {name.strip().lower() for name in (value or "").split(",") if name.strip()}


def test_an_allowed_origin_uploads_end_to_end(setup: Setup, chromium: str, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{setup.proxy.port}/files"
    report = run_page(
        chromium, setup.allowed, {"server": endpoint, "mode": "allowed"}, tmp_path / "profile"
    )
    n, half = len(setup.data), len(setup.data) // 2

    assert report["create"]["status"] == 201, report
    location = report["create"]["location"]  # readable only because Location is exposed
    assert location and location.startswith(endpoint + "/"), report
    assert report["patch"] == {"status": 204, "committed": f"bytes=0-{half - 1}"}, report
    assert report["put"] == {"status": 204}, report
    head = report["head"]
    assert head["status"] == 200 and head["committed"] == f"bytes=0-{n - 1}" and head["length"] == str(n)
    assert head["etag"] and head["reprDigest"], head  # exposed, so the script can verify the upload
    assert head["exposed"] is None  # the browser hides the CORS machinery itself
    digest = hashlib.sha256(setup.data).hexdigest()
    assert report["get"] == {"status": 200, "sha256": digest, "same": True}, report
    assert requests.get(location, timeout=30).content == setup.data  # and from outside the browser

    exchanges = setup.proxy.exchanges()
    preflights = [e for e in exchanges if e.request.method == "OPTIONS"]
    asked = {(e.request.get("Access-Control-Request-Method"), e.request.target) for e in preflights}
    resource = location.removeprefix(f"http://127.0.0.1:{setup.proxy.port}")
    # Chromium preflights the POST (Upload-Length) and the PATCH; the PATCH preflight's answer
    # (every method, every protocol header, Max-Age 600) stays in its preflight cache and covers
    # the PUT to the same URL, so that one goes out without a second preflight. HEAD and GET
    # without custom headers are simple requests.
    assert asked == {("POST", "/files"), ("PATCH", resource)}, asked
    expected_headers = {"POST": {"upload-length"}, "PATCH": {"content-type"}}
    for exchange in preflights:
        request, response = exchange.request, exchange.response
        method = request.get("Access-Control-Request-Method")
        assert request.get("Origin") == setup.allowed.origin
        assert _names(request.get("Access-Control-Request-Headers")) == expected_headers[method]
        assert response.status == 204, response
        assert response.get("Access-Control-Allow-Origin") == setup.allowed.origin
        assert method in {m.strip() for m in response.get("Access-Control-Allow-Methods").split(",")}
        assert expected_headers[method] <= _names(response.get("Access-Control-Allow-Headers"))
        assert {"put", "patch"} <= _names(response.get("Access-Control-Allow-Methods"))
        assert "content-range" in _names(response.get("Access-Control-Allow-Headers"))
        assert response.get("Access-Control-Max-Age") == "600"
        assert "origin" in _names(response.get("Vary"))
        assert response.get("Access-Control-Allow-Credentials") is None
    # What the browser sent after the preflights (the last GET, without Origin, was ours).
    actual = [
        e
        for e in exchanges
        if e.request.method != "OPTIONS" and "Chrome" in (e.request.get("User-Agent") or "")
    ]
    assert [e.request.method for e in actual] == ["POST", "PATCH", "PUT", "HEAD", "GET"]
    for exchange in actual:
        assert exchange.request.get("Origin") == setup.allowed.origin
        assert exchange.response.get("Access-Control-Allow-Origin") == setup.allowed.origin
        assert {"location", "committed-ranges", "etag"} <= _names(
            exchange.response.get("Access-Control-Expose-Headers")
        )


def test_another_origin_is_blocked_by_the_browser(setup: Setup, chromium: str, tmp_path: Path) -> None:
    existing = setup.server.allocate(len(setup.data))
    assert (
        requests.put(
            existing,
            data=setup.data,
            headers={"Content-Range": f"bytes 0-{len(setup.data) - 1}/{len(setup.data)}"},
            timeout=30,
        ).status_code
        == 204
    )
    existing = existing.replace(f":{setup.server.port}/", f":{setup.proxy.port}/")
    endpoint = f"http://127.0.0.1:{setup.proxy.port}/files"
    report = run_page(
        chromium,
        setup.other,
        {"server": endpoint, "mode": "blocked", "existing": existing},
        tmp_path / "profile",
    )
    # fetch() rejects with a TypeError for both: the page learns nothing, not even the status.
    assert report["create"]["error"] == "TypeError", report
    assert report["get"]["error"] == "TypeError", report

    exchanges = setup.proxy.exchanges()
    methods = [e.request.method for e in exchanges]
    assert "POST" not in methods, methods  # the browser never sent the upload
    (preflight,) = [e for e in exchanges if e.request.method == "OPTIONS"]
    assert preflight.request.get("Origin") == setup.other.origin
    assert preflight.request.get("Access-Control-Request-Method") == "POST"
    assert _names(preflight.request.get("Access-Control-Request-Headers")) == {"upload-length"}
    assert preflight.response.status == 204
    assert not [n for n, _ in preflight.response.headers if n.lower().startswith("access-control-")]
    (get,) = [e for e in exchanges if e.request.method == "GET"]
    assert get.request.get("Origin") == setup.other.origin  # sent, as a simple request is ...
    # The server answered it (the browser may drop the connection before the body's end once it
    # has refused the headers, so only a prefix may have crossed the proxy).
    assert get.response.status == 200 and setup.data.startswith(get.response.body)
    assert get.response.get("Access-Control-Allow-Origin") is None  # ... but not shared with the page
    assert "origin" in _names(get.response.get("Vary"))


SIGNING_KEY = "web-browser-key-0123456789abcdef"


@pytest.fixture
def signed_setup(database_url: str, tmp_path: Path) -> Iterator[Setup]:
    """As ``setup``, with authentication required: the page holds only a signed URL."""
    data = random.Random(20261201).randbytes(150_000 + 3)
    env = {"BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{SIGNING_KEY}"}
    with _servers(database_url, tmp_path, data, env) as started:
        yield started


def test_a_browser_uploads_with_nothing_but_a_signed_url(
    signed_setup: Setup, chromium: str, tmp_path: Path
) -> None:
    """The backend mints a URL, the page holds no secret: it POSTs the signed URL, then uses only
    the signed Location it gets back, for PATCH, PUT, HEAD and GET."""
    setup = signed_setup
    endpoint = f"http://127.0.0.1:{setup.proxy.port}/files"
    minted = signed_url(endpoint, key_id="web", secret=SIGNING_KEY.encode(), methods={"POST"},
                        expires=int(time.time()) + 600, max_size=len(setup.data))
    report = run_page(chromium, setup.allowed, {"server": minted, "mode": "allowed"}, tmp_path / "profile")
    n, half = len(setup.data), len(setup.data) // 2
    assert report["create"]["status"] == 201, report
    location = report["create"]["location"]
    assert "br-sig=" in location and location.startswith(endpoint + "/"), report
    assert report["patch"] == {"status": 204, "committed": f"bytes=0-{half - 1}"}, report
    assert report["put"] == {"status": 204}, report
    assert report["head"]["committed"] == f"bytes=0-{n - 1}", report
    assert report["get"]["same"] is True, report
    # The signed Location is the only key: without its query the resource is closed.
    assert requests.get(location, timeout=30).content == setup.data
    assert requests.get(location.split("?")[0], timeout=30).status_code == 401
    # Every request the browser made carried the signature (none had an Authorization header).
    sent = [e.request for e in setup.proxy.exchanges() if "Chrome" in (e.request.get("User-Agent") or "")]
    assert sent and all(r.get("Authorization") is None for r in sent)
    assert all("br-sig=" in r.target for r in sent if r.method != "OPTIONS")


def test_the_recorder_pairs_requests_and_responses() -> None:
    requests_raw = (
        b"OPTIONS /files HTTP/1.1\r\nOrigin: http://a\r\n\r\n"
        b"PUT /files/x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /files/x HTTP/1.1\r\n\r\n"
    )
    responses_raw = (
        b"HTTP/1.1 204 No Content\r\nVary: Origin\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    pairs = _pair(requests_raw, responses_raw)
    assert [(p.request.method, p.response.status) for p in pairs] == [
        ("OPTIONS", 204),
        ("PUT", 204),
        ("GET", 200),
    ]
    assert pairs[1].request.body == b"abc" and pairs[2].response.body == b"abc"
