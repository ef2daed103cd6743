"""Many tiny parts: what a 10,000-part PATCH costs the server, and what it costs everyone else.

    python -m bench.manyparts [--db sqlite,postgresql] [--parts 10000] [--parallel 8]
                              [--formats multipart,binary] [--runs 1] [--timeout 600]

On a real gunicorn (the workers and threads of gunicorn_conf, production settings), for each
database and each body format (``multipart/byteranges``, ``application/byteranges``), with
1-byte parts at consecutive offsets of a resource of ``--parts`` bytes:

- ``one``: one such PATCH, alone: seconds until its 204, and the workers' CPU seconds;
- ``over-limit``: the same with one part more than ``max-parts``: seconds until its 400;
- ``parallel``: ``--parallel`` of them at once, each on its own resource: the slowest and the
  median request, and the whole batch;
- ``probe``: meanwhile another client PUTs 64 KiB to a resource of its own, one request after
  the other: its median and worst latency, against the same PUT on the idle server first
  (``delay`` = worst while loaded minus the idle median).

Figures are printed as a table (and as JSON with ``--json PATH``). Bodies are built before the
clock starts and sent whole over loopback, so the time is the server's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from byterange_server.protocol.binary import encode_known_length
from byterange_server.protocol.multipart import encode_multipart
from byterange_server.protocol.multipart import make_boundary
from byterange_server.protocol.ranges import ContentRange

from .server import BenchServer
from .server import cpu_seconds
from .server import gunicorn_server
from .server import postgres_database

PROBE_SIZE = 64 * 1024


def many_parts_body(fmt: str, parts: int, length: int) -> tuple[str, bytes]:
    """(Content-Type, body) of ``parts`` one-byte parts at offsets 0, 1, 2, ..."""
    pieces = [
        ((("Content-Range", ContentRange(i, i + 1, length).format()),), bytes([65 + i % 26]))
        for i in range(parts)
    ]
    if fmt == "multipart":
        boundary = make_boundary()
        return f"multipart/byteranges; boundary={boundary}", encode_multipart(pieces, boundary)
    return "application/byteranges", b"".join(encode_known_length(fields, data) for fields, data in pieces)


class Connection:
    def __init__(self, server: BenchServer, timeout: float) -> None:
        parts = urlsplit(server.url)
        self.collection = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        payload = response.read()
        return response, payload

    def create(self, length: int) -> str:
        response, payload = self.request("POST", self.collection, headers={"Upload-Length": str(length)})
        if response.status != 201:
            raise RuntimeError(f"POST: {response.status} {payload[:300]!r}")
        return urlsplit(response.getheader("Location") or "").path

    def timed_patch(self, path: str, content_type: str, body: bytes, expect: int) -> float:
        started = time.perf_counter()
        response, payload = self.request("PATCH", path, body, {"Content-Type": content_type})
        elapsed = time.perf_counter() - started
        if response.status != expect:
            raise RuntimeError(f"PATCH: {response.status}, expected {expect}: {payload[:300]!r}")
        return elapsed


@contextmanager
def workers_cpu(server: BenchServer) -> Iterator[list[float]]:
    """Yields a list that holds, after the block, the workers' CPU seconds spent in it."""
    pids = server.worker_pids()
    before = sum(cpu_seconds(pid) for pid in pids)
    out: list[float] = []
    yield out
    out.append(sum(cpu_seconds(pid) for pid in pids) - before)


def probe_latencies(server: BenchServer, stop: threading.Event, out: list[float], timeout: float) -> None:
    """64 KiB PUTs one after the other until ``stop``; each one's seconds go to ``out``."""
    conn = Connection(server, timeout)
    data = os.urandom(PROBE_SIZE)
    try:
        path = conn.create(PROBE_SIZE)
        while not stop.is_set():
            started = time.perf_counter()
            response, payload = conn.request(
                "PUT", path, data, {"Content-Range": ContentRange(0, PROBE_SIZE, PROBE_SIZE).format()}
            )
            out.append(time.perf_counter() - started)
            if response.status != 204:
                raise RuntimeError(f"probe PUT: {response.status} {payload[:300]!r}")
            # A complete resource takes the same bytes again: every PUT still reserves,
            # compares and commits, so a new resource each time is not needed.
    finally:
        conn.close()


def run_format(server: BenchServer, fmt: str, args: argparse.Namespace) -> dict[str, float]:
    parts = args.parts
    content_type, body = many_parts_body(fmt, parts, parts)
    figures: dict[str, float] = {}

    conn = Connection(server, args.timeout)
    try:
        singles, cpus = [], []
        for _ in range(args.runs):
            path = conn.create(parts)
            with workers_cpu(server) as cpu:
                singles.append(conn.timed_patch(path, content_type, body, 204))
            cpus.append(cpu[0])
        figures["one: seconds"] = statistics.median(singles)
        figures["one: server CPU s"] = statistics.median(cpus)
        over_type, over_body = many_parts_body(fmt, parts + 1, parts + 1)
        path = conn.create(parts + 1)
        figures["over-limit: seconds to 400"] = conn.timed_patch(path, over_type, over_body, 400)
    finally:
        conn.close()

    idle: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_latencies, args=(server, stop, idle, args.timeout))
    prober.start()
    time.sleep(2.0)
    stop.set()
    prober.join()
    idle_median = statistics.median(idle)

    durations: list[float] = []
    errors: list[BaseException] = []
    paths = []
    setup = Connection(server, args.timeout)
    try:
        paths = [setup.create(parts) for _ in range(args.parallel)]
    finally:
        setup.close()
    ready = threading.Barrier(args.parallel + 1)

    def writer(path: str) -> None:
        own = Connection(server, args.timeout)
        try:
            ready.wait()
            durations.append(own.timed_patch(path, content_type, body, 204))
        except BaseException as exc:  # reported below, with the figures that were taken
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    loaded: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_latencies, args=(server, stop, loaded, args.timeout))
    ready.wait()
    started = time.perf_counter()
    prober.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    stop.set()
    prober.join()
    if errors:
        raise RuntimeError(f"{len(errors)} parallel requests failed: {errors[0]}")
    figures[f"parallel x{args.parallel}: slowest s"] = max(durations)
    figures[f"parallel x{args.parallel}: median s"] = statistics.median(durations)
    figures[f"parallel x{args.parallel}: all done s"] = wall
    figures["probe 64 KiB PUT idle: median s"] = idle_median
    figures["probe while loaded: median s"] = statistics.median(loaded) if loaded else float("nan")
    figures["probe while loaded: worst s"] = max(loaded) if loaded else float("nan")
    figures["probe delay: worst - idle median s"] = (max(loaded) - idle_median) if loaded else float("nan")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--formats", default="multipart,binary")
    parser.add_argument("--parts", type=int, default=10_000, help="parts per request (max-parts)")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="runs of the single request (median)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a request fails")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    os.environ["BYTERANGE_MAX_PARTS"] = str(args.parts)
    os.environ["BYTERANGE_REQUEST_LOG"] = "false"  # a line per probe PUT would flood the output

    results: dict[str, dict[str, float]] = {}
    for db in args.db.split(","):
        if db == "sqlite":
            databases = [("sqlite", "")]
        elif db == "postgresql":
            databases = [("postgresql", None)]
        else:
            raise SystemExit(f"unknown database {db!r}")
        for name, url in databases:
            if url is None:
                with postgres_database() as pg_url, gunicorn_server(database_url=pg_url) as server:
                    for fmt in args.formats.split(","):
                        results[f"{name} {fmt}"] = run_format(server, fmt, args)
                        _print(f"{name} {fmt}", results[f"{name} {fmt}"])
            else:
                with gunicorn_server(database_url=url) as server:
                    for fmt in args.formats.split(","):
                        results[f"{name} {fmt}"] = run_format(server, fmt, args)
                        _print(f"{name} {fmt}", results[f"{name} {fmt}"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"parts": args.parts, "parallel": args.parallel, "results": results}, handle, indent=2)


def _print(title: str, figures: dict[str, float]) -> None:
    print(f"== {title}", flush=True)
    for metric, value in figures.items():
        print(f"   {metric:<40} {value:10.3f}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
