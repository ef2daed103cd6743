"""A real HTTP hook receiver for tests: a threaded ``http.server`` on 127.0.0.1.

``answer(request)`` decides each reply: an ``int`` status, ``(status, body)``, or
:data:`DROP` to close the connection without any response. Every request is recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

DROP = "drop"


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    started: float
    #: When the reply (or the dropped connection) left: the sender cannot have moved on before.
    answered: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, answer: Callable[[Request], Any] | None = None) -> None:
        self.answer = answer or (lambda request: 200)
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                started = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, started)
                with receiver.lock:
                    reply = receiver.answer(request)
                answered = time.monotonic()
                if reply == DROP:
                    receiver._record(request, answered)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, text = reply if isinstance(reply, tuple) else (reply, "")
                data = text.encode() if isinstance(text, str) else json.dumps(text).encode()
                receiver._record(request, answered)
                self.send_response(status)
                media = "text/plain" if isinstance(text, str) else "application/json"
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, request: Request, answered: float) -> None:
        with self.lock:
            self.requests.append(dataclasses.replace(request, answered=answered))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def receiving(answer: Callable[[Request], Any] | None = None) -> Iterator[Receiver]:
    with Receiver(answer) as receiver:
        yield receiver


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
