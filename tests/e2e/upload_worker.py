"""Upload segments of a source file to a byterange-server resource; run as a separate process.

The end-to-end tests start this script with ``subprocess`` so that several *processes* write one
resource at the same time, like independent clients would. It only needs the standard library,
so it also runs outside the test suite::

    python tests/e2e/upload_worker.py --url http://127.0.0.1:8080/files/ID --source data.bin \\
        --length 67108864 --segments 0-1048575,5242880-6291455 --mode mix

Each segment is a half-open range written as ``first-last`` (inclusive, like Content-Range).
A segment is sent as ``PATCH`` with ``Content-Type: message/byterange`` or as a partial ``PUT``
(``--mode patch|put|mix``; ``mix`` alternates by segment index). Failed attempts are retried:

- ``409`` with ``Retry-After`` (another request is writing that range, or a dead writer's lease
  has not expired yet) → wait Retry-After (plus jitter), then send the whole segment again;
- ``5xx``, connection errors, resets → exponential backoff, then again;
- ``409`` without ``Retry-After`` (different bytes over committed ones) and other ``4xx`` →
  fatal: the process exits with status 1.

Re-sending bytes that were already committed is allowed by the protocol (identical bytes → 2xx),
so a retry always sends the whole segment. A JSON summary goes to stdout on exit.

The module is also imported by the tests (``tests/e2e/conftest.py``) for its HTTP helpers, which
use ``http.client`` so that bodies can be streamed slowly with an exact ``Content-Length``.
"""

from __future__ import annotations

import argparse
import dataclasses
import email.message
import http.client
import json
import random
import select
import socket
import sys
import time
import urllib.parse
from collections.abc import Iterable
from collections.abc import Iterator

#: Statuses that mean "try again later".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass
class Reply:
    """One HTTP response, read completely. ``status`` is None when no response arrived."""

    status: int | None
    headers: email.message.Message
    body: bytes
    #: Body bytes (of the request) that were handed to the socket.
    sent: int = 0
    #: Set when the connection failed before a complete response was read.
    error: str | None = None
    #: True when the server answered before the whole request body was sent.
    early: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        value = self.header("Retry-After")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return None

    @property
    def problem(self) -> dict[str, object] | None:
        if (self.header("Content-Type") or "").split(";")[0].strip() != "application/problem+json":
            return None
        try:
            return json.loads(self.body)  # type: ignore[no-any-return]
        except ValueError:
            return None

    def describe(self) -> str:
        if self.status is None:
            return f"no response ({self.error}; {self.sent} body bytes sent)"
        state = {
            name: self.header(name)
            for name in ("Upload-Offset", "Upload-Complete", "Committed-Ranges", "Retry-After")
            if self.header(name) is not None
        }
        problem = self.problem
        text = f"{self.status} {state}"
        if problem is not None:
            text += f" problem={problem}"
        elif self.body and self.status >= 400:
            text += f" body={self.body[:300]!r}"
        return text


def split_url(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | Iterable[bytes] | None = None,
    content_length: int | None = None,
    timeout: float = 60.0,
    rate: float | None = None,
    piece: int = 256 * 1024,
    burst: int = 0,
) -> Reply:
    """Send one request on a fresh connection and read the whole response.

    ``body`` may be bytes or an iterable of chunks; with an iterable, ``content_length`` is sent as
    given (no chunked encoding). ``rate`` (bytes/s) slows the upload down: the body is sent in
    ``piece``-sized writes with sleeps in between; the first ``burst`` bytes go at full speed
    (the server reads the body in 1 MiB chunks and reserves a part's range only once its field
    block has arrived in such a chunk, so a burst gets the reservation taken early). Between
    writes the socket is checked for an early response (a 409 sent while the body is still
    streaming); sending stops when one arrives. Connection failures are reported in
    ``Reply.error``, never raised.
    """
    host, port, path = split_url(url)
    headers = dict(headers or {})
    if isinstance(body, (bytes, bytearray, memoryview)):
        content_length = len(body)
        chunks: Iterable[bytes] = [bytes(body)]
    elif body is None:
        chunks = []
    else:
        chunks = body
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    sent = 0
    early = False
    try:
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            paced_since: tuple[float, int] | None = None
            for chunk in _pieces(chunks, piece if rate else 1024 * 1024):
                if _readable(conn.sock):
                    early = True
                    break
                conn.sock.sendall(chunk)  # type: ignore[union-attr]
                sent += len(chunk)
                if rate and sent > burst:
                    if paced_since is None:
                        paced_since = (time.monotonic(), sent)
                    delay = (sent - paced_since[1]) / rate - (time.monotonic() - paced_since[0])
                    if delay > 0:
                        time.sleep(delay)
        except OSError as exc:
            # The server may have answered and closed while we were still sending.
            error = f"{type(exc).__name__}: {exc}"
            reply = _read_response(conn, sent, early=True)
            if reply.status is None:
                reply.error = error
            return reply
        return _read_response(conn, sent, early=early)
    finally:
        conn.close()


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            yield view[start : start + size]  # type: ignore[misc]


def _readable(sock: socket.socket | None) -> bool:
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


def _read_response(conn: http.client.HTTPConnection, sent: int, *, early: bool) -> Reply:
    try:
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, email.message.Message(), b"", sent, f"{type(exc).__name__}: {exc}", early)
    return Reply(response.status, response.msg, body, sent, None, early)


# Segment writes --------------------------------------------------------------------------------


def byterange_prefix(first: int, last: int, length: int | None) -> bytes:
    total = "*" if length is None else str(length)
    return f"Content-Range: bytes {first}-{last}/{total}\r\n\r\n".encode("ascii")


def patch_segment(
    url: str,
    offset: int,
    data: bytes | memoryview,
    length: int | None,
    *,
    rate: float | None = None,
    burst: int = 0,
    extra_headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Reply:
    """PATCH ``message/byterange`` with an explicit Content-Length (never chunked)."""
    prefix = byterange_prefix(offset, offset + len(data) - 1, length)
    headers = {"Content-Type": "message/byterange", **(extra_headers or {})}
    return request(
        "PATCH",
        url,
        headers=headers,
        body=[prefix, data],  # type: ignore[list-item]
        content_length=len(prefix) + len(data),
        rate=rate,
        burst=burst,
        timeout=timeout,
    )


def put_segment(
    url: str,
    offset: int,
    data: bytes | memoryview,
    length: int | None,
    *,
    rate: float | None = None,
    burst: int = 0,
    extra_headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Reply:
    """Partial PUT: ``Content-Range: bytes a-b/L`` request header and the raw bytes."""
    total = "*" if length is None else str(length)
    headers = {
        "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{total}",
        "Content-Type": "application/octet-stream",
        **(extra_headers or {}),
    }
    return request(
        "PUT",
        url,
        headers=headers,
        body=[bytes(data)],
        content_length=len(data),
        rate=rate,
        burst=burst,
        timeout=timeout,
    )


class UploadFailed(RuntimeError):
    pass


@dataclasses.dataclass
class Stats:
    segments: int = 0
    attempts: int = 0
    retries: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    log: list[str] = dataclasses.field(default_factory=list)

    def count(self, reply: Reply) -> None:
        key = str(reply.status) if reply.status is not None else "error"
        self.statuses[key] = self.statuses.get(key, 0) + 1


def upload_segment(
    url: str,
    offset: int,
    data: bytes | memoryview,
    length: int | None,
    *,
    method: str = "patch",
    rate: float | None = None,
    deadline: float | None = None,
    stats: Stats | None = None,
    rng: random.Random | None = None,
) -> Reply:
    """Send one segment until it succeeds; retries as the module docstring says.

    :raises UploadFailed: on a fatal answer or when ``deadline`` (monotonic time) passes.
    """
    stats = stats if stats is not None else Stats()
    rng = rng or random.Random()
    send = patch_segment if method == "patch" else put_segment
    backoff = 0.1
    while True:
        stats.attempts += 1
        reply = send(url, offset, data, length, rate=rate)
        stats.count(reply)
        if reply.ok:
            stats.segments += 1
            return reply
        what = f"{method.upper()} [{offset}, {offset + len(data)}): {reply.describe()}"
        if reply.status == 409 and reply.retry_after is not None:
            wait = min(reply.retry_after, 10.0) + rng.uniform(0, 0.3)
        elif reply.status is None or reply.status in RETRYABLE_STATUSES:
            wait = backoff + rng.uniform(0, backoff)
            backoff = min(backoff * 2, 2.0)
        else:
            raise UploadFailed(what)
        if len(stats.log) < 50:
            stats.log.append(f"retry after {wait:.2f}s: {what}")
        if deadline is not None and time.monotonic() + wait > deadline:
            raise UploadFailed(f"gave up (deadline): {what}")
        stats.retries += 1
        time.sleep(wait)


def method_for(index: int, mode: str) -> str:
    if mode == "mix":
        return "patch" if index % 2 == 0 else "put"
    return mode


def parse_segments(text: str) -> list[tuple[int, int]]:
    """``"0-99,200-299"`` (inclusive) → ``[(0, 100), (200, 300)]`` (half-open)."""
    segments = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        first, _, last = item.partition("-")
        segments.append((int(first), int(last) + 1))
    return segments


def format_segments(segments: Iterable[tuple[int, int]]) -> str:
    return ",".join(f"{start}-{stop - 1}" for start, stop in segments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="resource URL")
    parser.add_argument("--source", required=True, help="file holding the whole representation")
    parser.add_argument("--length", type=int, default=None, help="declared length (default: unknown, '*')")
    parser.add_argument("--segments", required=True, help="first-last,first-last,... (inclusive)")
    parser.add_argument("--mode", choices=("patch", "put", "mix"), default="mix")
    parser.add_argument("--rate", type=float, default=None, help="bytes/s per request (slow upload)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument("--index-base", type=int, default=0, help="added to the segment index for --mode mix")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    stats = Stats()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    ok = True
    error = None
    try:
        with open(args.source, "rb") as source:
            for index, (start, stop) in enumerate(parse_segments(args.segments)):
                source.seek(start)
                data = source.read(stop - start)
                if len(data) != stop - start:
                    raise UploadFailed(f"source is shorter than segment [{start}, {stop})")
                upload_segment(
                    args.url,
                    start,
                    data,
                    args.length,
                    method=method_for(index + args.index_base, args.mode),
                    rate=args.rate,
                    deadline=deadline,
                    stats=stats,
                    rng=rng,
                )
    except (UploadFailed, OSError) as exc:
        ok = False
        error = str(exc)
        print(f"upload_worker: {exc}", file=sys.stderr)
    summary = {
        "ok": ok,
        "error": error,
        "segments": stats.segments,
        "attempts": stats.attempts,
        "retries": stats.retries,
        "statuses": stats.statuses,
        "seconds": round(time.monotonic() - started, 3),
        "log": stats.log,
    }
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
