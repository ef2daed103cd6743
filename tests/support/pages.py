"""A loopback origin for browser tests: serves one page and the bytes it uploads, and receives the
page's report (a JSON document POSTed to any path)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path


class PageServer:
    """``GET /page.html`` is ``page``, ``GET /data.bin`` is ``data``; each POST body is a report."""

    def __init__(self, page: Path, data: bytes) -> None:
        self.reports: list[dict] = []
        self.reported = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/page.html":
                    self._send(200, page.read_bytes(), "text/html; charset=utf-8")
                elif path == "/data.bin":
                    self._send(200, data, "application/octet-stream")
                else:
                    self._send(404, b"", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.reports.append(json.loads(body))
                owner.reported.set()
                self._send(204, b"", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                # Each run loads the page afresh (the tests reuse no browser cache, but say so).
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
