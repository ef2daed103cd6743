"""CPU cost of a tus final concatenation, in process (no network, no gunicorn).

Uploads N partial uploads that add up to ``--size-mib`` (default 1024), then times the final
``POST`` (``Upload-Concat: final;...``) in server CPU (user + system, this process: the request
runs in this thread, and SQLite in-process), and separately the first byte-range ``HEAD``,
which computes the final's SHA-256 for ``ETag``/``Repr-Digest``::

    .venv/bin/python -m bench.tus_concat [--size-mib 1024] [--parts 2] [--database-url URL]

The partials are written from one random 8 MiB block repeated (writing is not what is measured).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time
from urllib.parse import urlsplit

from byterange_server import create_app
from byterange_server.db import migrate

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


class Repeated(io.RawIOBase):
    """``size`` bytes made of one block, read without building them all in memory."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block = block
        self.left = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), self.left, len(self.block) - self.position)
        buffer[:count] = self.block[self.position : self.position + count]
        self.position = (self.position + count) % len(self.block)
        self.left -= count
        return count


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tus-concat-") as data_dir:
        url = args.database_url or f"sqlite:///{data_dir}/byterange.sqlite3"
        migrate.upgrade(url)
        app = create_app({"DATA_DIR": data_dir, "DATABASE_URL": url, "AUTH": "off"})
        client = app.test_client()
        block = os.urandom(8 * MiB)
        part_size = args.size_mib * MiB // args.parts
        partials = []
        started = time.monotonic()
        for _ in range(args.parts):
            response = client.post(
                "/files", headers={**TUS, "Upload-Concat": "partial", "Upload-Length": str(part_size)}
            )
            path = urlsplit(response.headers["Location"]).path
            response = client.open(
                path,
                method="PATCH",
                headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
                environ_overrides={
                    "wsgi.input": io.BufferedReader(Repeated(block, part_size), 4 * MiB),
                    "CONTENT_LENGTH": str(part_size),
                },
            )
            assert response.status_code == 204, response.get_data()
            partials.append(path)
        print(f"uploaded {args.parts} partials of {part_size / MiB:.0f} MiB in "
              f"{time.monotonic() - started:.1f} s")

        cpu, wall = cpu_seconds(), time.monotonic()
        response = client.post("/files", headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)})
        cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
        assert response.status_code == 201, response.get_data()
        final = urlsplit(response.headers["Location"]).path
        assert response.headers["Upload-Offset"] == str(part_size * args.parts)
        print(f"final POST ({args.size_mib} MiB): {cpu * 1000:.1f} ms CPU, {wall * 1000:.1f} ms wall")

        cpu, wall = cpu_seconds(), time.monotonic()
        response = client.head(final)
        cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
        assert response.headers.get("Repr-Digest"), dict(response.headers)
        print(f"first HEAD (computes the final's SHA-256 once): {cpu:.2f} s CPU, {wall:.2f} s wall")
        app.extensions["byterange"].db.dispose()


if __name__ == "__main__":
    main()
