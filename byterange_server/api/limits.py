"""Request limits enforced by the HTTP layer (the service enforces sizes, extents and concurrent
writes itself): header blocks, the size of one request body, and a minimum body rate.

- **Transfer codings**: a ``Transfer-Encoding`` other than one final ``chunked`` (``gzip,
  chunked``, ``identity, chunked``) is refused with ``501`` before anything is read or stored
  (RFC 9112 §6.1); framing that cannot be trusted (``chunked`` twice or not last) is a ``400``
  (§6.3). gunicorn refuses most of these itself; ``gzip``/``deflate``/``compress`` before
  ``chunked`` it accepts, and the still-compressed bytes would have been stored as the content.
- **Header block** (``max_header_fields``, ``max_header_bytes``): checked before routing, so an
  oversized block is a ``431`` problem document. gunicorn's own caps (``limit_request_fields``,
  ``limit_request_field_size`` in gunicorn_conf.py) sit above these as a backstop; our worker
  (worker.py) answers those with a ``431`` problem document too.
- **Body size** (``max_request_bytes``): a larger ``Content-Length`` is refused before a byte is
  read (413); a chunked body is read up to the limit and then ended, keeping what came before
  under ``persist``.
- **Minimum rate** (``min_body_rate`` over ``min_body_rate_window``): one watchdog thread per
  process ends bodies that trickle in slower than that (408), so a slowloris client cannot hold a
  thread. Only time spent *waiting for the client* counts: a server that is slow to consume
  (disk, database) never makes a client look slow.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

from flask import Flask
from flask import request

from ..config import Settings
from ..errors import HeaderFieldsTooLargeError
from ..errors import MalformedHeaderError
from ..errors import RequestTooLargeError
from ..errors import UnsupportedTransferCodingError
from .body import CountingReader

__all__ = ["GUARD_KEY", "ThroughputGuard", "body_reader", "init_limits"]

log = logging.getLogger(__name__)

_WRITE_METHODS = frozenset({"PATCH", "PUT", "POST"})


GUARD_KEY = "byterange_throughput_guard"


def init_limits(app: Flask, settings: Settings) -> None:
    app.extensions[GUARD_KEY] = ThroughputGuard(settings.min_body_rate, settings.min_body_rate_window)

    @app.before_request
    def _check_request_limits() -> None:
        _check_transfer_coding(request.headers.get("Transfer-Encoding"))
        _check_header_block(settings)
        if request.blueprint != "byterange" or request.method not in _WRITE_METHODS:
            return
        length = request.content_length
        if settings.max_request_bytes and length is not None and length > settings.max_request_bytes:
            raise RequestTooLargeError(
                "The request body is larger than this server accepts in one request; send it in "
                "smaller requests.",
                extra={"max-request-bytes": settings.max_request_bytes, "content-length": length},
            )


def _check_transfer_coding(value: str | None) -> None:
    if value is None:
        return
    codings = [coding.strip(" \t").lower() for coding in value.split(",")]
    codings = [coding for coding in codings if coding]
    if codings == ["chunked"]:
        return
    names = [coding.split(";", 1)[0].rstrip(" \t") for coding in codings]
    if not names or names[-1] != "chunked" or names.count("chunked") > 1:
        raise MalformedHeaderError(
            "Transfer-Encoding must end with chunked, once (RFC 9112 §6.3): the body's length "
            "cannot be known otherwise.",
            extra={"transfer-encoding": value[:200]},
        )
    raise UnsupportedTransferCodingError(
        "This server supports no transfer coding but chunked; send the body uncompressed "
        "(Content-Encoding describes the content, and is stored as it is).",
        extra={"transfer-encoding": value[:200]},
    )


def _check_header_block(settings: Settings) -> None:
    fields = 0
    size = 0
    for name, value in request.headers.items():
        fields += 1
        size += len(name) + len(value) + 4  # ": " and CRLF
    if settings.max_header_fields and fields > settings.max_header_fields:
        raise HeaderFieldsTooLargeError(
            "The request has more header fields than this server accepts.",
            extra={"max-header-fields": settings.max_header_fields},
        )
    if settings.max_header_bytes and size > settings.max_header_bytes:
        raise HeaderFieldsTooLargeError(
            "The request's header fields are larger than this server accepts.",
            extra={"max-header-bytes": settings.max_header_bytes},
        )


def body_reader(settings: Settings, digest_algorithm: str | None) -> CountingReader:
    """The reader of this request's body, with the size limit applied to chunked bodies."""
    return CountingReader(
        request.stream,
        content_length=request.content_length,
        chunk_size=settings.chunk_size,
        digest_algorithm=digest_algorithm,
        max_bytes=settings.max_request_bytes or None,
    )


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
