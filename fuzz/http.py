"""Fuzzing over HTTP: the Flask app (SQLite file, authentication off) through its test client.

Requests are built from valid byte-range, tus and IETF requests (creation, PATCH in the three
media types, partial PUT, HEAD, GET with Range, preflights, committed-ranges pages) and then
mutated: a header value, the body, the method, the path, a header added, dropped or repeated.
Invariants:

- no response is a 5xx;
- every 4xx carries a problem document (``application/problem+json``), except a HEAD's, which
  has no body;
- bytes committed before the run are never lost or changed: resources written at the start are
  read back with GET at the end and compared byte for byte (the fuzzer never sends DELETE, or a
  tus method override, to them -- deleting is allowed to lose bytes).

Header values are what a WSGI server can hand over (ISO-8859-1 characters without CR, LF or NUL);
bodies are arbitrary bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import logging
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from byterange_server import create_app
from byterange_server.config import Settings
from byterange_server.db import migrate
from byterange_server.protocol import binary
from byterange_server.protocol import multipart
from byterange_server.protocol.message import encode_message

from .mutate import mutate_bytes
from .mutate import mutate_text
from .mutate import random_text
from .runner import Finding
from .runner import TargetReport
from .runner import _where

MOUNT = "/files"
APP_ORIGIN = "https://app.example"
PROBLEM_JSON = "application/problem+json"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "patch", "")
# Header names worth adding to any request: every field some view or middleware reads.
EXTRA_HEADERS = (
    "Range",
    "If-Range",
    "If-Match",
    "If-None-Match",
    "Prefer",
    "Content-Digest",
    "Repr-Digest",
    "Content-Range",
    "Content-Offset",
    "Content-Type",
    "Content-Disposition",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Tus-Resumable",
    "X-HTTP-Method-Override",
    "Want-Repr-Digest",
    "Want-Content-Digest",
    "Origin",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Prefix",
    "X-Forwarded-Port",
    "Trailer",
    "Authorization",
    "Host",
    "Content-Length",
)


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: How the body is framed: ``length`` (Content-Length), ``chunked`` (no length, as gunicorn
    #: hands over a chunked body), ``short`` (the client stops before Content-Length bytes).
    framing: str = "length"

    def describe(self) -> str:
        lines = [f"{self.method} {self.path}"] + [f"{n}: {v}" for n, v in self.headers]
        body = f"{self.body[:200]!r}{'...' if len(self.body) > 200 else ''} ({self.framing})"
        return "\n".join(lines) + "\n\n" + body


class _Captured(logging.Handler):
    """Keeps the exception the app logged last (its unexpected-error handler logs every one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]


class Harness:
    """A fresh app on an SQLite file in a temporary directory, with some protected bytes."""

    def __init__(self, directory: Path) -> None:
        database_url = f"sqlite:///{directory / 'byterange.sqlite3'}"
        migrate.upgrade(database_url)
        overrides: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(directory),
            "FSYNC": "false",
            "CORS_ORIGINS": f"{APP_ORIGIN}, http://localhost:5173",
            "TRUSTED_PROXIES": "1",
            "MAX_RESOURCE_SIZE": str(64 * 1024 * 1024),
        }
        fields = {field.name for field in dataclasses.fields(Settings)}
        if "auth" in fields:  # authentication is required by default once it exists
            overrides["AUTH"] = "off"
        self.app = create_app(overrides)
        self.app.config["TESTING"] = False  # errors go through the handlers, as in production
        self.client = self.app.test_client()
        #: path -> {offset: bytes} committed before the run
        self.protected: dict[str, dict[int, bytes]] = {}
        #: resources the fuzzer may do anything to, including DELETE
        self.sacrificial: list[str] = []

    def close(self) -> None:
        self.app.extensions["byterange"].db.dispose()

    def send(self, request: Request) -> Any:
        if request.framing == "length":
            return self.client.open(
                request.path, method=request.method, headers=request.headers, data=request.body
            )
        overrides: dict[str, Any] = {"wsgi.input": io.BytesIO(request.body)}
        if request.framing == "chunked":
            overrides["wsgi.input_terminated"] = True  # what gunicorn says for a chunked body
            headers = [*request.headers, ("Transfer-Encoding", "chunked")]
        else:
            overrides["CONTENT_LENGTH"] = str(len(request.body) + 1000)
            headers = request.headers
        return self.client.open(
            request.path, method=request.method, headers=headers, environ_overrides=overrides
        )

    def _location(self, response: Any) -> str:
        assert response.status_code == 201, (response.status_code, response.get_data()[:300])
        return urlsplit(response.headers["Location"]).path

    def setup(self, rnd: random.Random) -> None:
        """Commit bytes the run must not lose: complete, partial (gaps), tus and IETF uploads."""
        data = rnd.randbytes(3000)
        complete = self._location(self.client.post(MOUNT, headers={"Upload-Length": "3000"}))
        response = self.client.put(complete, data=data, headers={"Content-Range": "bytes 0-2999/3000"})
        assert response.status_code == 204, response.get_data()
        self.protected[complete] = {0: data}

        partial = self._location(self.client.post(MOUNT, headers={"Upload-Length": "10000"}))
        pieces = {100: rnd.randbytes(500), 4000: rnd.randbytes(1000)}
        body = multipart.encode_multipart(
            [({"Content-Range": f"bytes {o}-{o + len(d) - 1}/10000"}, d) for o, d in pieces.items()], "SEP"
        )
        response = self.client.patch(
            partial, data=body, headers={"Content-Type": "multipart/byteranges; boundary=SEP"}
        )
        assert response.status_code == 204, response.get_data()
        self.protected[partial] = pieces

        tus_data = rnd.randbytes(700)
        tus_path = self._location(
            self.client.post(MOUNT, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "2000"})
        )
        response = self.client.patch(
            tus_path,
            data=tus_data,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 204, response.get_data()
        self.protected[tus_path] = {0: tus_data}

        ietf_data = rnd.randbytes(900)
        ietf_path = self._location(
            self.client.post(
                MOUNT,
                data=ietf_data,
                headers={"Upload-Draft-Interop-Version": "8", "Upload-Complete": "?0"},
            )
        )
        self.protected[ietf_path] = {0: ietf_data}

        for _ in range(3):
            self.sacrificial.append(
                self._location(self.client.post(MOUNT, headers={"Upload-Length": "4096"}))
            )

    def lost_bytes(self) -> list[str]:
        """What GET says about the protected bytes now: a list of problems, empty if intact."""
        problems = []
        for path, pieces in self.protected.items():
            for offset, data in pieces.items():
                response = self.client.get(
                    path, headers={"Range": f"bytes={offset}-{offset + len(data) - 1}"}
                )
                body = response.get_data()
                if response.status_code not in (200, 206):
                    problems.append(
                        f"GET {path} bytes {offset}+{len(data)} → {response.status_code} {body[:200]!r}"
                    )
                elif response.status_code == 206 and body != data:
                    problems.append(f"GET {path} bytes {offset}+{len(data)} returned other bytes")
                elif response.status_code == 200 and body[offset : offset + len(data)] != data:
                    problems.append(f"GET {path} (200) lost bytes at {offset}+{len(data)}")
        return problems


# -- valid requests ------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    """A ``Content-Digest`` / ``Repr-Digest`` value (sha-256) of ``data``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def valid_request(rnd: random.Random, harness: Harness) -> Request:
    """One request a correct client could send (it may still be refused: wrong offset, ...)."""
    anything = harness.sacrificial + list(harness.protected)
    path = rnd.choice(anything)
    data = rnd.randbytes(rnd.choice((1, 5, 100, 1000)))
    offset = rnd.choice((0, 1, 100, 599, 2999, 4095, 9000))
    cr = f"bytes {offset}-{offset + len(data) - 1}/{rnd.choice(('*', '10000', '4096', '3000'))}"
    kind = rnd.randrange(16)
    if kind == 0:
        headers = [("Upload-Length", str(rnd.choice((0, 10, 4096))))]
        if rnd.random() < 0.5:
            headers.append(("Content-Disposition", "attachment; filename*=UTF-8''%E2%82%AC.txt"))
        if rnd.random() < 0.3:
            headers.append(("Repr-Digest", _digest(b"")))
        return Request("POST", MOUNT, headers)
    if kind == 1:
        body = encode_message({"Content-Range": cr, "Content-Type": "text/plain"}, data)
        return Request(
            "PATCH", path, [("Content-Type", "message/byterange"), ("Prefer", "transaction=atomic")], body
        )
    if kind == 2:
        body = multipart.encode_multipart(
            [({"Content-Range": cr}, data), ({"Content-Offset": "4000"}, data)], "b-1"
        )
        return Request("PATCH", path, [("Content-Type", "multipart/byteranges; boundary=b-1")], body)
    if kind == 3:
        body = binary.encode_known_length({"Content-Range": cr}, data)
        if rnd.random() < 0.5:
            body += (
                binary.encode_indeterminate_head({"Content-Offset": str(offset)})
                + binary.encode_indeterminate_chunk(data)
                + binary.encode_indeterminate_end()
            )
        return Request(
            "PATCH",
            path,
            [("Content-Type", "application/byteranges"), ("Content-Digest", _digest(body))],
            body,
        )
    if kind == 4:
        return Request("PUT", path, [("Content-Range", cr)], data)
    if kind == 5:
        return Request(
            "POST",
            MOUNT,
            [
                ("Tus-Resumable", "1.0.0"),
                ("Upload-Length", "100"),
                ("Upload-Metadata", "filename d29ybGQ=,is_confidential"),
            ],
        )
    if kind == 6:
        return Request(
            "PATCH",
            path,
            [
                ("Tus-Resumable", "1.0.0"),
                ("Upload-Offset", str(offset)),
                ("Content-Type", "application/offset+octet-stream"),
                ("Upload-Checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
            ],
            data,
        )
    if kind == 7:
        return Request(
            "POST", MOUNT, [("Tus-Resumable", "1.0.0"), ("Upload-Concat", f"final;{path} {path}")]
        )
    if kind == 8:
        return Request(
            "POST",
            MOUNT,
            [
                ("Upload-Draft-Interop-Version", rnd.choice(("6", "7", "8"))),
                ("Upload-Complete", rnd.choice(("?0", "?1"))),
            ],
            data,
        )
    if kind == 9:
        return Request(
            "PATCH",
            path,
            [
                ("Upload-Draft-Interop-Version", "8"),
                ("Upload-Offset", str(offset)),
                ("Upload-Complete", "?0"),
                ("Content-Type", "application/partial-upload"),
            ],
            data,
        )
    if kind == 10:
        return Request(
            "HEAD",
            path,
            [
                rnd.choice(
                    (
                        ("Tus-Resumable", "1.0.0"),
                        ("Upload-Draft-Interop-Version", "7"),
                        ("If-None-Match", '"x"'),
                        ("Origin", APP_ORIGIN),
                    )
                )
            ],
        )
    if kind == 11:
        return Request("GET", path, [("Range", "bytes=0-99,200-,-50"), ("If-Range", '"etag"')])
    if kind == 12:
        return Request(
            "OPTIONS",
            rnd.choice((path, MOUNT)),
            [
                ("Origin", rnd.choice((APP_ORIGIN, "https://evil.example", "null"))),
                ("Access-Control-Request-Method", rnd.choice(("PATCH", "PUT", "POST"))),
                ("Access-Control-Request-Headers", "content-type,upload-offset,tus-resumable"),
            ],
        )
    if kind == 13:
        return Request(
            "GET", f"{path}/committed-ranges?after={offset}&limit={rnd.choice((1, 2, 10000))}", []
        )
    if kind == 14:
        return Request(
            "PUT",
            path,
            [
                ("Forwarded", 'for=192.0.2.1;proto=https;host="up.example"'),
                ("Content-Range", f"bytes */{rnd.choice((3000, 4096, 10))}"),
            ],
        )
    return Request("DELETE", rnd.choice(harness.sacrificial), [("If-Match", '"x"')])


def mutate_request(rnd: random.Random, request: Request, harness: Harness) -> Request:
    headers = list(request.headers)
    method, path, body = request.method, request.path, request.body
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(9)
        if op <= 2 and headers:
            i = rnd.randrange(len(headers))
            name, value = headers[i]
            headers[i] = (name, mutate_text(rnd, value, [v for _, v in headers], latin1=True))
        elif op == 3:
            body = mutate_bytes(rnd, body, [body])
        elif op == 4:
            headers.append(
                (
                    rnd.choice(EXTRA_HEADERS),
                    mutate_text(
                        rnd,
                        rnd.choice(
                            (
                                "1",
                                "bytes=0-1",
                                "?1",
                                "8",
                                "1.0.0",
                                '"x"',
                                "*",
                                "partial",
                                APP_ORIGIN,
                                "for=1.2.3.4;proto=https",
                                "sha-256=:AAAA:",
                                "chunked",
                                "Upload-Checksum",
                                "DELETE",
                                "PATCH",
                            )
                        ),
                        latin1=True,
                    ),
                )
            )
        elif op == 5 and headers:
            headers.append(rnd.choice(headers))  # a repeated field line
        elif op == 6 and headers:
            headers.pop(rnd.randrange(len(headers)))
        elif op == 7:
            method = rnd.choice(METHODS)
        else:
            path = rnd.choice(
                (
                    MOUNT,
                    MOUNT + "/",
                    MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA",
                    path + "/committed-ranges",
                    path + "?x=%ff",
                    mutate_text(rnd, path, latin1=True),
                    "/" + random_text(rnd),
                )
            )
    return Request(method, path, headers, body)


def _sanitize(request: Request, harness: Harness) -> Request | None:
    """What a real server could deliver; and never a DELETE (or override) of protected bytes."""
    headers = []
    for name, value in request.headers:
        value = "".join(c if c <= "\xff" and c not in "\r\n\x00" else "?" for c in value)
        headers.append((name, value))
    method = request.method or "GET"
    if not method.isascii() or not method.isalpha():
        method = "GET"
    # A request-target in origin form (RFC 9112 §3.2.1): "/" then visible ASCII, no "//" start
    # (the test client would read that as a host) and no "#" (never sent).
    path = "/" + "".join(c for c in request.path if "\x21" <= c <= "\x7e" and c != "#").lstrip("/")
    bare = path.split("?", 1)[0].rstrip("/")
    if bare in harness.protected:
        if method.upper() == "DELETE":
            return None
        headers = [(n, v) for n, v in headers if n.lower() != "x-http-method-override"]
    return Request(method, path, headers, request.body, request.framing)


def _route(path: str) -> str:
    """The route a path hits, for deduplication: ``/files/<id>/committed-ranges``, ..."""
    parts = urlsplit(path).path.split("/")
    return "/".join(part if part in ("", "files", "committed-ranges") else "<x>" for part in parts)


def _check(request: Request, response: Any) -> str | None:
    status = response.status_code
    if status >= 500:
        body = response.get_data()[:300]
        return f"{status} response: {body!r}"
    if 400 <= status < 500 and request.method.upper() != "HEAD":
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith(PROBLEM_JSON):
            return f"{status} without a problem document (Content-Type {content_type!r})"
        try:
            document = json.loads(response.get_data())
        except ValueError:
            return f"{status} with a problem document that is not JSON"
        if document.get("status") != status:
            return f"{status} with a problem document whose status is {document.get('status')!r}"
    return None


def fuzz_http(seconds: float, seed: int, *, on_finding: Any = None) -> TargetReport:
    """Fuzz the app for ``seconds``; findings are 5xx, 4xx without problem+json, and lost bytes."""
    report = TargetReport("http")
    rnd = random.Random(f"{seed}:http")
    directory = Path(tempfile.mkdtemp(prefix="byterange-fuzz-"))
    # The app logs every unexpected error with a traceback; keep it for the report instead.
    app_logger = logging.getLogger("byterange_server")
    saved = app_logger.propagate
    captured = _Captured()
    app_logger.addHandler(captured)
    app_logger.propagate = False
    harness = Harness(directory)
    seen: dict[str, Finding] = {}

    def record(kind: str, where: str, message: str, request: Request) -> None:
        key = f"{kind}:{where}"
        if key in seen:
            seen[key].count += 1
            return
        finding = seen[key] = Finding("http", kind, where, message, (request.describe(),))
        report.findings.append(finding)
        if on_finding is not None:
            on_finding(finding)

    started = time.monotonic()
    try:
        harness.setup(rnd)
        deadline = started + seconds
        while time.monotonic() < deadline:
            request = valid_request(rnd, harness)
            if rnd.random() < 0.85:
                request = mutate_request(rnd, request, harness)
            if request.body and rnd.random() < 0.15:
                request.framing = rnd.choice(("chunked", "short"))
            sane = _sanitize(request, harness)
            if sane is None:
                continue
            report.examples += 1
            captured.exc = None
            try:
                response = harness.send(sane)
                problem = _check(sane, response)
                response.close()
            except Exception as exc:  # noqa: BLE001 - the test client raised: a crash outside handlers
                frames = traceback.format_exception(exc)
                record(type(exc).__name__, _where(exc), "".join(frames[-6:])[-1500:], sane)
                continue
            if problem is not None:
                status = problem.split(" ", 1)[0]
                if captured.exc is not None:  # a 500: name the exception and where it came from
                    problem += f" -- {type(captured.exc).__name__}: {str(captured.exc)[:200]}"
                    where = _where(captured.exc)
                else:
                    where = f"{sane.method.upper()} {_route(sane.path)}"
                record(f"HTTP {status}", where, problem, sane)
        for problem in harness.lost_bytes():
            record("LostBytes", "GET at the end", problem, Request("GET", "(protected resources)", []))
    finally:
        harness.close()
        app_logger.removeHandler(captured)
        app_logger.propagate = saved
        shutil.rmtree(directory, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report
