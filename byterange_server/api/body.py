"""The request body as the service consumes it, and the one place its endings become errors.

Servers disagree on how a disconnect looks: gunicorn returns short or empty reads and raises
nothing, while Werkzeug's ``LimitedStream`` (Flask's test client) raises ``ClientDisconnected``.
Counting bytes against ``Content-Length`` is the one check that works under both, so that is
what :class:`CountingReader` does (the tusd ``bodyReader`` idea).

Every view that reads a body does it inside :func:`request_body`, which lets the shutdown, the
throughput guard and a newer request cut it, and turns the interruption the service reports
(``TruncatedBodyError``) into what actually ended the body: a cut by the shutdown (503), a body
too slow (408), a malformed chunk (400) or a body over the size cap (413). A client that went
away stays a ``truncated-body``.

**Minimum rate** (``min_body_rate`` over ``min_body_rate_window``): one watchdog thread per
process (:class:`ThroughputGuard`) ends bodies that trickle in slower than that, so a slowloris
client cannot hold a thread. Only time spent *waiting for the client* counts: a server that is
slow to consume (disk, database) never makes a client look slow.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from flask import current_app
from flask import request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from ..config import Settings
from ..errors import BodyTooSlowError
from ..errors import ByterangeError
from ..errors import MalformedChunkError
from ..errors import RequestTooLargeError
from ..errors import ServerShuttingDownError
from ..errors import TruncatedBodyError
from ..protocol.chunked import BodyFramingError
from ..protocol.digests import HASHES
from ..runtime.shutdown import DRAIN
from . import context
from . import interim
from .shutdown import refusal_headers

__all__ = ["GUARD_KEY", "CountingReader", "RequestBody", "ThroughputGuard", "request_body"]

log = logging.getLogger(__name__)

#: ``app.extensions[GUARD_KEY]``: the process's :class:`ThroughputGuard`.
GUARD_KEY = "byterange_throughput_guard"

#: Size of the first read of a body.
FIRST_READ = 16 * 1024
#: Later reads aim to take about this long (see CountingReader._next_read_size).
READ_SECONDS = 0.5


class CountingReader:
    """Iterates a WSGI input stream in bounded chunks, counting and optionally hashing them.

    Read errors end the iteration and are recorded, never raised: the service then commits
    what arrived (or not, under ``atomic``) and reports the interruption.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        content_length: int | None,
        chunk_size: int,
        digest_algorithm: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._stream = stream
        #: Most bytes taken from a body of unknown length (chunked); more ends it as too large.
        self.max_bytes = max_bytes
        #: Why the server ended the body early: ``"cut"`` (shutdown, revocation), ``"too-slow"``
        #: (the throughput guard), ``"too-large"`` or ``"malformed-chunk"`` (broken chunked
        #: framing); None when it did not.
        self.stop_reason: str | None = None
        #: Seconds spent blocked in reads of the body (waiting for the client), and the start of
        #: the read in progress; the throughput guard divides bytes by this, not by wall time,
        #: so a server that is itself slow to consume (a busy disk) never blames the client.
        self._waited = 0.0
        self._read_started: float | None = None
        self.content_length = content_length
        self.chunk_size = chunk_size
        self.received = 0
        self.error: BaseException | None = None
        self._hash = HASHES[digest_algorithm]() if digest_algorithm else None
        self._algorithm = digest_algorithm
        self._exhausted = False
        self._cut = False

    def cut(self, reason: str = "cut") -> None:
        """Stop at the next chunk boundary, as if the client had gone (thread-safe: a flag)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._cut = True

    def _next_read_size(self, got: int, elapsed: float) -> int:
        """About :data:`READ_SECONDS` worth of body at the rate the last read arrived, within
        [FIRST_READ, chunk_size]: a fast client gets whole chunks at once, while a slow client's
        bytes become visible to the throughput guard every fraction of a second instead of once
        per megabyte (a read only returns when it is full)."""
        if elapsed <= 0:
            return self.chunk_size
        return max(min(self.chunk_size, FIRST_READ), min(self.chunk_size, int(got / elapsed * READ_SECONDS)))

    def waited(self, now: float | None = None) -> float:
        """Seconds spent waiting for body bytes so far (including a read in progress)."""
        started = self._read_started
        if started is None:
            return self._waited
        return self._waited + max(0.0, (time.monotonic() if now is None else now) - started)

    def __iter__(self) -> Iterator[bytes]:
        # The first read is small: a part's fields arrive at once, so its range is reserved
        # (and a conflicting writer refused) before a whole chunk of body has to arrive.
        want_next = min(self.chunk_size, FIRST_READ)
        while True:
            want = want_next
            if self.content_length is not None:
                want = min(want, self.content_length - self.received)
                if want <= 0:
                    break  # all of it arrived: a cut now changes nothing
            elif self.max_bytes is not None:
                want = min(want, self.max_bytes + 1 - self.received)  # one byte more tells
            if self._cut:
                self.error = ConnectionAbortedError("the body was cut short by the server")
                break
            started = self._read_started = time.monotonic()
            try:
                chunk = self._stream.read(want)
            except (OSError, ClientDisconnected, ValueError, ParseException) as exc:
                # OSError covers gunicorn's NoMoreData and socket errors; the worker's body
                # (worker.WireBody) raises BodyFramingError for a malformed chunk, after
                # returning every byte that came before it. gunicorn's own body (plain gthread,
                # TLS) raises ParseException subclasses for one, and loses what it buffered.
                if isinstance(exc, (BodyFramingError, ParseException)):
                    self.stop_reason = self.stop_reason or "malformed-chunk"
                self.error = exc
                break
            finally:
                elapsed = time.monotonic() - started
                self._waited += elapsed
                self._read_started = None
            want_next = self._next_read_size(len(chunk), elapsed)
            if not chunk:
                break
            if self.max_bytes is not None and self.received + len(chunk) > self.max_bytes:
                # Too large: keep what came before this chunk, refuse the rest.
                self.stop_reason = self.stop_reason or "too-large"
                self.error = ConnectionAbortedError("the body exceeded the request size limit")
                break
            self.received += len(chunk)
            if self._hash is not None:
                self._hash.update(chunk)
            yield chunk
        self._exhausted = True

    @property
    def interrupted(self) -> bool:
        if self.error is not None:
            return True
        return self.content_length is not None and self.received < self.content_length

    def digest(self, algorithm: str) -> bytes:
        if self._hash is None or algorithm != self._algorithm:
            raise ValueError(f"this reader was not hashing with {algorithm}")
        return self._hash.digest()


class _Watched:
    __slots__ = ("cut", "reader", "received", "waited")

    def __init__(self, reader: CountingReader, cut: Callable[[], None]) -> None:
        self.reader = reader
        self.cut = cut
        self.received = reader.received
        self.waited = reader.waited()


class ThroughputGuard:
    """Ends bodies that arrive slower than ``min_rate`` bytes/s over ``window`` seconds of waiting.

    The check is cumulative per window: every time a body has spent ``window`` seconds waiting
    for the client since the last checkpoint, it must have delivered ``min_rate * window`` bytes
    in that time, or it is cut with reason ``too-slow``.
    """

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self._lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return self.min_rate > 0 and self.window > 0

    @contextlib.contextmanager
    def watching(self, reader: CountingReader, cut: Callable[[], None]) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        entry = _Watched(reader, cut)
        with self._lock:
            self._watched[id(entry)] = entry
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="byterange-throughput", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._watched.pop(id(entry), None)

    def check(self, now: float | None = None) -> int:
        """Cut the bodies that fell below the rate; returns how many (the thread calls this)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entries = list(self._watched.values())
        cut = 0
        for entry in entries:
            waited = entry.reader.waited(now) - entry.waited
            if waited < self.window:
                continue
            arrived = entry.reader.received - entry.received
            if arrived < self.min_rate * waited:
                rate = arrived / waited
                log.info("ending a body that arrived at %.0f B/s (minimum %d B/s)", rate, self.min_rate)
                entry.reader.cut("too-slow")
                try:
                    entry.cut()
                except Exception:  # the body then ends at its next chunk
                    log.exception("could not cut a slow body")
                cut += 1
            else:
                entry.received = entry.reader.received
                entry.waited = entry.reader.waited(now)
        return cut

    def _run(self) -> None:
        interval = max(0.05, min(5.0, self.window / 4))
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # never let the watchdog die
                log.exception("the throughput guard failed")


@dataclass(frozen=True)
class RequestBody:
    """The body of the request being handled: its reader, and a callable (safe from another
    thread) that ends it now, e.g. for the lease keeper when a DELETE fences the write."""

    reader: CountingReader
    cut: Callable[[], None]


@contextlib.contextmanager
def request_body(digest_algorithm: str | None, *, atomic: bool) -> Iterator[RequestBody]:
    """This request's body, to be read by one write; the size limit applies to a chunked body.

    :param digest_algorithm: hash the body with it as it arrives (a digest to check), or None.
    :param atomic: whether the write keeps nothing when interrupted (only for the message).
    :raises ServerShuttingDownError: (503) the shutdown cut the body.
    :raises BodyTooSlowError: (408), :raises MalformedChunkError: (400),
        :raises RequestTooLargeError: (413): the server ended the body for that reason.
    """
    settings = context.settings()
    reader = CountingReader(
        request.stream,
        content_length=request.content_length,
        chunk_size=settings.chunk_size,
        digest_algorithm=digest_algorithm,
        max_bytes=settings.max_request_bytes or None,
    )
    cut = interim.body_cutter(request.environ, reader)
    guard: ThroughputGuard = current_app.extensions[GUARD_KEY]
    with DRAIN.tracking(cut) as write, guard.watching(reader, cut):
        try:
            yield RequestBody(reader, cut)
        except TruncatedBodyError as error:
            reason = "shutdown" if write.cut_by_shutdown else reader.stop_reason
            translated = _ended_by_server(reason, reader, settings, atomic=atomic)
            if translated is None:
                raise  # the client went away, or sent less than it announced
            raise translated from error


def _ended_by_server(
    reason: str | None, reader: CountingReader, settings: Settings, *, atomic: bool
) -> ByterangeError | None:
    """The error that says why the server ended a body early (None: it did not)."""
    kept = (
        "as an all-or-nothing request, nothing of it was applied"
        if atomic
        else "the bytes it received are committed"
    )
    if reason == "shutdown":
        return ServerShuttingDownError(
            f"The server is shutting down and ended this write early; {kept}. Send the rest again.",
            headers=refusal_headers(settings),
        )
    if reason == "too-slow":
        return BodyTooSlowError(
            f"The body arrived slower than {settings.min_body_rate} bytes/s; {kept}.",
            extra={"min-body-rate": settings.min_body_rate},
        )
    if reason == "malformed-chunk":
        return MalformedChunkError(
            f"The chunked framing of the body is malformed ({reader.error}); {kept}.",
            extra={"received": reader.received},
        )
    if reason == "too-large":
        return RequestTooLargeError(
            f"The body is larger than {settings.max_request_bytes} bytes; {kept}. "
            "Send the rest in another request.",
            extra={"max-request-bytes": settings.max_request_bytes},
        )
    return None
