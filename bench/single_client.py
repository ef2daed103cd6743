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
import base64
import hashlib
import http.client
import os
import time
from urllib.parse import urlsplit

from byterange_server.config import parse_size

from .server import gunicorn_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--segment", default="8MiB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    size, segment = parse_size(args.size), parse_size(args.segment)

    server_options = dict(workers=args.workers, threads=args.threads, database_url=args.database_url)
    with gunicorn_server(**server_options) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
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
        ok = digest == f"sha-256=:{base64.b64encode(expected.digest()).decode()}:"
        rss = server.peak_rss_mib()
        print(f"size={size} segment={segment} workers={args.workers} threads={args.threads} "
              f"database={server.database_url.split(':')[0]}")
        print(f"upload: {size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s, completion hash included)")
        print(f"repr-digest verified: {ok}")
        for role, mib in rss.items():
            print(f"peak RSS {role}: {mib:.1f} MiB")


if __name__ == "__main__":
    main()
