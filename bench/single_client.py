"""One client uploads a file through gunicorn in fixed-size message/byterange segments.

Prints MB/s (1 MB = 10^6 bytes) and the peak RSS of every gunicorn process (VmHWM), so the
figure can be reproduced with one command::

    python -m bench.single_client --size 1GiB --segment 8MiB [--database-url URL]

The server runs with its production settings (gthread workers, fsync on) on loopback, on a
fresh data directory. The source bytes are generated in memory once per segment size and sent
repeatedly with different offsets, so the client's disk is not what is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from byterange_server import migrate
from byterange_server.config import parse_size


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--segment", default="8MiB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    size, segment = parse_size(args.size), parse_size(args.segment)

    data_dir = Path(tempfile.mkdtemp(prefix="byterange-bench-"))
    database_url = args.database_url or f"sqlite:///{data_dir / 'byterange.sqlite3'}"
    migrate.upgrade(database_url)
    port = free_port()
    env = dict(os.environ, BYTERANGE_DATA_DIR=str(data_dir), BYTERANGE_DATABASE_URL=database_url,
               BYTERANGE_ACCESS_LOG="", BYTERANGE_LOG_LEVEL="warning")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:byterange_server.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--threads", str(args.threads),
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
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.request("POST", "/files", headers={"Upload-Length": str(size)})
        response = conn.getresponse()
        response.read()
        path = urlsplit(response.getheader("Location")).path
        block = os.urandom(segment)
        expected = hashlib.sha256()
        started = time.perf_counter()
        for offset in range(0, size, segment):
            data = block[: min(segment, size - offset)]
            expected.update(data)
            head = f"Content-Range: bytes {offset}-{offset + len(data) - 1}/{size}\r\n\r\n".encode()
            conn.putrequest("PATCH", path)
            conn.putheader("Content-Type", "message/byterange")
            conn.putheader("Content-Length", str(len(head) + len(data)))
            conn.endheaders()
            conn.send(head)
            conn.send(data)
            response = conn.getresponse()
            response.read()
            if response.status != 204:
                raise SystemExit(f"segment at {offset}: HTTP {response.status}")
        elapsed = time.perf_counter() - started
        conn.request("HEAD", path)
        response = conn.getresponse()
        response.read()
        digest = response.getheader("Repr-Digest") or ""
        import base64

        ok = digest == f"sha-256=:{base64.b64encode(expected.digest()).decode()}:"
        pids = [server.pid, *children(server.pid)]
        rss = {pid: peak_rss_kib(pid) for pid in pids}
        print(f"size={size} segment={segment} workers={args.workers} threads={args.threads} "
              f"database={database_url.split(':')[0]}")
        print(f"upload: {size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s, completion hash included)")
        print(f"repr-digest verified: {ok}")
        for pid, kib in rss.items():
            role = "master" if pid == server.pid else "worker"
            print(f"peak RSS {role} {pid}: {kib / 1024:.1f} MiB")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


if __name__ == "__main__":
    main()
