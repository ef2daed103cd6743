"""``python -m bench.slowloris``: how many slow clients a default server withstands.

Starts ``byterange-server`` under gunicorn with the settings of ``byterange_server/runtime/gunicorn_conf.py``
(2 workers x 8 threads on a 2-core machine, our worker class) and, for each scenario and each
count of attacking connections, keeps that many connections busy while another client sends a
normal ``HEAD`` on a fresh connection every second. A scenario is *withstood* at a count when
every probe is answered in under 100 ms. The scenarios, all without credentials of any kind:

- ``slow-head``: a request head sent at 1 byte/s; when the server closes the connection (408
  after ``BYTERANGE_HEADER_TIMEOUT``), the attacker connects again at once.
- ``slow-body``: a valid ``PATCH`` head and part fields, each to its own resource, then the body
  at 1 byte/s. Each holds a request thread until the minimum-rate guard ends it.
- ``refused-body``: a ``PATCH`` to a resource that does not exist (404) announcing 1 MiB, then
  1 byte/s of it, going on after the answer and the server's FIN for as long as the server
  lets it (the lingering close); connects again when a send fails.

``--guard`` also measures how long one 1 byte/s body holds its thread before the guard ends it
(with the default ``BYTERANGE_MIN_BODY_RATE_WINDOW`` of 60 s this takes over a minute).

Prints one table row per scenario and count; ``--json`` writes them to a file too.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import selectors
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

from .server import BenchServer
from .server import gunicorn_server

COUNTS = (16, 64, 256, 1000)
SCENARIOS = ("slow-head", "slow-body", "refused-body")
#: A probe is "answered" when it is answered within this; the target is 100 ms.
PROBE_TIMEOUT = 5.0
TARGET_MS = 100.0


@dataclass
class Row:
    scenario: str
    connections: int
    probes: int = 0
    answered: int = 0
    under_100ms: int = 0
    median_ms: float | None = None
    max_ms: float | None = None
    #: What the attacking connections got back (status line codes, "closed" for a bare close).
    attacker_answers: dict[str, int] = field(default_factory=dict)
    connected: int = 0

    @property
    def withstood(self) -> bool:
        return self.probes > 0 and self.under_100ms == self.probes


def _allocate(server: BenchServer, count: int) -> list[str]:
    paths = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for _ in range(count):
        conn.request("POST", "/files", headers={"Upload-Length": str(1024 * 1024)})
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
        paths.append("/files/" + response.getheader("Location", "").rsplit("/", 1)[1])
    conn.close()
    return paths


class Attack:
    """``count`` connections driven by one thread: each gets its opening bytes, then one byte a
    second; a connection the server closes is opened again (at the next second) when
    ``reconnect`` is set."""

    def __init__(
        self, port: int, count: int, opening: Callable[[int], bytes], *, reconnect: bool,
        persist: bool = False,
    ) -> None:
        self.port = port
        self.count = count
        self.opening = opening
        self.reconnect = reconnect
        #: Keep sending after the server's FIN, until it really closes (a send fails).
        self.persist = persist
        self.answers: Counter[str] = Counter()
        self.connected = 0
        self._selector = selectors.DefaultSelector()
        self._socks: dict[socket.socket, int] = {}
        self._closed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, index: int) -> None:
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(self.opening(index))
        except OSError:
            sock.close()
            self.answers["connect-failed"] += 1
            return
        sock.setblocking(False)
        self._socks[sock] = index
        self._selector.register(sock, selectors.EVENT_READ)
        self.connected += 1

    def _drop(self, sock: socket.socket) -> int:
        index = self._socks.pop(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()
        return index

    def _gone(self, sock: socket.socket) -> None:
        index = self._drop(sock)
        self.answers["closed"] += 1
        if self.reconnect:
            self._closed.append(index)

    def start(self) -> None:
        for index in range(self.count):
            self._open(index)
        self._thread.start()

    def _run(self) -> None:
        next_byte = time.monotonic() + 1
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=max(0.0, min(0.2, next_byte - time.monotonic()))):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    self.answers[data[9:12].decode()] += 1
                if not data and sock in self._socks:
                    if self.persist:  # half-closed by the server: go on sending into it
                        self._selector.unregister(sock)
                    else:
                        self._gone(sock)  # type: ignore[arg-type]
            if time.monotonic() >= next_byte:
                next_byte += 1
                # Closed ones connect again at this pace too: a slow attack, not a flood.
                while self._closed and not self._stop.is_set():
                    self._open(self._closed.pop())
                for sock in list(self._socks):
                    try:
                        sock.send(b"a")
                    except BlockingIOError:
                        pass
                    except OSError:  # closed (reset) by the server
                        self._gone(sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in list(self._socks):
            self._drop(sock)
        self._selector.close()


def _probe(port: int, path: str) -> float | None:
    """Milliseconds for a HEAD on a fresh connection, None when not answered in time."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
        conn.request("HEAD", path)
        response = conn.getresponse()
        response.read()
        conn.close()
    except OSError:
        return None
    if response.status != 200:
        return None
    return (time.monotonic() - started) * 1000


def _wait_idle(server: BenchServer, path: str, timeout: float = 120.0) -> None:
    """Until the server answers probes quickly again (the previous attack's threads are free)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((ms := _probe(server.port, path)) is not None and ms < TARGET_MS for _ in range(3)):
            return
        time.sleep(1)
    print(f"  (server still slow {timeout:.0f} s after the attack)", file=sys.stderr)


def run_scenario(server: BenchServer, scenario: str, count: int, probe_path: str, hold: float) -> Row:
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    if scenario == "slow-head":
        # Never completes: the blank line never comes.
        def opening(index: int) -> bytes:
            return f"HEAD {probe_path} HTTP/1.1\r\n{host}X-Slow: ".encode()

        reconnect = True
    elif scenario == "slow-body":
        paths = _allocate(server, count)
        part = b"Content-Range: bytes 0-1048575/1048576\r\n\r\n"

        def opening(index: int) -> bytes:
            return (
                f"PATCH {paths[index]} HTTP/1.1\r\n{host}Content-Type: message/byterange\r\n"
                f"Content-Length: {len(part) + 1024 * 1024}\r\n\r\n"
            ).encode() + part

        reconnect = False
    else:
        part = b"Content-Range: bytes 0-1048575/*\r\n\r\n"

        def opening(index: int) -> bytes:
            return (
                f"PATCH /files/{'n' * 22} HTTP/1.1\r\n{host}Content-Type: message/byterange\r\n"
                f"Content-Length: {len(part) + 1024 * 1024}\r\n\r\n"
            ).encode() + part

        reconnect = True
    attack = Attack(server.port, count, opening, reconnect=reconnect, persist=scenario == "refused-body")
    row = Row(scenario, count)
    attack.start()
    try:
        time.sleep(2)  # every connection has sent its opening and a byte or two
        times: list[float | None] = []
        end = time.monotonic() + hold
        while time.monotonic() < end:
            started = time.monotonic()
            times.append(_probe(server.port, probe_path))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        attack.stop()
    answered = [ms for ms in times if ms is not None]
    row.probes = len(times)
    row.answered = len(answered)
    row.under_100ms = sum(1 for ms in answered if ms < TARGET_MS)
    if answered:
        row.median_ms = round(statistics.median(answered), 1)
        row.max_ms = round(max(answered), 1)
    row.attacker_answers = dict(attack.answers)
    row.connected = attack.connected
    return row


def guard_seconds(server: BenchServer) -> float:
    """Seconds one 1 byte/s body holds its request before the minimum-rate guard ends it."""
    path = _allocate(server, 1)[0]
    part = b"Content-Range: bytes 0-1048575/1048576\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: message/byterange\r\n"
                f"Content-Length: {len(part) + 1024 * 1024}\r\n\r\n"
            ).encode()
            + part
        )
        started = time.monotonic()
        while time.monotonic() - started < 600:
            with contextlib.suppress(OSError):
                sock.send(b"g")
            try:
                if sock.recv(65536).startswith(b"HTTP/1.1 408"):
                    return time.monotonic() - started
            except TimeoutError:
                continue
    return float("nan")


def _format(row: Row) -> str:
    verdict = "yes" if row.withstood else "NO"
    answers = ", ".join(f"{key} x{value}" for key, value in sorted(row.attacker_answers.items())) or "-"
    return (
        f"| {row.scenario} | {row.connections} | {verdict} | {row.under_100ms}/{row.probes} "
        f"| {row.answered}/{row.probes} | {row.median_ms} | {row.max_ms} | {answers} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slowloris", description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)), help="connections (%(default)s)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="which scenarios (%(default)s)")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds of probing per run (%(default)s)")
    parser.add_argument("--guard", action="store_true", help="also time the guard on one 1 B/s body")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    counts = [int(item) for item in args.counts.split(",")]
    scenarios = [item for item in args.scenarios.split(",") if item]
    rows: list[Row] = []
    results: dict[str, object] = {}
    with gunicorn_server() as server:
        probe_path = _allocate(server, 1)[0]
        print(f"server: gunicorn_conf defaults, pid {server.pid}, workers {len(server.worker_pids())}")
        print("| scenario | connections | withstood | HEAD < 100 ms | HEAD answered | median ms | max ms "
              "| what the attackers got |")
        print("|---|---|---|---|---|---|---|---|")
        for scenario in scenarios:
            for count in counts:
                row = run_scenario(server, scenario, count, probe_path, args.hold)
                rows.append(row)
                print(_format(row), flush=True)
                _wait_idle(server, probe_path)
        if args.guard:
            seconds = guard_seconds(server)
            results["guard_seconds"] = round(seconds, 1)
            print(f"one 1 byte/s body held its thread {seconds:.1f} s before 408 body-too-slow")
    results["rows"] = [asdict(row) | {"withstood": row.withstood} for row in rows]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
