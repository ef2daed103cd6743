"""The client library uploading and downloading one file through gunicorn, at several parallelisms.

Prints MB/s (1 MB = 10^6 bytes) per run and the median of the runs, for each ``--parallel``::

    python -m bench.client --size 1GiB --segment 8MiB --parallel 1,4,8 --runs 3

Each run uploads the same file into a new resource with :func:`byterange_server.client.upload`
(default settings: ``message/byterange``, ``Content-Digest: sha-256`` on every request, the
final ``Repr-Digest`` check), then downloads it back with :func:`~byterange_server.client.download`.
Upload time runs from the allocation to the verified completion, so it includes the client's
per-segment SHA-256, the server's ``fdatasync`` per segment and its hash of the whole file.
The source file is written once to a temporary directory and is in the page cache, so the
client's disk is not what is measured. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from byterange_server.client import download
from byterange_server.client import upload
from byterange_server.config import parse_size

from .server import gunicorn_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--segment", default="8MiB")
    parser.add_argument("--parallel", default="1,4,8", help="comma-separated parallelisms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", default="message", help="message, multipart, binary or put")
    parser.add_argument("--no-digest", action="store_true", help="no Content-Digest per request")
    parser.add_argument("--no-verify", action="store_true", help="no whole-file SHA-256 check at the end")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    size, segment = parse_size(args.size), parse_size(args.segment)
    parallelisms = [int(item) for item in args.parallel.split(",")]

    with tempfile.TemporaryDirectory(prefix="byterange-bench-client-") as tmp:
        source = Path(tmp) / "source.bin"
        with open(source, "wb") as out:
            block = os.urandom(8 * 1024 * 1024)
            for offset in range(0, size, len(block)):
                out.write(block[: min(len(block), size - offset)])
        server_options = dict(workers=args.workers, threads=args.threads, database_url=args.database_url)
        with gunicorn_server(**server_options) as server:
            database = server.database_url.split(":")[0]
            print(f"size={size} segment={segment} format={args.format} digest={not args.no_digest} "
                  f"verify={not args.no_verify} "
                  f"workers={args.workers} threads={args.threads} database={database}")
            for parallel in parallelisms:
                up, down = [], []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    result = upload(source, server.url, segment_size=segment, parallel=parallel,
                                    wire_format=args.format, content_digest=not args.no_digest,
                                    verify=not args.no_verify, resume=False)
                    up.append(size / (time.perf_counter() - started) / 1e6)
                    assert result.verified or args.no_verify, result
                    target = Path(tmp) / "copy.bin"
                    started = time.perf_counter()
                    fetched = download(result.url, target, segment_size=segment, parallel=parallel)
                    down.append(size / (time.perf_counter() - started) / 1e6)
                    assert fetched.verified, fetched
                    target.unlink()
                print(f"parallel {parallel}: upload {_summary(up)}; download {_summary(down)}")
            rss = server.peak_rss_mib()
            print("server peak RSS: " + ", ".join(f"{role} {mib:.0f} MiB" for role, mib in rss.items()))


def _summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):.0f} MB/s (runs {', '.join(f'{rate:.0f}' for rate in rates)})"


if __name__ == "__main__":
    main()
