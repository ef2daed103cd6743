"""The gunicorn worker of byterange-server: gthread, with the request head read by the main loop.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it has a byte to read,
and the thread then blocks until the whole header block has arrived, however slowly it comes: a
few dozen clients sending a byte a second hold every thread, and no other request is answered
for as long as they care to stay. After an early error it also drains leftover body in the
thread, at the client's pace. :class:`UploadWorker` keeps everything else of gthread (keep-alive,
graceful stop, ``max_requests``, the hooks of ``shutdown.py``) and changes three things:

- **Heads are read by the main loop**, non-blocking, into a buffer, until the blank line that
  ends them. Only a complete head goes to the thread pool; the buffered bytes are handed to
  gunicorn's parser (its unreader), so nothing is read twice. A head must be complete within
  ``BYTERANGE_HEADER_TIMEOUT`` seconds of the first byte of the request (of the accept, for the
  first request of a connection, as nginx's ``client_header_timeout``) and within gunicorn's own
  size limits (and twice ``BYTERANGE_MAX_HEADER_BYTES``, which the app would refuse anyway);
  otherwise the worker answers ``408 header-too-slow`` (or ``431``) itself and closes. A
  connection that never sent a byte is closed silently.
- **A refused request closes instead of draining.** When the application answers before it has
  read the whole body (404, 409, 413, 429, ...), the worker discards what has already arrived
  without waiting; if the body is still not complete, the answer carries ``Connection: close``
  and the connection is closed *lingering*, by the main loop: the write side is shut down, then
  whatever the client still sends is read and dropped until it closes, or for at most
  :data:`LINGER_SECONDS` and :data:`LINGER_BYTES` (as nginx's ``lingering_close``), so that the
  client reads the answer instead of a reset. No thread waits on such a client. A response to
  a fully read body keeps the connection alive as before. Every other close goes the same way
  (gthread's own graceful close blocks the main loop for up to 2 s per connection).
- **The body is our own stream** (:class:`WireBody`), put in ``wsgi.input``: a read returns as
  soon as some bytes have arrived (so an early refusal does not wait for a full buffer of body),
  and what arrived before an error is always returned before the error is raised. gunicorn's
  ``ChunkedReader.read(size)`` buffers until it holds ``size`` bytes and loses that buffer when
  the connection drops or a chunk is malformed; its framing errors are not ``OSError``, so the
  application saw a 500. :class:`~byterange_server.protocol.chunked.ChunkedDecoder` (sans-IO) is a
  strict RFC 9112 §7.1 decoder that never loses a decoded byte and reports broken framing as
  :class:`~byterange_server.protocol.chunked.BodyFramingError`.

TLS, HTTP/2 (prior knowledge) and PROXY-protocol connections are served exactly as gthread
serves them: their first bytes are not plain HTTP/1.1 heads.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import util
from gunicorn.http.body import ChunkedReader
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import InvalidHeader
from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.http.errors import ParseException
from gunicorn.http.errors import UnsupportedTransferCoding
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE
from gunicorn.http.message import MAX_HEADERS
from gunicorn.http.message import MAX_REQUEST_LINE
from gunicorn.http.wsgi import Response as GunicornResponse
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker

from ..config import Settings
from ..errors import HeaderFieldsTooLargeError
from ..errors import HeaderTooSlowError
from ..errors import MalformedHeaderError
from ..errors import UnsupportedTransferCodingError
from ..protocol.chunked import BodyFramingError
from ..protocol.chunked import ChunkedDecoder

__all__ = ["IncompleteBodyError", "UploadWorker", "WireBody"]

#: Longest a lingering close waits for the client to close, and most bytes it discards meanwhile.
LINGER_SECONDS = 5.0
LINGER_BYTES = 1024 * 1024
#: Most leftover body discarded, without waiting, before a refusal is answered: a small body that
#: has already arrived whole does not cost the client its keep-alive connection.
DISCARD_BYTES = 64 * 1024
#: Largest single recv() of a body (gunicorn's SocketUnreader.max_body_chunk, for the same GIL
#: reasons).
MAX_RECV = 1024 * 1024
#: How often the main loop looks for heads and lingering closes past their deadline.
SWEEP_SECONDS = 0.25

_FRAMING_FIELDS = frozenset({"TRANSFER-ENCODING", "CONTENT-LENGTH"})

#: Returned by a request thread: close the connection lingering (the body is not fully read).
_LINGER = object()


class IncompleteBodyError(ConnectionAbortedError):
    """The connection ended inside a chunked body."""


# -- the body stream in wsgi.input ---------------------------------------------------------------


class WireBody:
    """``wsgi.input`` of an HTTP/1.1 request read by :class:`UploadWorker`.

    ``read(size)`` blocks until *some* body has arrived, then returns what has (up to ``size``,
    taking more that is already there without waiting), like a raw stream's read: a slow client's
    bytes reach the application as they come, and an early refusal is decided on the first bytes.
    Bytes received before a failure (a reset, the connection ending inside a chunked body, a
    malformed chunk) are returned first; the failure is raised by the next read. A
    ``Content-Length`` body cut short simply ends (the application counts it).

    ``reader`` (itself), ``unreader`` and ``req`` are there because the application finds the
    connection's socket (to cut a body, to send 1xx answers) and the parsed trailers through
    them, as it does with gunicorn's own body.
    """

    def __init__(
        self,
        req: Any,
        sock: socket.socket,
        *,
        length: int | None,
        max_line: int = DEFAULT_MAX_HEADERFIELD_SIZE,
        max_trailer: int = 65536,
    ) -> None:
        self.req = req
        self.unreader = req.unreader
        self.reader = self
        self._sock = sock
        self._left = length
        self._decoder = (
            None if length is not None else ChunkedDecoder(max_line=max_line, max_trailer=max_trailer)
        )
        self._ready = bytearray()  # decoded chunk data not handed out yet
        self._error: BaseException | None = None
        #: True once the whole body has been read from the connection (its framing is complete):
        #: the next request, if any, starts at the next byte.
        self.finished = length == 0
        #: True when the body ended in an error (gunicorn's parser then never reuses the
        #: connection, since where the next request starts is unknown).
        self.failed = False

    # Raw bytes ---------------------------------------------------------------------------------

    def _recv(self, size: int, block: bool) -> bytes | None:
        """Bytes the parser read ahead first, then the socket; None: nothing without waiting."""
        buffered = self.unreader.take_buffered()
        if buffered:
            return buffered
        while True:
            try:
                if block:
                    return self._sock.recv(size)
                return self._sock.recv(size, socket.MSG_DONTWAIT)
            except InterruptedError:
                continue
            except BlockingIOError:
                return None

    def _take(self, size: int, block: bool) -> int:
        """Read once into the stream's state; returns how many body bytes became available
        (-1: nothing could be read without waiting)."""
        if self._decoder is None:
            assert self._left is not None
            data = self._recv(min(size, self._left, MAX_RECV), block)
            if data is None:
                return -1
            if not data:
                self.failed = True  # the client went before its Content-Length
                self._left = 0
                return 0
            if len(data) > self._left:  # read ahead past the body: the next request's
                self.unreader.unread(data[self._left :])
                data = data[: self._left]
            self._left -= len(data)
            self._ready += data
            if not self._left and not self.failed:
                self.finished = True
            return len(data)
        data = self._recv(min(max(size, 64 * 1024), MAX_RECV), block)
        if data is None:
            return -1
        if not data:
            self.failed = True
            self._error = IncompleteBodyError("the connection ended inside the chunked body")
            return 0
        decoder = self._decoder
        payload = decoder.feed(data)
        self._ready += payload
        if decoder.error is not None:
            self.failed = True
            self._error = decoder.error
        elif decoder.done:
            self._end_chunked(decoder)
        return len(payload)

    def _end_chunked(self, decoder: ChunkedDecoder) -> None:
        if decoder.rest:
            self.unreader.unread(decoder.rest)
        if decoder.trailers:
            try:
                self.req.trailers = self.req.parse_headers(decoder.trailers, from_trailer=True)
            except ParseException as exc:
                self.failed = True
                self._error = BodyFramingError(f"invalid trailer section: {exc}")
                return
        self.finished = True

    def _ended(self) -> bool:
        return self.finished or self.failed or self._error is not None

    # The stream ----------------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(MAX_RECV):
                parts.append(chunk)
            return b"".join(parts)
        if size == 0:
            return b""
        try:
            # A read of framing only (a chunk size line) yields no data: wait on.
            while not self._ready and not self._ended():
                self._take(size, block=True)
            # More that has already arrived, without waiting: fast clients get full reads.
            while len(self._ready) < size and not self._ended():
                if self._take(size - len(self._ready), block=False) < 0:
                    break
        except OSError as exc:  # a reset: what arrived is returned first
            self.failed = True
            self._error = exc
        if self._ready:
            out = bytes(self._ready[:size])
            del self._ready[:size]
            return out
        if self._error is not None:
            raise self._error
        return b""

    read1 = read

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        line = bytearray()
        while limit is None or len(line) < limit:
            if not self._ready:
                chunk = self.read(MAX_RECV)
                if not chunk:
                    break
                self._ready[:0] = chunk
            stop = self._ready.find(b"\n")
            take = len(self._ready) if stop < 0 else stop + 1
            if limit is not None:
                take = min(take, limit - len(line))
            line += self._ready[:take]
            del self._ready[:take]
            if line.endswith(b"\n"):
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def discard_arrived(self, limit: int = DISCARD_BYTES) -> bool:
        """Drop up to ``limit`` bytes of body that have already arrived, without waiting.

        :returns: whether the body is now wholly read (the connection can carry another request).
        """
        self._ready.clear()
        try:
            # Counted in reads (of at most 16 KiB of body, more raw bytes when chunked), so a
            # client feeding tiny chunks fast cannot keep the thread here.
            for _ in range(max(1, limit // (16 * 1024))):
                if self._ended() or self._take(16 * 1024, block=False) < 0:
                    break
                self._ready.clear()
        except OSError as exc:
            self.failed = True
            self._error = exc
        return self.finished and not self.failed


# -- the worker ----------------------------------------------------------------------------------


def _bare_lf(head: bytearray, start: int) -> bool:
    """Whether ``head[start:]`` has an LF without its CR (gunicorn's parser refuses such a head
    at once, so it is handed over instead of waited on until the deadline)."""
    index = head.find(b"\n", start)
    while index >= 0:
        if index == 0 or head[index - 1] != 0x0D:
            return True
        index = head.find(b"\n", index + 1)
    return False


def _settings_of(worker: Any) -> Any:
    settings = getattr(getattr(worker, "wsgi", None), "config", {}).get("BYTERANGE_SETTINGS")
    if settings is None:
        settings = Settings.from_env()
    return settings


def _problem_bytes(
    status: int, reason: str, error: type, detail: str, base_uri: str, extra: dict[str, Any] | None = None
) -> bytes:
    """A complete ``Connection: close`` response carrying a problem document (RFC 9457)."""
    document = {"type": base_uri + error.code, "title": error.title, "status": status, "detail": detail}
    document.update(extra or {})
    body = json.dumps(document, separators=(",", ":")).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _RefusalAwareApp:
    """The WSGI app, with a ``start_response`` that closes the connection of a refused request.

    When the answer starts before the body has been read to its end, the body bytes that have
    already arrived are dropped without waiting; if that does not finish the body, the answer
    carries ``Connection: close`` and the worker closes lingering (see ``UploadWorker``).
    Every other attribute is the app's (``shutdown.py`` reads its ``config``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = environ.get("wsgi.input")
        if not isinstance(body, WireBody):
            return self.app(environ, start_response)
        response = getattr(start_response, "__self__", None)

        def closing_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not body.finished and not body.discard_arrived() and isinstance(response, GunicornResponse):
                response.force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, closing_start_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


class UploadWorker(ThreadWorker):
    """gthread with request heads read by the main loop and refused requests closed lingering
    (see the module docstring)."""

    def init_process(self) -> None:
        #: Connections whose head is being read: conn -> deadline.
        self._heads: dict[Any, float] = {}
        #: Connections being closed lingering: conn -> deadline.
        self._lingering: dict[Any, float] = {}
        self._last_sweep = 0.0
        self.header_timeout = 10.0
        self.problem_base_uri = "tag:byterange-server,2026:problem:"
        self.max_head = self._max_head_bytes()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _RefusalAwareApp(self.wsgi)

    def run(self) -> None:
        settings = _settings_of(self)
        self.header_timeout = float(settings.header_timeout)
        self.problem_base_uri = settings.problem_base_uri
        if settings.max_header_bytes:
            # The app refuses a header block over max_header_bytes anyway (431): buffering
            # more than about twice that, per connection, would only cost memory.
            app_bound = self.cfg.limit_request_line + 8 + 2 * settings.max_header_bytes
            self.max_head = min(self.max_head, app_bound)
        super().run()

    def _max_head_bytes(self) -> int:
        """The largest head gunicorn's parser would accept (its own formula and defaults)."""
        cfg = self.cfg
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > MAX_HEADERS:
            fields = MAX_HEADERS
        field_size = cfg.limit_request_field_size
        if field_size <= 0:
            field_size = DEFAULT_MAX_HEADERFIELD_SIZE
        line = cfg.limit_request_line
        if line < 0 or line > MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        elif line == 0:
            line = 1024 * 1024
        return 2 + line + 2 + fields * (field_size + 2) + 4

    def _reads_heads(self, conn: Any) -> bool:
        return (
            not self.cfg.is_ssl
            and getattr(self.cfg, "proxy_protocol", "off") == "off"
            and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)
        )

    # Connections in: accept, keep-alive ----------------------------------------------------------

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        conn.reads_heads = self._reads_heads(conn)
        if not conn.reads_heads:
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._await_head(conn, b"", time.monotonic() + self.header_timeout)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if not getattr(conn, "reads_heads", False):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        # The deadline counts from the first byte of this request, which is here now.
        self._await_head(conn, b"", time.monotonic() + self.header_timeout)
        self._on_head_readable(conn, client)

    # Reading heads -------------------------------------------------------------------------------

    def _await_head(self, conn: Any, data: bytes, deadline: float) -> None:
        conn.head = bytearray(data)
        conn.head_scanned = 0
        self._heads[conn] = deadline
        conn.sock.setblocking(False)
        if data and self._head_complete(conn):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn: Any, _sock: Any = None) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went before its head was complete
            self._forget_head(conn)
            self._close(conn)
            return
        conn.head += data
        self._head_complete(conn)

    def _head_complete(self, conn: Any) -> bool:
        """Hand the connection to a thread if its head is complete (or certain to be refused by
        the parser at once); refuse it if it is too large. True when it left the head state."""
        head = conn.head
        scanned = conn.head_scanned
        conn.head_scanned = len(head)
        end = head.find(b"\r\n\r\n", max(0, scanned - 3))
        if end >= 0 or _bare_lf(head, scanned):
            self._forget_head(conn)
            if conn.parser is None:
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
                conn.initialized = True
            conn.parser.unreader.unread(bytes(head))
            conn.head = None
            conn.sock.setblocking(True)
            self.enqueue_req(conn)
            return True
        if len(head) > self.max_head:
            self._forget_head(conn)
            self._refuse(
                conn,
                _problem_bytes(
                    431,
                    "Request Header Fields Too Large",
                    HeaderFieldsTooLargeError,
                    "The request head is larger than this server accepts.",
                    self.problem_base_uri,
                    {"max-head-bytes": self.max_head},
                ),
            )
            return True
        return False

    def _forget_head(self, conn: Any) -> None:
        self._heads.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _refuse(self, conn: Any, response: bytes) -> None:
        """Answer from the main loop (a few hundred bytes: one non-blocking send), then close."""
        try:
            conn.sock.send(response)
        except OSError:
            pass
        status = response.split(b"\r\n", 1)[0].decode()
        self.log.info("refused a request head from %s: %s", conn.client, status)
        self._linger(conn)

    # Connections out: after a request ------------------------------------------------------------

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        body = getattr(getattr(conn.parser, "mesg", None), "body", None)
        if not isinstance(body, WireBody):
            return super()._keepalive_after(conn, keepalive)
        if not body.finished or body.failed:
            return _LINGER  # its answer said Connection: close (see _RefusalAwareApp)
        return bool(keepalive)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "reads_heads", False) and not conn.is_http2:
            reader = getattr(req.body, "reader", None)
            limits = {"max_line": req.limit_request_field_size, "max_trailer": req.max_buffer_headers}
            if isinstance(reader, ChunkedReader):
                req.body = WireBody(req, conn.sock, length=None, **limits)
            elif isinstance(reader, LengthReader):
                req.body = WireBody(req, conn.sock, length=reader.length, **limits)
        return super().handle_request(req, conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        if not getattr(conn, "reads_heads", False) or conn.is_http2:
            super().finish_request(conn, fs)
            return
        try:
            result = fs.result() if not fs.cancelled() else False
            if result is True:
                pending = conn.parser.unreader.take_buffered()
                if pending:  # the client sent its next request already (pipelining)
                    self._await_head(conn, pending, time.monotonic() + self.header_timeout)
                    return
                conn.sock.setblocking(False)
                conn.set_timeout()
                if not self.alive:
                    conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
                self.keepalived_conns.append(conn)
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )
            else:
                self._linger(conn)
        except Exception:
            self._close(conn)

    def _linger(self, conn: Any) -> None:
        """Close without a reset: FIN, then read and drop until the client closes (bounded)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.linger_left = LINGER_BYTES
        self._lingering[conn] = time.monotonic() + LINGER_SECONDS
        try:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))
        except (KeyError, ValueError, OSError):
            self._lingering.pop(conn, None)
            self._close(conn)

    def _on_linger_readable(self, conn: Any, _sock: Any = None) -> None:
        for _ in range(16):
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            conn.linger_left -= len(data)
            if not data or conn.linger_left <= 0:
                self._end_linger(conn)
                return

    def _end_linger(self, conn: Any) -> None:
        self._lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self._close(conn)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    # Deadlines -----------------------------------------------------------------------------------

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        now = time.monotonic()
        if not force and now - self._last_sweep < SWEEP_SECONDS:
            return
        self._last_sweep = now
        for conn, deadline in list(self._heads.items()):
            if force or deadline <= now:
                self._forget_head(conn)
                if conn.head and not force:
                    self._refuse(
                        conn,
                        _problem_bytes(
                            408,
                            "Request Timeout",
                            HeaderTooSlowError,
                            f"The request head did not arrive within {self.header_timeout:g} seconds.",
                            self.problem_base_uri,
                            {"header-timeout": self.header_timeout},
                        ),
                    )
                else:  # never sent a byte of this request: nothing to answer
                    self._close(conn)
        for conn, deadline in list(self._lingering.items()):
            if force or deadline <= now:
                self._end_linger(conn)

    def _cap_keepalive(self, deadline: float) -> None:
        """A stopping worker: connections that have not started a request close soon too."""
        super()._cap_keepalive(deadline)
        for conn, own in self._heads.items():
            if not conn.head:
                self._heads[conn] = min(own, deadline)

    # gunicorn's own refusals, as problem documents ----------------------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, UnsupportedTransferCoding):
            status, reason, error, detail = (
                501, "Not Implemented", UnsupportedTransferCodingError,
                "Transfer-Encoding may only be chunked.",
            )
        elif isinstance(exc, InvalidHeader) and str(exc.hdr).upper() in _FRAMING_FIELDS:
            # RFC 9112 §6.3: framing that cannot be trusted (chunked twice or not last, both
            # fields, chunked in HTTP/1.0, a bad length) is a 400, and the connection closes.
            status, reason, error, detail = (
                400, "Bad Request", MalformedHeaderError,
                f"The message framing ({str(exc.hdr).title()}) is invalid.",
            )
        elif isinstance(exc, LimitRequestHeaders):
            status, reason, error, detail = (
                431, "Request Header Fields Too Large", HeaderFieldsTooLargeError, str(exc),
            )
        else:
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write(client, _problem_bytes(status, reason, error, detail, self.problem_base_uri))
        except OSError:
            self.log.debug("Failed to send error message.")
