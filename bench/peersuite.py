"""``python -m bench --peers``: byterange-server against the peer tus servers and the raw baseline.

    python -m bench --peers [--scenarios P1,P5] [--targets ours-tus,@tus/server] [--size 1GiB]
                            [--runs 3] [--json PATH] [--profile] [--quick] [--peers-dir DIR]

The servers, each on its own loopback port, all started by this one invocation:

- **ours**: byterange-server under gunicorn with the production settings (``gunicorn_conf``),
  SQLite, ``BYTERANGE_FSYNC=true``; **ours nofsync**: a second one with ``BYTERANGE_FSYNC=false``
  (no ``fdatasync`` of the data; SQLite still syncs its commits).
  Each is measured through its byte-range endpoint (``ours-br``: ``message/byterange`` PATCHes)
  and its tus endpoint (``ours-tus``: tus creation POST, then PATCHes with ``Upload-Offset``).
- **@tus/server** with **@tus/file-store** on Node, one process; **tuspyserver** on uvicorn with
  uvloop and httptools, as many workers as gunicorn has. Both installed on demand and pinned
  (:mod:`bench.peers`). Neither flushes uploaded bytes to disk.
- **raw**: :mod:`bench.raw` (``pwrite`` + ``fdatasync`` per request); **raw nofsync**: the same
  without ``fdatasync``.

One load generator (:mod:`bench.load`) drives them all; ours-tus and the peers get the very same
tus requests. Scenarios (MB = 10^6 bytes; uploads on separate resources, since tus has one writer
per upload):

- P1 sequential: one connection uploads ``--size`` in 8 MiB PATCHes; MB/s, server CPU-s per GiB;
- P2 / P3 concurrent: 4 / 16 connections at once, each uploading ``--size``/N in 8 MiB PATCHes;
  aggregate MB/s, server CPU-s per GiB;
- P4 small writes: one connection, 1,024 sequential 64 KiB PATCHes; requests/s, CPU-s per GiB;
- P5 slow uploads: 256 connections at once, each sending 512 KiB uploads (one PATCH each) at
  128 KiB/s, 4 uploads one after the other, for at most 18 s; uploads completed, aggregate MB/s,
  uploads refused; meanwhile one fast client's HEADs (p50, p99);
- P6 footprint: peak RSS of each server over the whole invocation (VmHWM of all its processes).

Server CPU is user + system time of every process of the server (master, workers, helpers; for
ours, SQLite runs in the workers), from ``/proc/PID/stat`` before and after each run. Runs are
interleaved: each run goes once round every target, and between two targets the machine is
``sync``\\ed (outside any measurement, so dirty pages a no-fsync server left behind are not
written during the next target's run) and the last server left to go idle.
``ours / best peer`` and ``ours / raw`` are medians divided (raw with fsync for ours, raw nofsync
for ours nofsync).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from byterange_server.units import parse_size

from . import load
from . import peers
from .raw import raw_server
from .report import machine
from .report import num
from .report import percent
from .report import percentile
from .report import print_aligned
from .report import print_profiles
from .report import summarize_profile
from .report import write_results
from .server import cpu_seconds
from .server import gunicorn_server
from .server import peak_rss_kib
from .server import process_tree
from .server import py_spy

MiB = 1024 * 1024
GiB = 1024 * MiB
SCENARIOS = {
    "P1": "sequential 8 MiB",
    "P2": "4 concurrent uploads",
    "P3": "16 concurrent uploads",
    "P4": "64 KiB sequential writes",
    "P5": "slow uploads",
    "P6": "footprint",
}
TARGETS = ("ours-br", "ours-tus", "ours-br nofsync", "ours-tus nofsync", "@tus/server", "tuspyserver",
           "raw", "raw nofsync")
#: Units where more is better; for the others (ms, CPU-s/GiB, MiB, refusals) less is.
HIGHER_IS_BETTER = ("MB/s", "requests/s", "uploads done")


@dataclass
class PeerOptions:
    size: int
    segment: int = 8 * MiB
    concurrency: tuple[int, int] = (4, 16)
    small: int = 64 * 1024
    writes: int = 1024
    slow_clients: int = 256
    slow_rate: int = 128 * 1024
    slow_size: int = 512 * 1024
    slow_uploads: int = 4
    slow_slack: float = 2.0
    head_pause: float = 0.02
    runs: int = 3
    peer_workers: int = 2

    @property
    def slow_window(self) -> float:
        """Seconds the slow clients get: their uploads at exactly their rate, plus the slack."""
        return self.slow_uploads * self.slow_size / self.slow_rate + self.slow_slack


def quick_options(size: str | None, runs: int | None, workers: int) -> PeerOptions:
    return PeerOptions(size=parse_size(size or "16MiB"), segment=4 * MiB, writes=40, slow_clients=16,
                       slow_size=64 * 1024, slow_uploads=2, slow_slack=1.0, runs=runs or 1,
                       peer_workers=workers)


@dataclass
class Server:
    """One server process tree, which one or two targets talk to."""

    name: str
    kind: str  # "ours", "peer" or "raw"
    fsync: bool
    pids: Callable[[], list[int]]
    description: str


@dataclass
class Target:
    name: str
    url: str
    protocol: str
    server: Server


@dataclass
class Outcome:
    values: dict[str, tuple[float, str]]
    uploaded: int = 0  # bytes acknowledged, for CPU-s per GiB; 0: no such figure
    created: list[str] = field(default_factory=list)  # deleted after the run, outside its figures
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    scenario: str
    metric: str
    target: str
    unit: str
    kind: str
    fsync: bool
    runs: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    vs_peer: float | None = None
    vs_raw: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "metric": self.metric, "target": self.target, "unit": self.unit,
            "kind": self.kind, "fsync": self.fsync, "higher_is_better": self.unit in HIGHER_IS_BETTER,
            "median": self.median, "min": min(self.runs), "max": max(self.runs), "runs": self.runs,
            "ours_over_best_peer": self.vs_peer, "ours_over_raw": self.vs_raw,
            "client_cpu_percent": statistics.median(self.client_cpu) if self.client_cpu else None,
            "server_cpu_percent": statistics.median(self.server_cpu) if self.server_cpu else None,
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(server: Server) -> float:
    return sum(map(cpu_seconds, server.pids()))


class PeerSuite:
    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.block = memoryview(os.urandom(max(options.segment, options.small, options.slow_size, MiB)))

    def record(self, scenario: str, target: str, server: Server, values: dict[str, tuple[float, str]],
               client: float | None = None, cpu: float | None = None) -> None:
        for metric, (value, unit) in values.items():
            row = self.rows.setdefault((scenario, metric, target),
                                       Row(scenario, metric, target, unit, server.kind, server.fsync))
            row.runs.append(value)
            if client is not None:
                row.client_cpu.append(client)
            if cpu is not None:
                row.server_cpu.append(cpu)

    def measure(self, scenario: str, target: Target, run: Callable[[Target], Outcome]) -> list[str]:
        """One run on one target, recorded; returns the uploads it made, for the caller to delete
        (outside the figures, and outside a profile)."""
        client, server, wall = _own_cpu(), _server_cpu(target.server), time.perf_counter()
        outcome = run(target)
        wall = time.perf_counter() - wall
        server = _server_cpu(target.server) - server
        client = _own_cpu() - client
        values = dict(outcome.values)
        if outcome.uploaded:
            values["server CPU per GiB"] = (server / (outcome.uploaded / GiB), "CPU-s/GiB")
        self.record(scenario, target.name, target.server, values, client / wall * 100, server / wall * 100)
        if outcome.notes:
            self.notes.setdefault(f"{scenario} {target.name}", []).append(outcome.notes)
        return outcome.created

    # -- the scenarios; each returns one run's Outcome ------------------------------------------

    def p1(self, target: Target) -> Outcome:
        return self._concurrent(target, 1)

    def p2(self, target: Target) -> Outcome:
        return self._concurrent(target, self.options.concurrency[0])

    def p3(self, target: Target) -> Outcome:
        return self._concurrent(target, self.options.concurrency[1])

    def _concurrent(self, target: Target, uploads: int) -> Outcome:
        """``uploads`` connections, each creating and filling its own resource of size/uploads."""
        each = self.options.size // uploads
        start = threading.Barrier(uploads + 1)
        created: list[str] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                start.wait()
                client = load.Client(target.url, protocol=target.protocol)
                path = client.create(each)
                created.append(path)
                client.close()
                load.upload(target.url, self.block, each, self.options.segment, path=path,
                            protocol=target.protocol)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(uploads)]
        for thread in threads:
            thread.start()
        start.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        total = each * uploads
        return Outcome({"upload": (total / elapsed / 1e6, "MB/s")}, uploaded=total, created=created)

    def p4(self, target: Target) -> Outcome:
        small, writes = self.options.small, self.options.writes
        client = load.Client(target.url, protocol=target.protocol)
        path = client.create(small * writes)
        block = self.block[:small]
        started = time.perf_counter()
        for offset in range(0, small * writes, small):
            client.write(path, offset, block, small * writes)
        elapsed = time.perf_counter() - started
        client.close()
        return Outcome({"64 KiB writes": (writes / elapsed, "requests/s")}, uploaded=small * writes,
                       created=[path])

    def p5(self, target: Target) -> Outcome:
        """Slow clients at a fixed rate, and one fast client's HEADs while they run."""
        options = self.options
        probe = load.Client(target.url, protocol=target.protocol, timeout=60)
        probe_path = probe.create(options.small)
        probe.write(probe_path, 0, self.block[: options.small], options.small)
        created = [probe_path]
        lock = threading.Lock()
        live: list[load.Client] = []
        done = Counter[str]()
        started = time.monotonic()
        until = started + options.slow_window
        last_done = [started]

        def slow() -> None:
            client = load.Client(target.url, protocol=target.protocol, timeout=options.slow_window + 30,
                                 buffer=64 * 1024)
            with lock:
                live.append(client)
            try:
                for _ in range(options.slow_uploads):
                    if time.monotonic() >= until:
                        return
                    try:
                        path = client.create(options.slow_size)
                        with lock:
                            created.append(path)
                        finished = client.write_paced(path, self.block, options.slow_size, options.slow_rate,
                                                      until)
                    except load.HTTPStatusError as exc:
                        with lock:
                            done[f"HTTP {exc.status}"] += 1
                        client.close()  # a fresh connection for the next upload
                        continue
                    except OSError:
                        if time.monotonic() < until:
                            with lock:
                                done["connection error"] += 1
                        return
                    if not finished:
                        return
                    with lock:
                        done["completed"] += 1
                        last_done[0] = time.monotonic()
            finally:
                client.close()

        heads: list[float] = []
        head_errors = Counter[str]()

        def fast() -> None:
            while time.monotonic() < until:
                begun = time.perf_counter()
                try:
                    probe.head(probe_path)
                except (OSError, load.HTTPStatusError) as exc:
                    head_errors[type(exc).__name__] += 1
                    probe.close()
                heads.append(time.perf_counter() - begun)
                time.sleep(options.head_pause)

        threads = [threading.Thread(target=slow) for _ in range(options.slow_clients)]
        threads.append(threading.Thread(target=fast))
        for thread in threads:
            thread.start()
        while time.monotonic() < until and any(thread.is_alive() for thread in threads[:-1]):
            time.sleep(0.05)
        with lock:
            for client in live:
                client.abort()  # what is still sending at the end of the window is abandoned
        for thread in threads:
            thread.join()
        probe.close()
        completed = done["completed"]
        elapsed = max(min(last_done[0], until) - started, 1e-9)
        refused = sum(count for name, count in done.items() if name != "completed")
        ordered = sorted(heads) or [float("nan")]
        return Outcome(
            {
                "slow uploads completed": (completed, "uploads done"),
                "slow aggregate": (completed * options.slow_size / elapsed / 1e6, "MB/s"),
                "slow uploads refused": (refused, "uploads"),
                "fast HEAD p50": (percentile(ordered, 50) * 1000, "ms"),
                "fast HEAD p99": (percentile(ordered, 99) * 1000, "ms"),
            },
            created=created,
            notes={"possible": options.slow_clients * options.slow_uploads, "outcomes": dict(done),
                   "heads": len(heads), "head_errors": dict(head_errors)},
        )

    def footprint(self, servers: list[Server]) -> None:
        """P6: peak RSS (VmHWM) of every process of each server, summed, and of the largest."""
        for server in servers:
            peaks = [peak_rss_kib(pid) / 1024 for pid in server.pids()]
            self.record("P6", server.name, server, {
                "peak RSS, all processes": (sum(peaks), "MiB"),
                "peak RSS, largest process": (max(peaks), "MiB"),
            })

    def ratios(self) -> None:
        for (scenario, metric, _), row in self.rows.items():
            if row.kind != "ours":
                continue
            higher = row.unit in HIGHER_IS_BETTER
            peer_medians = [other.median for (s, m, _), other in self.rows.items()
                            if s == scenario and m == metric and other.kind == "peer"]
            if peer_medians:
                best = max(peer_medians) if higher else min(peer_medians)
                row.vs_peer = _ratio(row.median, best)
            raw = next((other for (s, m, _), other in self.rows.items() if s == scenario and m == metric
                        and other.kind == "raw" and other.fsync == row.fsync), None)
            if raw is not None:
                row.vs_raw = _ratio(row.median, raw.median)


def _ratio(value: float, other: float) -> float | None:
    return value / other if other else None


def delete(target: Target, paths: list[str]) -> None:
    """Remove a run's uploads (some may be abandoned halfway: their refusals do not matter)."""
    if not paths:
        return

    def remove(chunk: list[str]) -> None:
        client = load.Client(target.url, protocol=target.protocol, timeout=60)
        for path in chunk:
            with contextlib.suppress(OSError, load.HTTPStatusError):
                client.delete(path)
            if client.conn.sock is None:
                client.close()
        client.close()

    chunks = [paths[index::8] for index in range(min(8, len(paths)))]
    with ThreadPoolExecutor(len(chunks)) as pool:
        list(pool.map(remove, chunks))


def quiesce(server: Server, timeout: float = 20.0) -> None:
    """``sync``, then wait until ``server`` uses under 5% of a core (what it left running is done)."""
    os.sync()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _server_cpu(server)
        time.sleep(0.25)
        if _server_cpu(server) - before < 0.0125:
            return


#: Which server each target talks to.
SERVER_OF = {"ours-br": "ours", "ours-tus": "ours", "ours-br nofsync": "ours nofsync",
             "ours-tus nofsync": "ours nofsync", "@tus/server": "@tus/server", "tuspyserver": "tuspyserver",
             "raw": "raw", "raw nofsync": "raw nofsync"}


@contextlib.contextmanager
def start_servers(wanted: list[str], options: PeerOptions, cache: Path
                  ) -> Iterator[tuple[list[Target], list[Server], dict[str, str]]]:
    """Install what the chosen targets need and start each of their servers once."""
    names = {SERVER_OF[name] for name in wanted}
    versions: dict[str, str] = {}
    node_dir = peers.install_node(cache) if "@tus/server" in names else None
    python = peers.install_tuspyserver(cache) if "tuspyserver" in names else None
    if node_dir is not None:
        versions["node"] = ".".join(map(str, peers.node_version()))
        versions.update(peers.node_versions(node_dir))
    if python is not None:
        versions.update(peers.python_versions(python))
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        urls: dict[str, str] = {}
        for name, fsync in (("ours", True), ("ours nofsync", False)):
            if name in names:
                # No request lines, like the peers (uvicorn --no-access-log; @tus/server has none).
                environ = {"BYTERANGE_FSYNC": str(fsync).lower(), "BYTERANGE_REQUEST_LOG": "false"}
                ours = stack.enter_context(gunicorn_server(environ=environ))
                workers = len(ours.worker_pids())
                servers[name] = Server(
                    name, "ours", fsync, lambda pid=ours.pid: process_tree(pid),
                    f"byterange-server under gunicorn_conf ({workers} workers), SQLite, "
                    f"BYTERANGE_FSYNC={str(fsync).lower()}, BYTERANGE_REQUEST_LOG=false"
                    + ("" if fsync else "; data not flushed, SQLite's commits still are (synchronous=FULL)"))
                urls[name] = ours.url
        if node_dir is not None:
            node = stack.enter_context(peers.tus_node_server(node_dir))
            servers["@tus/server"] = Server(
                "@tus/server", "peer", False, node.pids,
                f"@tus/server {versions['@tus/server']} + @tus/file-store {versions['@tus/file-store']} "
                f"on Node {versions['node']}, one process; no fsync")
            urls["@tus/server"] = node.url
        if python is not None:
            tuspy = stack.enter_context(peers.tuspyserver_server(python, options.peer_workers))
            servers["tuspyserver"] = Server(
                "tuspyserver", "peer", False, tuspy.pids,
                f"tuspyserver {versions['tuspyserver']} (FastAPI {versions['fastapi']}) on uvicorn "
                f"{versions['uvicorn']} + uvloop {versions['uvloop']} + httptools {versions['httptools']}, "
                f"{options.peer_workers} workers; no fsync of data (it fsyncs its .info JSON per PATCH)")
            urls["tuspyserver"] = tuspy.url
        for name, fsync in (("raw", True), ("raw nofsync", False)):
            if name in names:
                raw = stack.enter_context(raw_server(fsync=fsync))
                servers[name] = Server(name, "raw", fsync, raw.worker_pids,
                                       "bench/raw.py: pwrite" + (" + fdatasync per request" if fsync
                                                                 else " only, no fsync"))
                urls[name] = raw.url
        targets = []
        for name in wanted:
            server = SERVER_OF[name]
            protocol = "tus" if "tus" in name else "byterange"
            targets.append(Target(name, urls[server], protocol, servers[server]))
        yield targets, list(servers.values()), versions


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("scenario", "metric", "target", "median", "min–max", "unit", "ours/best peer", "ours/raw",
              "server CPU", "client CPU")
    lines = []
    for row in rows:
        lines.append((
            row["scenario"], row["metric"], row["target"], num(row["median"]),
            f"{num(row['min'])}–{num(row['max'])}", row["unit"],
            _ratio_text(row["ours_over_best_peer"]), _ratio_text(row["ours_over_raw"]),
            percent(row["server_cpu_percent"]), percent(row["client_cpu_percent"]),
        ))
    print_aligned(header, lines)


def _ratio_text(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> None:
    """``python -m bench --peers``, with the suite's parsed arguments."""
    workers = args.peer_workers or max(2, os.cpu_count() or 1)  # what gunicorn_conf gives ours
    if args.quick:
        options = quick_options(args.size, args.runs, workers)
    else:
        options = PeerOptions(size=parse_size(args.size or "1GiB"), runs=args.runs or 3, peer_workers=workers)
    scenarios = [item.strip().upper() for item in (args.scenarios or ",".join(SCENARIOS)).split(",")
                 if item.strip()]
    for name in scenarios:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name} for --peers (one of {', '.join(SCENARIOS)})")
    wanted = [item.strip() for item in (args.targets or ",".join(TARGETS)).split(",") if item.strip()]
    for name in wanted:
        if name not in TARGETS:
            raise SystemExit(f"unknown target {name!r} (one of {', '.join(TARGETS)})")
    if (args.db or "sqlite") != "sqlite":
        raise SystemExit("--peers runs ours on SQLite (the peers keep their state in files): --db sqlite")
    profile_dir = (args.json.parent if args.json else Path.cwd()) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    suite = PeerSuite(options)
    cache = peers.cache_dir(args.peers_dir)
    started = datetime.datetime.now(datetime.timezone.utc)
    meta: dict[str, Any] = {
        "mode": "peers", "started": started.isoformat(timespec="seconds"), "note": args.note,
        "machine": machine(), "options": asdict(options), "scenarios": scenarios, "targets": wanted,
        "database": "sqlite", "peers_dir": str(cache),
        "argv": sys.argv[1:],
    }
    profiles: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        print(f"installing (into {cache}) and starting the servers ...", file=sys.stderr, flush=True)
        try:
            targets, servers, versions = stack.enter_context(start_servers(wanted, options, cache))
        except peers.PeerError as exc:
            raise SystemExit(f"python -m bench --peers: {exc}") from exc
        meta["versions"] = versions
        meta["servers"] = {server.name: server.description for server in servers}
        for server in servers:
            print(f"  {server.name}: {server.description}", file=sys.stderr)
        for scenario in scenarios:
            if scenario == "P6":
                continue
            print(f"{scenario} {SCENARIOS[scenario]} ...", file=sys.stderr, flush=True)
            runner = getattr(suite, scenario.lower())
            spied: dict[str, list[Path]] = {}
            for number in range(options.runs):
                for target in targets:
                    with contextlib.ExitStack() as spy:
                        if profile_dir is not None and target.server.kind == "ours":
                            label = target.name.replace(" ", "-")
                            prefix = profile_dir / f"profile-{scenario}-{label}-run{number}"
                            pids = target.server.pids()[1:]  # the workers
                            spied.setdefault(target.name, []).extend(spy.enter_context(py_spy(pids, prefix)))
                        created = suite.measure(scenario, target, runner)
                    delete(target, created)
                    first = next(row for row in suite.rows.values()
                                 if row.scenario == scenario and row.target == target.name)
                    print(f"  run {number + 1}/{options.runs} {target.name}: {first.metric} "
                          f"{num(first.runs[-1])} {first.unit}", file=sys.stderr, flush=True)
                    quiesce(target.server)
            for name, paths in spied.items():
                profiles[f"{scenario} {name}"] = {"files": [path.name for path in paths],
                                                  **summarize_profile(paths)}
            if args.json:
                write_results(args.json, suite, meta, scenarios, profiles, extra={"notes": suite.notes})
        if "P6" in scenarios:
            suite.footprint(servers)
    result = write_results(args.json, suite, meta, scenarios, profiles, finished=True,
                           extra={"notes": suite.notes})
    print()
    for server in servers:
        print(f"{server.name}: {server.description}")
    print()
    print_table([row for rows in result["scenarios"].values() for row in rows])
    print("\nours/best peer and ours/raw divide medians: above 1 is better for MB/s, requests/s and "
          "uploads done, below 1 for ms, CPU-s/GiB, MiB and refusals. The peers do not fsync; "
          "compare ours nofsync with them, and ours with raw.")
    for name, notes in suite.notes.items():
        print(f"{name}: " + "; ".join(json.dumps(note, sort_keys=True) for note in notes))
    print_profiles(profiles)
    if args.json:
        print(f"\nwritten to {args.json}")


