"""The benchmark suite: byterange-server under gunicorn against a raw baseline, in one run.

    python -m bench [--db sqlite,postgresql] [--scenarios S1,S3] [--size 1GiB] [--runs 3]
                    [--storage local|s3] [--json PATH] [--profile] [--quick]
    python -m bench --peers ...     against @tus/server and tuspyserver (see bench.peersuite)

``--storage s3`` runs the servers on the S3 backend against a SeaweedFS the suite starts (as the
tests do, :mod:`bench.s3direct`); S1 and S2 are then compared with ``direct``, boto3 uploading
the same bytes as one plain multipart upload (8 MiB parts, from one thread for S1 and
``clients`` threads for S2) to the same store in the same run (``ratio = ours / direct``), and
add ``assembly``: seconds per GiB from the completing response until the resource is assembled
into one object (it starts right after that commit, see uploads/assembly.py).

Scenarios (MB = 10^6 bytes; every write is acknowledged only once durable):

- S1 sequential: one client fills a resource of ``--size`` in 8 MiB ``message/byterange`` PATCHes;
- S2 parallel: 8 clients fill disjoint 8 MiB segments of one resource, aggregate MB/s;
- S3 small segments: one client, 64 KiB PATCHes, committed writes per second;
- S4 HEAD latency p50/p99 on a resource with 1 extent and on one with 10,000 extents;
- S5 peak RSS of each gunicorn worker (sampled from /proc) while ``--size`` streams in one PATCH;
- S6 GET of a complete resource of ``--size``, and 1,000 random 64 KiB Range GETs;
- H1 (only when asked) the fixed cost of a request: ``--heads`` HEADs of a 1-extent resource on
  one keep-alive connection, p50/p99, requests/s and server CPU per HEAD, on every ``--db`` and
  beside a bare Flask app of one route (:mod:`bench.bare`) under the same gunicorn worker and
  config; its ``ratio`` is ours / bare Flask.

S1–S3 and H1 run on every ``--db``; S4–S6 on the first. ``--against REV[,REV]`` adds, for S1–S3
and H1, a server running the package of another revision (``git archive``; e.g. ``HEAD~1``) on
each ``--db``, interleaved with this checkout's, so a change is measured before and after in
one run. The raw baseline (:mod:`bench.raw`: socket,
``pwrite``, ``fdatasync`` per request; ``sendfile`` for GET) takes the same requests from the same
load generator in the same invocation, runs interleaved with the server's, so ``ratio = ours /
raw`` compares figures taken under the same load. Each figure is the median of ``--runs`` with
min–max; ``client CPU`` is the load generator's own CPU time over wall time (100% = one core),
``server CPU`` the gunicorn workers' (or the raw server's).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import resource
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from byterange_server.db.engine import Database
from byterange_server.db.ledger import extents
from byterange_server.db.models import resources
from byterange_server.extents import Extent
from byterange_server.units import parse_size

from . import capacity
from . import load
from . import peersuite
from .raw import raw_server
from .report import machine
from .report import num
from .report import percent
from .report import percentile
from .report import print_aligned
from .report import print_profiles
from .report import summarize_profile
from .report import write_results
from .s3direct import DirectUploader
from .s3direct import seaweed_store
from .s3direct import server_environ
from .server import checkout
from .server import cpu_seconds
from .server import gunicorn_server
from .server import postgres_databases
from .server import py_spy
from .server import rss_kib

Values = dict[str, tuple[float, str]]  # {metric: (value, unit)}
Runner = Callable[["Target"], Values]
SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6")
#: Asked for by name only.
EXTRA_SCENARIOS = ("H1", "C1")
#: The target a scenario's ratio compares with (``raw`` when not named here).
BASELINES = {"H1": "flask"}
MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass
class Options:
    size: int
    segment: int = 8 * MiB
    small: int = 64 * 1024
    clients: int = 8
    writes: int = 1000
    heads: int = 1000
    extents: int = 10_000
    range_gets: int = 1000
    runs: int = 3
    storage: str = "local"


@dataclass
class Target:
    """Where requests go: the raw baseline or one byterange-server (one database)."""

    name: str
    url: str
    pids: Callable[[], list[int]]
    database_url: str = ""
    complete: str | None = None  # a complete resource of the full size, for S6
    master: int = 0  # gunicorn's master (C1 counts its CPU too)
    direct: DirectUploader | None = None  # ``direct``: the object store, uploaded to by boto3

    @property
    def raw(self) -> bool:
        """Not a byterange-server: the raw sink, the bare Flask app or boto3 to the store."""
        return self.name in ("raw", "flask", "direct")

    @property
    def current(self) -> bool:
        """This checkout's server (not another revision's, see ``--against``)."""
        return not self.raw and "@" not in self.name


@dataclass
class Row:
    scenario: str
    metric: str
    target: str
    unit: str
    runs: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    ratio: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "metric": self.metric, "target": self.target, "unit": self.unit,
            "median": statistics.median(self.runs), "min": min(self.runs), "max": max(self.runs),
            "runs": self.runs, "ratio": self.ratio,
            "client_cpu_percent": statistics.median(self.client_cpu) if self.client_cpu else None,
            "server_cpu_percent": statistics.median(self.server_cpu) if self.server_cpu else None,
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Suite:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.block = memoryview(os.urandom(max(options.segment, options.small, 8 * MiB)))
        self.capacity = capacity.CapacityOptions()
        #: Per-run notes of the scenarios that keep some (C1: outcomes, HEADs answered).
        self.notes: dict[str, list[dict[str, Any]]] = {}

    def record(self, scenario: str, target: Target, values: Values,
               client: float, server: float) -> None:
        for metric, (value, unit) in values.items():
            key = (scenario, metric, target.name)
            row = self.rows.setdefault(key, Row(scenario, metric, target.name, unit))
            row.runs.append(value)
            row.client_cpu.append(client)
            row.server_cpu.append(server)

    def measure(self, scenario: str, target: Target, run: Runner) -> None:
        pids = target.pids()
        client, server, wall = _own_cpu(), sum(map(cpu_seconds, pids)), time.perf_counter()
        values = run(target)
        wall = time.perf_counter() - wall
        client = (_own_cpu() - client) / wall * 100
        server = (sum(map(cpu_seconds, pids)) - server) / wall * 100
        self.record(scenario, target, values, client, server)

    # -- the scenarios; each returns {metric: (value, unit)} for one run ------------------------

    def s1(self, target: Target) -> Values:
        return self._fill(target, self.options.segment, 1)

    def s2(self, target: Target) -> Values:
        return self._fill(target, self.options.segment, self.options.clients)

    def _fill(self, target: Target, segment: int, clients: int) -> Values:
        size = self.options.size
        if target.direct is not None:
            body = bytes(self.block[:segment])
            started = time.perf_counter()
            key = target.direct.upload(body, size, segment, clients)
            elapsed = time.perf_counter() - started
            target.direct.delete(key)
            return {"upload": (size / elapsed / 1e6, "MB/s")}
        client = load.Client(target.url)
        path = client.create(size)
        started = time.perf_counter()
        load.upload(target.url, self.block, size, segment, clients, path=path)
        elapsed = time.perf_counter() - started
        out = {"upload": (size / elapsed / 1e6, "MB/s")}
        if self.options.storage == "s3":
            assembled = self._await_assembly(target, path.rpartition("/")[2])
            out["assembly"] = ((assembled - started - elapsed) / (size / GiB), "s/GiB")
        if target.complete is None:
            target.complete = path  # kept for S6
        else:
            client.delete(path)
        client.close()
        return out

    def _await_assembly(self, target: Target, resource_id: str, timeout: float = 1800.0) -> float:
        """``perf_counter()`` when the resource's assembled object replaced its pieces (polled
        every 20 ms: a figure rounds up by at most that)."""
        database = Database(target.database_url)
        query = select(resources.c.assembled_at).where(resources.c.id == resource_id)
        deadline = time.perf_counter() + timeout
        try:
            while time.perf_counter() < deadline:
                with database.read() as conn:
                    if conn.execute(query).scalar_one() is not None:
                        return time.perf_counter()
                time.sleep(0.02)
        finally:
            database.dispose()
        raise RuntimeError(f"{resource_id} was not assembled within {timeout:.0f} s")

    def s3(self, target: Target) -> Values:
        small, writes = self.options.small, self.options.writes
        client = load.Client(target.url)
        path = client.create(small * writes)
        block = self.block[:small]
        started = time.perf_counter()
        for offset in range(0, small * writes, small):
            client.patch(path, offset, block, small * writes)
        elapsed = time.perf_counter() - started
        client.delete(path)
        client.close()
        return {"64 KiB writes": (writes / elapsed, "writes/s")}

    def s4_setup(self, target: Target) -> tuple[str, str]:
        client = load.Client(target.url)
        one = client.create(2 * self.options.small)
        client.patch(one, 0, self.block[: self.options.small], 2 * self.options.small)
        count = self.options.extents
        many = client.create(2 * count)
        client.close()
        # The extent rows go straight into the database, in one transaction: through HTTP that
        # is 10,000 durable commits, minutes of setup for what is not being measured. One byte
        # at every even offset: the holes keep the extents apart.
        database = Database(target.database_url)
        try:
            with database.write() as conn:
                extents.add_extents(conn, many.rpartition("/")[2],
                                   [Extent(2 * index, 2 * index + 1) for index in range(count)])
        finally:
            database.dispose()
        return one, many

    def s4(self, target: Target, paths: tuple[str, str]) -> Values:
        client = load.Client(target.url)
        out = {}
        for label, path in zip(("1 extent", f"{self.options.extents:,} extents"), paths, strict=True):
            client.head(path)  # warm the connection and the worker
            times = sorted(load.latencies(lambda path=path: client.head(path), self.options.heads))
            out[f"HEAD p50, {label}"] = (percentile(times, 50) * 1000, "ms")
            out[f"HEAD p99, {label}"] = (percentile(times, 99) * 1000, "ms")
        client.close()
        return out

    def s5(self, target: Target) -> Values:
        size = self.options.size
        pids = target.pids()
        before = max(rss_kib(pid) for pid in pids) / 1024
        peak = dict.fromkeys(pids, 0)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for pid in pids:
                    peak[pid] = max(peak[pid], rss_kib(pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        client = load.Client(target.url)
        path = client.create(size)
        sampler.start()
        started = time.perf_counter()
        try:
            client.patch_stream(path, self.block[: 8 * MiB], size)
        finally:
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
        client.delete(path)
        client.close()
        return {
            "peak RSS per worker (max)": (max(peak.values()) / 1024, "MiB"),
            "RSS per worker before (max)": (before, "MiB"),
            "one-PATCH upload": (size / elapsed / 1e6, "MB/s"),
        }

    def s6_whole(self, target: Target) -> Values:
        assert target.complete is not None
        client = load.Client(target.url)
        started = time.perf_counter()
        received = client.get(target.complete)
        whole = time.perf_counter() - started
        client.close()
        assert received == self.options.size, (received, self.options.size)
        return {"GET whole": (self.options.size / whole / 1e6, "MB/s")}

    def s6_ranges(self, target: Target) -> Values:
        assert target.complete is not None
        client = load.Client(target.url)
        ranges = load.random_ranges(self.options.size, self.options.small, self.options.range_gets)
        started = time.perf_counter()
        for byte_range in ranges:
            client.get(target.complete, byte_range)
        elapsed = time.perf_counter() - started
        client.close()
        return {
            "64 KiB Range GETs": (len(ranges) / elapsed, "requests/s"),
            "64 KiB Range GETs, bytes": (len(ranges) * self.options.small / elapsed / 1e6, "MB/s"),
        }

    def h1_setup(self, target: Target) -> str:
        if target.name == "flask":
            return "/files/bare"
        client = load.Client(target.url)
        path = client.create(2 * self.options.small)
        client.patch(path, 0, self.block[: self.options.small], 2 * self.options.small)
        client.close()
        return path

    def h1(self, target: Target, paths: dict[str, str]) -> Values:
        path, count = paths[target.name], self.options.heads
        client = load.Client(target.url)
        for _ in range(20):
            client.head(path)  # warm the connection, the worker and its pool
        pids = target.pids()
        cpu, started = sum(map(cpu_seconds, pids)), time.perf_counter()
        times = sorted(load.latencies(lambda: client.head(path), count))
        elapsed, cpu = time.perf_counter() - started, sum(map(cpu_seconds, pids)) - cpu
        client.close()
        return {
            "HEAD p50, 1 extent": (percentile(times, 50) * 1000, "ms"),
            "HEAD p99, 1 extent": (percentile(times, 99) * 1000, "ms"),
            "HEADs, one connection": (count / elapsed, "requests/s"),
            "server CPU per HEAD": (cpu / count * 1000, "ms"),
        }

    def c1(self, target: Target) -> Values:
        values, notes = capacity.run(target.url, target.pids(), target.master, self.capacity)
        self.notes.setdefault(f"C1 {target.name}", []).append(notes)
        return values

    def ensure_complete(self, target: Target) -> None:
        if target.complete is None:
            target.complete = load.upload(target.url, self.block, self.options.size, self.options.segment)

    def ratios(self) -> None:
        for (scenario, metric, name), row in self.rows.items():
            baseline = BASELINES.get(scenario, "raw")
            if self.options.storage == "s3" and scenario in ("S1", "S2"):
                baseline = "direct"
            raw = self.rows.get((scenario, metric, baseline))
            if raw is not None and name != baseline:
                row.ratio = statistics.median(row.runs) / statistics.median(raw.runs)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("scenario", "metric", "target", "median", "min–max", "unit", "ratio",
              "client CPU", "server CPU")
    lines = []
    for row in rows:
        lines.append((
            row["scenario"], row["metric"], row["target"], num(row["median"]),
            f"{num(row['min'])}–{num(row['max'])}", row["unit"],
            "" if row["ratio"] is None else f"{row['ratio']:.2f}",
            percent(row["client_cpu_percent"]), percent(row["server_cpu_percent"]),
        ))
    print_aligned(header, lines)


@contextlib.contextmanager
def servers(databases: list[str], raw: bool, bare: bool = False,
            against: tuple[str, ...] = (), storage: str = "local",
            clients: int = 8) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        targets = []
        store = stack.enter_context(seaweed_store()) if storage == "s3" else None
        if store is not None:
            targets.append(Target("direct", store["endpoint"], lambda: [],
                                  direct=DirectUploader(store, clients)))
        if raw:
            server = stack.enter_context(raw_server())
            targets.append(Target("raw", server.url, server.worker_pids))
        if bare:
            server = stack.enter_context(gunicorn_server(app="bench.bare:create_app()"))
            targets.append(Target("flask", server.url, server.worker_pids))
        sources: list[tuple[str, Path | None]] = [("", None)]
        sources += [(f"@{revision}", stack.enter_context(checkout(revision))) for revision in against]
        for database in databases:
            urls = [""] * len(sources)
            if database == "postgresql":
                urls = stack.enter_context(postgres_databases(len(sources)))
            for (suffix, source), url in zip(sources, urls, strict=True):
                environ = server_environ(store, f"bench/{database}{suffix}/") if store is not None else None
                server = stack.enter_context(gunicorn_server(database_url=url, source=source,
                                                             environ=environ))
                targets.append(Target(database + suffix, server.url, server.worker_pids, server.database_url,
                                      master=server.pid))
        yield targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None,
                        help="comma-separated: sqlite, postgresql (default both; sqlite with --peers)")
    parser.add_argument("--scenarios", default=None,
                        help=f"default {','.join(SCENARIOS)} (also {','.join(EXTRA_SCENARIOS)}); "
                             "with --peers P1,…,P6")
    parser.add_argument("--against", default="",
                        help="comma-separated git revisions also measured in S1–S3 and H1, e.g. HEAD~1")
    parser.add_argument("--slow-clients", type=int, default=None,
                        help="C1: concurrent slow uploads (default 1000)")
    parser.add_argument("--slow-rate", default=None,
                        help="C1: bytes/s each slow client sends (default 128KiB)")
    parser.add_argument("--slow-size", default=None, help="C1: bytes of each slow upload (default 1MiB)")
    parser.add_argument("--heads", type=int, default=None, help="HEADs per run of S4 and H1 (default 1000)")
    parser.add_argument("--size", default=None,
                        help="resource size for S1, S2, S5, S6 and P1–P3 (default 1GiB)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--storage", choices=("local", "s3"), default="local",
                        help="the servers' storage; s3: a SeaweedFS the suite starts, and S1/S2 "
                             "against boto3 uploading to it directly")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--note", default="", help="stored in the JSON, e.g. 'loaded machine'")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record the workers per scenario; profiles go next to --json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run: a smoke test")
    peers = parser.add_argument_group("peers", "python -m bench --peers: ours against peer tus servers")
    peers.add_argument("--peers", action="store_true",
                       help="run P1–P6 against @tus/server, tuspyserver and raw instead of S1–S6")
    peers.add_argument("--targets", default=None, help="comma-separated subset of the --peers targets")
    peers.add_argument("--peers-dir", default=None,
                       help="where the peers are installed (default ~/.cache/byterange-bench/peers)")
    peers.add_argument("--peer-workers", type=int, default=None,
                       help="uvicorn workers for tuspyserver (default: gunicorn_conf's worker count)")
    args = parser.parse_args(argv)
    if args.peers:
        peersuite.run(args)
        return

    databases = [item.strip() for item in (args.db or "sqlite,postgresql").split(",") if item.strip()]
    scenarios = [item.strip().upper() for item in (args.scenarios or ",".join(SCENARIOS)).split(",")
                 if item.strip()]
    for name in scenarios:
        if name not in SCENARIOS + EXTRA_SCENARIOS:
            parser.error(f"unknown scenario {name}")
    for name in databases:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown database {name}")
    if args.quick:
        # On S3 a part is at least 5 MiB: the direct baseline's parts are the segments.
        segment = 8 * MiB if args.storage == "s3" else 4 * MiB
        options = Options(size=parse_size(args.size or "16MiB"), segment=segment, writes=40, heads=50,
                          extents=500, range_gets=50, runs=args.runs or 1, storage=args.storage)
    else:
        options = Options(size=parse_size(args.size or "1GiB"), runs=args.runs or 3, storage=args.storage)
    if args.heads:
        options.heads = args.heads
    suite_capacity = capacity.CapacityOptions()
    if args.slow_clients:
        suite_capacity.clients = args.slow_clients
    if args.slow_rate:
        suite_capacity.rate = parse_size(args.slow_rate)
    if args.slow_size:
        suite_capacity.size = parse_size(args.slow_size)
    against = tuple(item.strip() for item in args.against.split(",") if item.strip())
    profile_dir = (args.json.parent if args.json else Path.cwd()) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)

    # A TERM (a timeout, a kill) unwinds the context managers, so no server outlives the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    suite = Suite(options)
    suite.capacity = suite_capacity
    profiles: dict[str, Any] = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {"started": started.isoformat(timespec="seconds"), "note": args.note, "machine": machine(),
            "options": vars(options), "databases": databases, "scenarios": scenarios,
            "argv": sys.argv[1:] if argv is None else argv}
    raw_for = {"S3", "S6"} if options.storage == "s3" else {"S1", "S2", "S3", "S6"}
    need_raw = bool(raw_for & set(scenarios))
    with servers(databases, need_raw, bare="H1" in scenarios, against=against, storage=options.storage,
                 clients=options.clients) as targets:
        every = [target for target in targets if not target.raw]
        ours = [target for target in every if target.current]
        first = ours[0]
        raw = [target for target in targets if target.name == "raw"]
        bare = [target for target in targets if target.name == "flask"]
        fill = [target for target in targets if target.name == "direct"] or raw  # S1, S2's baseline
        plan: dict[str, list[Target]] = {
            "S1": fill + every, "S2": fill + every, "S3": raw + every, "S4": [first], "S5": [first],
            "S6": raw + [first], "H1": bare + every, "C1": every,
        }
        for scenario in scenarios:
            print(f"{scenario} ...", file=sys.stderr, flush=True)
            with contextlib.ExitStack() as stack:
                spied: dict[str, list[Path]] = {}
                if profile_dir is not None:
                    for target in plan[scenario]:
                        if target.name not in ("raw", "direct"):
                            prefix = profile_dir / f"profile-{scenario}-{target.name}"
                            spied[target.name] = stack.enter_context(py_spy(target.pids(), prefix))
                if scenario == "S4":
                    runners: list[Runner] = [functools.partial(suite.s4, paths=suite.s4_setup(first))]
                elif scenario == "H1":
                    paths = {target.name: suite.h1_setup(target) for target in plan[scenario]}
                    runners = [functools.partial(suite.h1, paths=paths)]
                elif scenario == "S6":
                    for target in plan[scenario]:
                        suite.ensure_complete(target)
                    runners = [suite.s6_whole, suite.s6_ranges]  # apart, so each has its CPU figures
                else:
                    runners = [getattr(suite, scenario.lower())]
                for _ in range(options.runs):
                    for target in plan[scenario]:
                        for runner in runners:
                            suite.measure(scenario, target, runner)
            for name, paths in spied.items():
                profiles[f"{scenario} {name}"] = {"files": [path.name for path in paths],
                                                  **summarize_profile(paths)}
            if args.json:  # after every scenario, so an interrupted run keeps what it measured
                write_results(args.json, suite, meta, scenarios, profiles, extra={"notes": suite.notes})
    result = write_results(args.json, suite, meta, scenarios, profiles, finished=True,
                           extra={"notes": suite.notes})
    print_table([row for rows in result["scenarios"].values() for row in rows])
    for name, notes in suite.notes.items():
        print(f"{name}: " + "; ".join(json.dumps(note, sort_keys=True) for note in notes))
    print_profiles(profiles)
    if args.json:
        print(f"\nwritten to {args.json}")


