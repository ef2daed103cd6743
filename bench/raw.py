"""The raw baseline: the least a server must do to take and give the same byte streams.

One process, one thread per connection, plain sockets. It speaks just enough HTTP/1.1 for the
load generator of :mod:`bench.load`:

- ``POST /raw`` creates an empty file and answers 201 with its ``Location``;
- ``PATCH /raw/N`` with a ``message/byterange`` body: parse the part's ``Content-Range``, read the
  data with ``readinto`` into one reused 1 MiB buffer (the server's ``chunk_size``), ``os.pwrite``
  it at the offset, ``fdatasync`` once before answering 204 — the server's flush policy, with no
  metadata, no digest, no database (``--no-fsync``: no ``fdatasync`` either, what the peer tus
  servers of ``--peers`` do);
- ``HEAD /raw/N`` answers 200 with the file's size;
- ``GET /raw/N`` whole or with one ``Range: bytes=a-b``: ``os.sendfile`` from the file to the socket;
- ``DELETE /raw/N`` unlinks the file.

Run as ``python -m bench.raw --port P --dir D``; :func:`raw_server` starts it for a benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .server import free_port
from .server import wait_http

CHUNK = 1024 * 1024
_RANGE = re.compile(rb"bytes (\d+)-(\d+)/(\d+|\*)")
_GET_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _read_head(rfile) -> tuple[str, str, dict[str, str]] | None:  # type: ignore[no-untyped-def]
    line = rfile.readline(65536)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = rfile.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _handle(conn: socket.socket, directory: Path, counter: Iterator[int], fsync: bool) -> None:
    rfile = conn.makefile("rb", buffering=65536)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while True:
            head = _read_head(rfile)
            if head is None:
                return
            method, target, headers = head
            length = int(headers.get("content-length", "0"))
            name = target.rpartition("/")[2]
            if method == "POST":
                rfile.read(length)
                path = directory / str(next(counter))
                path.touch()
                conn.sendall(f"HTTP/1.1 201 Created\r\nLocation: /raw/{path.name}\r\n"
                             "Content-Length: 0\r\n\r\n".encode())
            elif method == "PATCH":
                part_head = b""
                while not part_head.endswith(b"\r\n\r\n"):
                    part_head += rfile.readline(65536)
                match = _RANGE.search(part_head)
                assert match, part_head
                offset = int(match.group(1))
                left = length - len(part_head)
                fd = os.open(directory / name, os.O_RDWR)
                try:
                    while left:
                        count = rfile.readinto(view[: min(CHUNK, left)])
                        if not count:
                            return
                        written = 0
                        while written < count:
                            written += os.pwrite(fd, view[written:count], offset + written)
                        offset += count
                        left -= count
                    if fsync:
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif method == "GET":
                fd = os.open(directory / name, os.O_RDONLY)
                try:
                    size = os.fstat(fd).st_size
                    match = _GET_RANGE.fullmatch(headers.get("range", ""))
                    if match:
                        start, stop = int(match.group(1)), min(int(match.group(2)) + 1, size)
                        status = f"206 Partial Content\r\nContent-Range: bytes {start}-{stop - 1}/{size}"
                    else:
                        start, stop, status = 0, size, "200 OK"
                    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {stop - start}\r\n\r\n".encode())
                    while start < stop:
                        sent = os.sendfile(conn.fileno(), fd, start, stop - start)
                        if not sent:
                            return
                        start += sent
                finally:
                    os.close(fd)
            elif method == "HEAD":
                try:
                    size = os.stat(directory / name).st_size
                except OSError:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            elif method == "DELETE":
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                rfile.read(length)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except (OSError, ValueError):
        return
    finally:
        rfile.close()
        conn.close()


def serve(port: int, directory: Path, fsync: bool = True) -> None:
    counter = itertools.count()
    with socket.create_server(("127.0.0.1", port), backlog=1024) as listener:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_handle, args=(conn, directory, counter, fsync),
                             daemon=True).start()


@dataclass
class RawServer:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/raw"

    def worker_pids(self) -> list[int]:
        return [self.pid]


@contextlib.contextmanager
def raw_server(fsync: bool = True) -> Iterator[RawServer]:
    directory = Path(tempfile.mkdtemp(prefix="byterange-bench-raw-"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.raw", "--port", str(port), "--dir", str(directory),
         *([] if fsync else ["--no-fsync"])],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        wait_http(port)
        yield RawServer(port, process.pid)
    finally:
        process.kill()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--no-fsync", action="store_true", help="no fdatasync before the 204")
    args = parser.parse_args()
    serve(args.port, args.dir, fsync=not args.no_fsync)


if __name__ == "__main__":
    main()
