"""Raw HTTP/1.1 over a socket: what a conformance probe needs and ordinary clients hide.

``http.client`` (and so ``requests``) reads any 1xx other than 100 as the final response and
offers no way to stall a body, cut it short or send trailers. This module writes requests
byte for byte and reads every response on the connection: the interim ones (RFC 9110 §15.2)
in order, then the final one. One connection per exchange (``Connection: close``), so a
misbehaving server cannot confuse one probe with the next.
"""

from __future__ import annotations

import dataclasses
import select
import socket
import time
from collections.abc import Iterable
from urllib.parse import urljoin
from urllib.parse import urlsplit

__all__ = ["Exchange", "Open", "ProbeError", "Response", "chunked", "open_request", "request"]

DEFAULT_TIMEOUT = 15.0
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class ProbeError(Exception):
    """The server's bytes are not an HTTP/1.1 response, or the connection failed."""


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The field's value (several lines joined with ", " as RFC 9110 §5.3 allows)."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def has(self, name: str) -> bool:
        return bool(self.get_all(name))

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


@dataclasses.dataclass
class Exchange:
    """One request and everything the server answered on its connection."""

    method: str
    url: str
    interim: list[Response]
    final: Response | None
    #: Why no final response was read (timeout, connection closed), else None.
    error: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> int | None:
        return self.final.status if self.final else None

    def field(self, name: str) -> str | None:
        """A field of the final response (None without one, or without the field)."""
        return self.final.get(name) if self.final else None

    def has(self, name: str) -> bool:
        return self.final is not None and self.final.has(name)

    def location(self) -> str | None:
        """The final response's Location, resolved against the request URL."""
        value = self.field("Location")
        return urljoin(self.url, value) if value else None


def chunked(pieces: Iterable[bytes], trailers: dict[str, str] | None = None) -> bytes:
    """A chunked body (RFC 9112 §7.1) of ``pieces``, with trailer fields."""
    out = bytearray()
    for piece in pieces:
        if piece:
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    for name, value in (trailers or {}).items():
        out += f"{name}: {value}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def _connect(url: str, timeout: float) -> tuple[socket.socket, str, str]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ProbeError(f"only http:// URLs can be probed at the byte level, not {url!r}")
    host = parts.hostname or "localhost"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, target, parts.netloc


def _head_bytes(
    method: str,
    target: str,
    netloc: str,
    headers: dict[str, str],
    content_length: int | None,
    is_chunked: bool,
    keep_alive: bool = False,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}"]
    if not keep_alive:
        lines.append("Connection: close")
    names = {name.lower() for name in headers}
    if is_chunked and "transfer-encoding" not in names:
        lines.append("Transfer-Encoding: chunked")
    elif content_length is not None and "content-length" not in names:
        lines.append(f"Content-Length: {content_length}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.deadline = deadline
        self.eof = False

    def _fill(self) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response before the timeout")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise ProbeError("response header line too long")
            if not self._fill():
                raise ConnectionError("connection closed")
        index = self.buffer.index(b"\n")
        line = bytes(self.buffer[:index]).rstrip(b"\r")
        del self.buffer[: index + 1]
        return line

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ConnectionError("connection closed inside the body")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def rest(self) -> bytes:
        while len(self.buffer) <= MAX_BODY and self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _read_response(reader: _Reader, method: str) -> Response:
    line = reader.line()
    while not line:  # tolerate stray CRLFs between messages
        line = reader.line()
    try:
        version, _, rest = line.decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
    except ValueError as exc:
        raise ProbeError(f"not an HTTP status line: {line[:80]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise ProbeError(f"not an HTTP/1.x status line: {line[:80]!r}")
    headers: list[tuple[str, str]] = []
    while True:
        field = reader.line()
        if not field:
            break
        name, colon, value = field.decode("latin-1").partition(":")
        if not colon:
            raise ProbeError(f"malformed field line: {field[:80]!r}")
        headers.append((name.strip(), value.strip()))
    response = Response(status, reason, headers)
    if status < 200 or status in (204, 304) or method == "HEAD":
        return response
    if "chunked" in (response.get("Transfer-Encoding") or "").lower():
        body = bytearray()
        while True:
            size = int(reader.line().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while reader.line():
                    pass
                break
            body += reader.exactly(size)
            reader.line()
        response.body = bytes(body)
    elif response.has("Content-Length"):
        response.body = reader.exactly(int(response.get("Content-Length") or "0"))
    else:
        response.body = reader.rest()
    return response


class Open:
    """A request whose body is still being sent: stall it, cut it, finish it.

    ``send`` writes more of the body; ``poll`` reads interim responses that have arrived
    without waiting; ``finish`` reads the rest of the exchange; ``abort`` closes the
    connection as a crashed or disconnected client would (RST when ``reset``).
    """

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        content_length: int | None,
        is_chunked: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        keep_alive: bool = False,
    ) -> None:
        self.method = method
        self.url = url
        self.started = time.monotonic()
        self.sock, target, netloc = _connect(url, timeout)
        self.timeout = timeout
        self.reader = _Reader(self.sock, self.started + timeout)
        self.interim: list[Response] = []
        self.final: Response | None = None
        self.closed = False
        self.eof = False
        self._write(_head_bytes(method, target, netloc, headers, content_length, is_chunked, keep_alive))

    def _write(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def send(self, data: bytes) -> bool:
        """Write more body bytes; False when the server has closed its side."""
        return self._write(data)

    def poll(self, wait: float = 0.0) -> list[Response]:
        """Interim (and final) responses readable within ``wait`` seconds."""
        found: list[Response] = []
        end = time.monotonic() + wait
        while self.final is None and not self.eof:
            readable, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not readable and not self.reader.buffer:
                break
            try:
                self.reader.deadline = time.monotonic() + self.timeout
                response = _read_response(self.reader, self.method)
            except (ConnectionError, TimeoutError, OSError, ProbeError):
                self.eof = True
                break
            found.append(response)
            if response.status >= 200:
                self.final = response
            else:
                self.interim.append(response)
        return found

    def connection_closed(self, wait: float, *, answer_counts: bool = True) -> bool:
        """Whether the server ends this request within ``wait`` seconds: closes the connection,
        or (with ``answer_counts``) sends the final response."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self.eof or (answer_counts and self.final is not None):
                return True
            readable, _, _ = select.select([self.sock], [], [], max(0.0, min(0.2, end - time.monotonic())))
            if readable:
                try:
                    peek = self.sock.recv(65536, socket.MSG_PEEK)
                except OSError:
                    self.eof = True
                    return True
                if not peek:
                    self.eof = True
                    return True
                if self.final is None:
                    self.poll(0.2)
                else:
                    self.sock.recv(65536)  # whatever follows the final response
        return self.eof or (answer_counts and self.final is not None)

    def finish(self) -> Exchange:
        error = None
        self.reader.deadline = time.monotonic() + self.timeout
        try:
            while self.final is None:
                response = _read_response(self.reader, self.method)
                if response.status >= 200:
                    self.final = response
                else:
                    self.interim.append(response)
        except (ConnectionError, TimeoutError, OSError, ProbeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.abort()
        return Exchange(
            self.method, self.url, self.interim, self.final, error, time.monotonic() - self.started
        )

    def abort(self, reset: bool = False) -> None:
        if self.closed and self.sock.fileno() < 0:
            return
        self.closed = True
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.sock.close()
        except OSError:
            pass


def open_request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    content_length: int | None = None,
    is_chunked: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    keep_alive: bool = False,
) -> Open:
    return Open(
        method,
        url,
        dict(headers or {}),
        content_length=content_length,
        is_chunked=is_chunked,
        timeout=timeout,
        keep_alive=keep_alive,
    )


def request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    is_chunked: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Exchange:
    """Send a whole request; read every response to it.

    ``body`` is sent as it is: with ``is_chunked`` it must already be chunked (see
    :func:`chunked`). Content-Length is added unless given, for any request with a body and
    for the methods that usually carry one.
    """
    length = None if is_chunked else (len(body) if body or method in ("POST", "PUT", "PATCH") else None)
    try:
        exchange = open_request(
            method, url, headers, content_length=length, is_chunked=is_chunked, timeout=timeout
        )
    except ProbeError as exc:
        return Exchange(method, url, [], None, str(exc))
    if body:
        exchange.send(body)
    return exchange.finish()
