"""Interim (1xx) responses and cutting a request body short, under gunicorn.

WSGI (PEP 3333) has no way for an application to send an interim response. gunicorn 27 adds
``environ["wsgi.early_hints"]``, but it writes a fixed ``103 Early Hints`` status line (HTTP/1.1
and HTTP/2 alike), so it cannot carry ``104 Upload Resumption Supported``. What it shows is
that gunicorn lets the application write an interim response on the connection before the
final one, as long as nothing of the final response has been sent: this module does exactly
that for 104, on the connection socket gunicorn reads the request body from
(``wsgi.input`` → body reader → its ``SocketUnreader``).

Only where that is sound: gunicorn (``SERVER_SOFTWARE``), an HTTP/1.1 request (HTTP/1.0 knows
no 1xx; gunicorn's HTTP/2 frames responses itself, so no raw bytes may be written there) and a
socket that gunicorn's own reader uses. Anywhere else :func:`send_104` sends nothing and says
so; creation works the same without it (the final 201 carries ``Location``).

The same socket lets a newer request end a stale append whose client stalled (draft
§"Concurrency"): :func:`body_cutter` shuts down the read side, so the worker thread blocked in
``recv`` sees the end of the body at once, commits what it received and answers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from gunicorn.http.unreader import SocketUnreader

from ..protocol.ietf import UploadLimit

log = logging.getLogger(__name__)

STATUS_LINE = b"HTTP/1.1 104 Upload Resumption Supported\r\n"


def connection_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client connection of an HTTP/1.1 request served by gunicorn, else None."""
    if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn/"):
        return None
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1" or environ.get("HTTP_VERSION") == "2":
        return None
    reader = getattr(environ.get("wsgi.input"), "reader", None)
    # LengthReader/EOFReader keep the unreader; ChunkedReader keeps the request, which does.
    unreader = getattr(reader, "unreader", None) or getattr(getattr(reader, "req", None), "unreader", None)
    if not isinstance(unreader, SocketUnreader):
        return None
    sock = getattr(unreader, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def send_104(environ: dict[str, Any], location: str, interop: int | None, limit: UploadLimit) -> bool:
    """Send ``104 Upload Resumption Supported`` with ``Location``; True if it went out.

    Never for a request without a supported interop version (the draft forbids it).
    """
    if interop is None:
        return False
    sock = connection_socket(environ)
    if sock is None:
        return False
    fields = (
        ("Location", location),
        ("Upload-Draft-Interop-Version", str(interop)),
        ("Upload-Limit", limit.format(interop)),
    )
    head = STATUS_LINE + b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields)
    try:
        sock.sendall(head + b"\r\n")
    except OSError:
        return False  # the client is gone; the final response will fail the same way
    return True


def body_cutter(environ: dict[str, Any], reader: Any) -> Callable[[], None]:
    """A callable (safe from another thread) that ends the request body now."""
    sock = connection_socket(environ)

    def cut() -> None:
        reader.cut()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)  # wakes a recv blocked on a stalled client
            except OSError:
                pass

    return cut
