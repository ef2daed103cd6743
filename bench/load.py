"""The load generator: plain ``http.client`` over keep-alive connections, data from memory.

The same calls drive byterange-server, the raw baseline (:mod:`bench.raw`) and the peer tus
servers (:mod:`bench.peers`), so all take the same byte stream. A :class:`Client` speaks one
protocol: ``byterange`` (``message/byterange`` PATCHes, what the raw baseline understands too) or
``tus`` (tus 1.0 creation ``POST``, then ``PATCH`` with ``Upload-Offset`` and
``application/offset+octet-stream``). Nothing here hashes or copies the payload: PATCH bodies are
one random block sent as memoryview slices, GET bodies are read into one reused buffer and dropped.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

BUFFER = 1024 * 1024
PROTOCOLS = ("byterange", "tus")
TUS = {"Tus-Resumable": "1.0.0"}
# tuspyserver answers HEAD with 400 unless the upload has both (its HEAD echoes only these two).
TUS_METADATA = "filename YmVuY2guYmlu,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt"


class HTTPStatusError(RuntimeError):
    """A response with a status the caller did not expect."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        # The problem document names the cause (its type and detail); keep it in the error.
        super().__init__(f"HTTP {status} {reason}: {body!r}")
        self.status = status


class Client:
    """One keep-alive connection to ``base_url`` (``http://127.0.0.1:PORT/files`` or ``/raw``)."""

    def __init__(self, base_url: str, timeout: float = 300.0, protocol: str = "byterange",
                 buffer: int = BUFFER) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        parts = urlsplit(base_url)
        self.collection = parts.path
        self.protocol = protocol
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.buffer = memoryview(bytearray(buffer))

    @property
    def tus(self) -> bool:
        return self.protocol == "tus"

    def close(self) -> None:
        self.conn.close()

    def abort(self) -> None:
        """Cut the connection from another thread: a blocked send or read in it fails at once."""
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _finish(self, expected: Iterable[int]) -> http.client.HTTPResponse:
        response = self.conn.getresponse()
        if response.status not in expected:
            raise HTTPStatusError(response.status, response.reason, response.read(2000))
        while response.readinto(self.buffer):
            pass
        return response

    def create(self, length: int) -> str:
        headers = {"Upload-Length": str(length)}
        if self.tus:
            headers.update(TUS)
            headers["Upload-Metadata"] = TUS_METADATA
        self.conn.request("POST", self.collection, headers=headers)
        location = self._finish((201,)).getheader("Location") or ""
        return urlsplit(location).path

    def delete(self, path: str) -> None:
        self.conn.request("DELETE", path, headers=TUS if self.tus else {})
        self._finish((204,))

    def _start_write(self, path: str, offset: int, size: int, length: int) -> None:
        """The request head (and, for byterange, the part's fields) of a write of ``size`` bytes."""
        self.conn.putrequest("PATCH", path)
        if self.tus:
            self.conn.putheader("Tus-Resumable", "1.0.0")
            self.conn.putheader("Upload-Offset", str(offset))
            self.conn.putheader("Content-Type", "application/offset+octet-stream")
            self.conn.putheader("Content-Length", str(size))
            self.conn.endheaders()
            return
        head = f"Content-Range: bytes {offset}-{offset + size - 1}/{length}\r\n\r\n".encode()
        self.conn.putheader("Content-Type", "message/byterange")
        self.conn.putheader("Content-Length", str(len(head) + size))
        self.conn.endheaders()
        self.conn.send(head)

    def write(self, path: str, offset: int, data: memoryview, length: int) -> None:
        """One PATCH of ``data`` at ``offset`` in the client's protocol; returns when acknowledged."""
        self._start_write(path, offset, len(data), length)
        self.conn.send(data)
        self._finish((204,))

    def patch(self, path: str, offset: int, data: memoryview, length: int) -> None:
        """One ``message/byterange`` PATCH of ``data`` at ``offset``; returns when acknowledged."""
        assert not self.tus
        self.write(path, offset, data, length)

    def write_paced(self, path: str, block: memoryview, length: int, rate: float, until: float) -> bool:
        """All ``length`` bytes as one PATCH at offset 0, sent at ``rate`` bytes/s as a slow
        network would (a tenth of a second's worth at a time, no catching up beyond one step).

        True when the server acknowledged it before the monotonic time ``until``; False when
        ``until`` came first (the body is then left unfinished: the caller drops the connection).
        """
        step = 0.1
        chunk = max(1, int(rate * step))
        assert len(block) >= chunk
        self._start_write(path, 0, length, length)
        sent, due = 0, time.monotonic()
        while sent < length:
            now = time.monotonic()
            if now >= until:
                return False
            if due > now:
                time.sleep(min(due, until) - now)
                continue
            count = min(chunk, length - sent)
            self.conn.send(block[:count])
            sent += count
            due = max(due + step, now - step)
        self._finish((204,))
        return time.monotonic() < until

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
        self.conn.request("HEAD", path, headers=TUS if self.tus else {})
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
           path: str | None = None, protocol: str = "byterange") -> str:
    """Fill a resource of ``length`` in ``segment``-sized PATCHes from ``clients`` connections.

    Each connection takes the next segment not yet taken, so the writes are disjoint (tus allows
    only one connection per upload: it appends at the current offset).
    """
    assert clients == 1 or protocol != "tus"
    first = Client(base_url, protocol=protocol)
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
                client.write(path, offset, block[: min(segment, length - offset)], length)
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
