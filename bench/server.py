"""A byterange-server under gunicorn on loopback, with its production settings, for benchmarks."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from byterange_server import migrate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(item) for item in handle.read().split()]
    except OSError:
        return []


@dataclass
class BenchServer:
    port: int
    pid: int
    database_url: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def peak_rss_mib(self) -> dict[str, float]:
        """Peak RSS (VmHWM) of the master and of each worker, in MiB."""
        out = {"master": peak_rss_kib(self.pid) / 1024}
        for index, pid in enumerate(children(self.pid)):
            out[f"worker {index}"] = peak_rss_kib(pid) / 1024
        return out


@contextmanager
def gunicorn_server(*, workers: int = 2, threads: int = 8, database_url: str = "") -> Iterator[BenchServer]:
    """Start gunicorn on a fresh data directory (and SQLite database unless one is given)."""
    data_dir = Path(tempfile.mkdtemp(prefix="byterange-bench-"))
    database_url = database_url or f"sqlite:///{data_dir / 'byterange.sqlite3'}"
    migrate.upgrade(database_url)
    port = free_port()
    env = dict(os.environ, BYTERANGE_DATA_DIR=str(data_dir), BYTERANGE_DATABASE_URL=database_url,
               BYTERANGE_ACCESS_LOG="", BYTERANGE_AUTH="off", BYTERANGE_LOG_LEVEL="warning")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:byterange_server.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "byterange_server.wsgi:app"],
        env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("OPTIONS", "/files")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield BenchServer(port, server.pid, database_url, data_dir)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
