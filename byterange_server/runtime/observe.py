"""WSGI middleware that observes every request: its id, its metrics and its access-log line.

It sits just inside :class:`~byterange_server.runtime.forwarded.ForwardedMiddleware` (so it sees the
client's address) and outside everything else, so it sees each request whole:

- the request id (``requestlog.py``) is chosen before the app runs, set in
  :data:`~byterange_server.runtime.requestlog.REQUEST_ID` for every log record made meanwhile, and sent
  back as ``X-Request-Id``;
- ``wsgi.input`` is wrapped in :class:`CountingInput`, which counts body bytes as the app reads
  them (``byterange_received_bytes_total`` moves during a long upload, not at its end);
- the response body is wrapped so that duration and bytes out are taken when the server closes
  it, i.e. after the last byte of a download, not when the view returns.

The Flask layer fills in what only it knows (protocol, route, resource id, problem code) on the
:class:`RequestRecord` kept in the environ under :data:`RECORD_KEY` (see ``api/observe.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from .metrics import Metrics
from .metrics import method_label
from .metrics import status_class
from .requestlog import ACCESS_LOGGER
from .requestlog import REQUEST_ID
from .requestlog import accept_request_id
from .requestlog import new_request_id
from .requestlog import write_json_line

__all__ = ["RECORD_KEY", "CountingInput", "RequestObserver", "RequestRecord"]

RECORD_KEY = "byterange.request"
access_log = logging.getLogger(ACCESS_LOGGER)
#: Methods that send bytes to be stored (tus PATCH arrives as PATCH after MethodOverride).
WRITE_METHODS = frozenset({"PATCH", "PUT", "POST"})


@dataclasses.dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    client: str | None
    started: float
    protocol: str = "other"
    route: str | None = None
    resource_id: str | None = None
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    #: The problem code of an error response.
    problem: str | None = None
    #: The error was a 409 conflict of the shared tree (whatever status the protocol sent).
    conflict: bool = False
    #: The error was an interruption (the body ended early).
    interrupted: bool = False
    finished: bool = False


class CountingInput:
    """``wsgi.input``, counting what is read from it. Every other attribute is the wrapped
    stream's (gunicorn's ``reader``, which the tus trailers and the IETF 104 need)."""

    def __init__(self, stream: Any, record: RequestRecord, on_bytes: Callable[[int], None] | None) -> None:
        self._stream = stream
        self._record = record
        self._on_bytes = on_bytes

    def _count(self, size: int) -> None:
        if size:
            self._record.bytes_in += size
            if self._on_bytes is not None:
                self._on_bytes(size)

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self._count(len(data))
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self._count(len(data))
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        self._count(sum(len(line) for line in lines))
        return lines

    def readinto(self, buffer: bytearray | memoryview) -> int:
        # Defined here even when the stream has none: Werkzeug prefers readinto when present.
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            size = readinto(buffer) or 0
        else:
            data = self._stream.read(len(buffer))
            size = len(data)
            buffer[:size] = data
        self._count(size)
        return size

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._count(len(line))
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ObservedBody:
    """The response iterable, counting bytes out. The observation ends after the last chunk (the
    server has sent the rest), or at ``close`` if the body was not read to its end."""

    def __init__(self, body: Iterable[bytes], record: RequestRecord, finish: Callable[[], None]) -> None:
        self._body = body
        self._record = record
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._record.bytes_out += len(chunk)
            yield chunk
        self._finish()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()


def _observe_file(body: Any, record: RequestRecord, finish: Callable[[], None], length: int) -> Any:
    close = getattr(body, "close", None)

    def observed_close() -> None:
        try:
            if close is not None:
                close()
        finally:
            record.bytes_out += length
            finish()

    body.close = observed_close
    return body


class RequestObserver:
    """See the module docstring. ``metrics`` None counts nothing; ``request_log`` False logs
    no access lines (the request id is still chosen, echoed and put in log records)."""

    def __init__(self, app: Callable[..., Any], metrics: Metrics | None, *, request_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.request_log = request_log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request_id = accept_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        record = RequestRecord(
            request_id=request_id,
            method=environ.get("REQUEST_METHOD", "GET"),
            # Never the query string: it may hold a URL signature.
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            client=environ.get("REMOTE_ADDR"),
            started=time.perf_counter(),
        )
        environ[RECORD_KEY] = record
        REQUEST_ID.set(request_id)
        metrics = self.metrics
        on_bytes = None
        if metrics is not None:
            metrics.requests_in_flight.inc()

            def on_bytes(size: int) -> None:
                metrics.received_bytes.labels(record.protocol).inc(size)

        if environ.get("wsgi.input") is not None:
            environ["wsgi.input"] = CountingInput(environ["wsgi.input"], record, on_bytes)

        declared: dict[str, int] = {}

        def observed_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = int(status.split(None, 1)[0])
            for name, value in headers:
                if name.lower() == "content-length" and value.isdigit():
                    declared["length"] = int(value)
            headers = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            headers.append(("X-Request-Id", request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, observed_start_response)
        except BaseException:
            record.status = record.status or 500
            self._finish(record, environ)
            raise
        finish = lambda: self._finish(record, environ)  # noqa: E731
        wrapper_type = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper_type, type) and isinstance(body, wrapper_type):
            # Handed back as it is, or the server could not send it with sendfile (api/reads.py):
            # the observation ends when the server closes it, and counts the declared length.
            return _observe_file(body, record, finish, declared.get("length", 0))
        return _ObservedBody(body, record, finish)

    def _finish(self, record: RequestRecord, environ: dict[str, Any]) -> None:
        if record.finished:
            return
        record.finished = True
        # The method the app answered (tus X-HTTP-Method-Override is applied in place).
        record.method = environ.get("REQUEST_METHOD", record.method)
        seconds = time.perf_counter() - record.started
        status = record.status or 500
        try:
            if self.metrics is not None:
                self._count(record, status, seconds)
            if self.request_log:
                self._log(record, status, seconds)
        finally:
            REQUEST_ID.set(None)

    def _count(self, record: RequestRecord, status: int, seconds: float) -> None:
        metrics = self.metrics
        assert metrics is not None
        metrics.requests_in_flight.dec()
        metrics.request_duration.labels(method_label(record.method), status_class(status)).observe(seconds)
        if record.problem is not None:
            metrics.problems.labels(record.problem).inc()
        if record.method in WRITE_METHODS:
            if record.conflict:
                metrics.write_conflicts.labels(record.protocol, record.problem or "resource-conflict").inc()
            if record.interrupted:
                metrics.writes_interrupted.labels(record.protocol).inc()

    def _log(self, record: RequestRecord, status: int, seconds: float) -> None:
        fields = {
            "method": record.method,
            "path": record.path,
            "route": record.route,
            "status": status,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "duration_ms": round(seconds * 1000, 3),
            "protocol": record.protocol,
            "resource_id": record.resource_id,
            "problem": record.problem,
            "client": record.client,
        }
        message = f"{record.method} {record.path} {status}"
        try:
            if write_json_line(access_log, message, record.request_id, fields):
                return
        except Exception:  # the stream failed: let logging report it as for any other record
            pass
        access_log.info(message, extra={"fields": fields, "request_id": record.request_id})
