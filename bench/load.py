"""The load generator: plain ``http.client`` over keep-alive connections, data from memory.

The same calls drive byterange-server and the raw baseline (:mod:`bench.raw`), so both take the
same byte stream. Nothing here hashes or copies the payload: PATCH bodies are one random block
sent as memoryview slices, GET bodies are read into one reused buffer and dropped.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

BUFFER = 1024 * 1024


class Client:
    """One keep-alive connection to ``base_url`` (``http://127.0.0.1:PORT/files`` or ``/raw``)."""

    def __init__(self, base_url: str, timeout: float = 300.0) -> None:
        parts = urlsplit(base_url)
        self.collection = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.buffer = memoryview(bytearray(BUFFER))

    def close(self) -> None:
        self.conn.close()

    def _finish(self, expected: Iterable[int]) -> http.client.HTTPResponse:
        response = self.conn.getresponse()
        if response.status not in expected:
            # The problem document names the cause (its type and detail); keep it in the error.
            raise RuntimeError(f"HTTP {response.status} {response.reason}: {response.read(2000)!r}")
        while response.readinto(self.buffer):
            pass
        return response

    def create(self, length: int) -> str:
        self.conn.request("POST", self.collection, headers={"Upload-Length": str(length)})
        location = self._finish((201,)).getheader("Location") or ""
        return urlsplit(location).path

    def delete(self, path: str) -> None:
        self.conn.request("DELETE", path)
        self._finish((204,))

    def patch(self, path: str, offset: int, data: memoryview, length: int) -> None:
        """One ``message/byterange`` PATCH of ``data`` at ``offset``; returns when acknowledged."""
        head = f"Content-Range: bytes {offset}-{offset + len(data) - 1}/{length}\r\n\r\n".encode()
        self.conn.putrequest("PATCH", path)
        self.conn.putheader("Content-Type", "message/byterange")
        self.conn.putheader("Content-Length", str(len(head) + len(data)))
        self.conn.endheaders()
        self.conn.send(head)
        self.conn.send(data)
        self._finish((204,))

    def patch_stream(self, path: str, block: memoryview, length: int) -> None:
        """All ``length`` bytes as one part of one PATCH, ``block`` repeated."""
        head = f"Content-Range: bytes 0-{length - 1}/{length}\r\n\r\n".encode()
        self.conn.putrequest("PATCH", path)
        self.conn.putheader("Content-Type", "message/byterange")
        self.conn.putheader("Content-Length", str(len(head) + length))
        self.conn.endheaders()
        self.conn.send(head)
        for offset in range(0, length, len(block)):
            self.conn.send(block[: min(len(block), length - offset)])
        self._finish((204,))

    def head(self, path: str) -> None:
        self.conn.request("HEAD", path)
        self._finish((200, 204))

    def get(self, path: str, byte_range: tuple[int, int] | None = None) -> int:
        """GET (the inclusive ``byte_range``); returns the body's size."""
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        if response.status not in (200, 206):
            raise RuntimeError(f"GET: HTTP {response.status}")
        total = 0
        while count := response.readinto(self.buffer):
            total += count
        return total


def upload(base_url: str, block: memoryview, length: int, segment: int, clients: int = 1,
           path: str | None = None) -> str:
    """Fill a resource of ``length`` in ``segment``-sized PATCHes from ``clients`` connections.

    Each connection takes the next segment not yet taken, so the writes are disjoint.
    """
    first = Client(base_url)
    path = path or first.create(length)
    offsets = iter(range(0, length, segment))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(client: Client) -> None:
        try:
            while True:
                with lock:
                    offset = next(offsets, None)
                if offset is None:
                    return
                client.patch(path, offset, block[: min(segment, length - offset)], length)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            client.close()

    if clients == 1:
        work(first)
    else:
        first.close()
        threads = [threading.Thread(target=work, args=(Client(base_url),)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return path


def random_ranges(length: int, size: int, count: int, seed: int = 5) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    starts = [rng.randrange(0, length - size + 1) for _ in range(count)]
    return [(start, start + size - 1) for start in starts]


def latencies(call, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds taken by each of ``count`` calls."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out
