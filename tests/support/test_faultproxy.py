"""Self-tests of the fault-injecting proxy (:mod:`tests.faultproxy`), with real sockets on loopback."""

from __future__ import annotations

import contextlib
import http.server
import random
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import requests

from . import faultproxy
from .faultproxy import Fault
from .faultproxy import FaultProxy
from .faultproxy import InjectedFault

TIMEOUT = 10.0  # generous: the CI machine has 2 cores and other tests may run alongside


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def proxy_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("faultproxy:")]


class Upstream:
    """A small threaded TCP server on loopback standing in for the real server.

    Each connection is read until EOF (or an error) into ``received[i]``, in accept order; ``ends[i]``
    says how reading ended ("eof" or the exception's name). ``echo`` sends every chunk straight back;
    ``reply`` is sent from a second thread as soon as the connection is accepted. A connection is
    closed once reading has ended and the reply has been sent.
    """

    def __init__(self, *, echo: bool = False, reply: bytes = b"") -> None:
        self.echo = echo
        self.reply = reply
        self.received: list[bytearray] = []
        self.ends: list[str | None] = []
        self.sockets: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # poll _stop: close() does not wake a blocked accept()
        self.port: int = self._listener.getsockname()[1]
        self._start(self._accept_loop)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name="upstream", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            with self._lock:
                index = len(self.sockets)
                self.sockets.append(sock)
                self.received.append(bytearray())
                self.ends.append(None)
                self._open.add(sock)
            self._start(self._serve, index, sock)

    def _send_reply(self, sock: socket.socket) -> None:
        try:
            sock.sendall(self.reply)
        except OSError:
            pass  # the connection was cut under us: that is what the tests do

    def _serve(self, index: int, sock: socket.socket) -> None:
        sender = None
        if self.reply:
            sender = threading.Thread(target=self._send_reply, args=(sock,), name="upstream", daemon=True)
            sender.start()
        end = "eof"
        try:
            while chunk := sock.recv(65536):
                with self._lock:
                    self.received[index] += chunk
                if self.echo:
                    sock.sendall(chunk)
        except OSError as error:
            end = type(error).__name__
        if sender is not None:
            sender.join()
        with self._lock:
            self.ends[index] = end
            self._open.discard(sock)
            sock.close()

    def got(self, index: int) -> bytes:
        with self._lock:
            return bytes(self.received[index]) if index < len(self.received) else b""

    def end(self, index: int) -> str | None:
        with self._lock:
            return self.ends[index] if index < len(self.ends) else None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the reader and sender threads
        for thread in list(self._threads):
            thread.join(TIMEOUT)
        self._listener.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def echo() -> Iterator[Upstream]:
    server = Upstream(echo=True)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_leaked_proxy_threads() -> Iterator[None]:
    yield
    assert proxy_threads() == []


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Read until EOF; a reset propagates as ConnectionResetError."""
    data = bytearray()
    while chunk := sock.recv(1 << 20):
        data += chunk
    return bytes(data)


def exchange(proxy: FaultProxy, payload: bytes) -> tuple[bytes, str]:
    """Send ``payload`` and half-close in a thread while reading the reply: (reply, how it ended)."""

    def send() -> None:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reader sees the failure too

    with connect(proxy) as sock:
        sender = threading.Thread(target=send)
        sender.start()
        data = bytearray()
        try:
            while chunk := sock.recv(1 << 20):
                data += chunk
            end = "eof"
        except OSError as error:
            end = type(error).__name__
        sender.join(TIMEOUT)
    return bytes(data), end


def test_pure_proxy_forwards_both_ways_byte_exactly() -> None:
    rng = random.Random(1)
    upload, download = rng.randbytes(4 << 20), rng.randbytes(3 << 20)
    server = Upstream(reply=download)
    try:
        with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
            got, end = exchange(proxy, upload)
            assert end == "eof"
            assert got == download
            wait_until(lambda: server.end(0) == "eof")
            assert server.got(0) == upload
            stats = proxy.stats
            assert stats.connections == 1 and stats.refused == 0
            assert stats.bytes_from_clients == len(upload)
            assert stats.bytes_to_clients == len(download)
            assert stats.faults == ()
            proxy.reset_stats()
            assert proxy.stats.bytes_from_clients == proxy.stats.connections == 0
    finally:
        server.close()


def test_eof_in_the_last_round_of_a_burst_is_passed_on(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: an EOF read in the last round a pipe may move per wake-up was never passed on."""
    monkeypatch.setattr(faultproxy, "CHUNK", 1_000)  # buffer size and read size of new pipes
    payload = random.Random(5).randbytes(15 * 1_000)  # 15 rounds of data, then the EOF in round 16
    with FaultProxy("127.0.0.1", upstream.port) as proxy:
        with proxy._lock:  # hold the loop back until the payload and its EOF all wait in the kernel
            sock = connect(proxy)
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        with sock:
            assert read_to_end(sock) == b""
        wait_until(lambda: upstream.end(0) == "eof")
        assert upstream.got(0) == payload


def test_sixteen_concurrent_connections(echo: Upstream) -> None:
    payloads = [random.Random(n).randbytes(1 << 20) for n in range(16)]
    results: list[tuple[bytes, str] | None] = [None] * len(payloads)
    with FaultProxy("127.0.0.1", echo.port) as proxy:

        def run(n: int) -> None:
            results[n] = exchange(proxy, payloads[n])

        threads = [threading.Thread(target=run, args=(n,)) for n in range(len(payloads))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 3)
        assert results == [(payload, "eof") for payload in payloads]
        assert proxy.stats.connections == 16
        assert proxy.stats.bytes_from_clients == proxy.stats.bytes_to_clients == 16 << 20


def test_cut_closes_after_exactly_the_scheduled_bytes(upstream: Upstream) -> None:
    payload = random.Random(2).randbytes(10_000)
    with FaultProxy("127.0.0.1", upstream.port) as proxy:
        proxy.schedule(Fault.CUT, after_bytes=4_000)
        with connect(proxy) as sock:
            sock.sendall(payload)
            # A clean FIN; the kernel may turn it into RST because of the 6000 bytes never read.
            try:
                assert read_to_end(sock) == b""
            except ConnectionResetError:
                pass
        wait_until(lambda: upstream.end(0) is not None)
        assert upstream.end(0) == "eof"  # the server side saw a clean close
        assert upstream.got(0) == payload[:4_000]
        assert proxy.stats.faults == (InjectedFault(Fault.CUT, 0, 4_000),)
        assert proxy.stats.bytes_from_clients == 4_000

        # Exactly the cut position sent: nothing unread, so the client sees a plain EOF.
        proxy.schedule(Fault.CUT, after_bytes=500)
        with connect(proxy) as sock:
            sock.sendall(payload[:500])
            assert read_to_end(sock) == b""
        wait_until(lambda: upstream.end(1) == "eof")
        assert upstream.got(1) == payload[:500]

        # The queue is consumed: the next connection is forwarded cleanly.
        assert exchange(proxy, payload) == (b"", "eof")
        wait_until(lambda: upstream.end(2) == "eof")
        assert upstream.got(2) == payload


def test_faults_can_count_server_to_client_bytes() -> None:
    """``to_clients``: a response is cut after exactly ``position`` bytes reached the client."""
    reply = random.Random(5).randbytes(50_000)
    server = Upstream(reply=reply)
    try:
        with FaultProxy("127.0.0.1", server.port, to_clients=True) as proxy:
            proxy.schedule(Fault.CUT, after_bytes=12_345)
            with connect(proxy) as sock:
                sock.sendall(b"request")
                try:
                    got = read_to_end(sock)
                except ConnectionResetError:  # pragma: no cover - a FIN is expected, RST tolerated
                    got = None
            assert got is None or got == reply[:12_345]
            assert proxy.stats.faults == (InjectedFault(Fault.CUT, 0, 12_345),)
            assert proxy.stats.bytes_to_clients == 12_345
    finally:
        server.close()


def test_reset_sends_rst_to_both_peers(upstream: Upstream) -> None:
    payload = random.Random(3).randbytes(10_000)
    with FaultProxy("127.0.0.1", upstream.port) as proxy:
        proxy.schedule(Fault.RESET, after_bytes=5_000)
        with connect(proxy) as sock:
            sock.sendall(payload)
            with pytest.raises(ConnectionResetError):
                read_to_end(sock)
        wait_until(lambda: upstream.end(0) is not None)
        assert upstream.end(0) == "ConnectionResetError"
        assert len(upstream.got(0)) <= 5_000 and payload.startswith(upstream.got(0))
        assert proxy.stats.faults == (InjectedFault(Fault.RESET, 0, 5_000),)
        assert proxy.stats.bytes_from_clients == 5_000


def test_reset_at_byte_zero(upstream: Upstream) -> None:
    with FaultProxy("127.0.0.1", upstream.port) as proxy:
        proxy.schedule(Fault.RESET, after_bytes=0)
        with pytest.raises(ConnectionResetError):  # may even hit connect(): the RST is that fast
            with connect(proxy) as sock:
                sock.recv(10)
        assert proxy.stats.faults == (InjectedFault(Fault.RESET, 0, 0),)


def test_stall_forwards_nothing_then_closes(upstream: Upstream) -> None:
    payload = random.Random(4).randbytes(3_000)
    stall = 1.5
    with FaultProxy("127.0.0.1", upstream.port, stall_seconds=stall) as proxy:
        proxy.schedule(Fault.STALL, after_bytes=1_000)
        with connect(proxy) as sock:
            stalled_at = time.monotonic()
            sock.sendall(payload)
            wait_until(lambda: upstream.got(0) == payload[:1_000])
            assert proxy.stats.faults == (InjectedFault(Fault.STALL, 0, 1_000),)
            upstream.sockets[0].sendall(b"late reply")  # must not reach the client
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            assert upstream.got(0) == payload[:1_000]
            sock.settimeout(TIMEOUT)
            try:
                assert read_to_end(sock) == b""
            except ConnectionResetError:
                pass  # the bytes the proxy never read turn the close into a reset
            assert time.monotonic() - stalled_at >= stall - 0.1
        wait_until(lambda: upstream.end(0) is not None)
        assert upstream.got(0) == payload[:1_000]


def random_traffic(seed: int, connections: int = 12) -> tuple[list[InjectedFault], int]:
    """Sequential connections of 8000 bytes each through a fresh seeded proxy: (faults, remaining)."""
    server = Upstream()
    try:
        proxy = FaultProxy(
            "127.0.0.1",
            server.port,
            seed=seed,
            faults=3,
            kinds=(Fault.CUT, Fault.RESET),
            cut_after=(100, 12_000),  # some positions lie beyond the traffic: those never fire
            fault_probability=0.6,
        )
        with proxy:
            for _ in range(connections):
                exchange(proxy, bytes(8_000))
            return list(proxy.stats.faults), proxy.faults_remaining
    finally:
        server.close()


def test_random_faults_are_reproducible_and_respect_the_budget() -> None:
    first, remaining = random_traffic(seed=8)
    assert random_traffic(seed=8) == (first, remaining)
    assert len(first) == 3 and remaining == 0  # the budget, all used (for this seed)
    assert {fault.kind for fault in first} == {Fault.CUT, Fault.RESET}
    assert all(fault.kind in (Fault.CUT, Fault.RESET) and 100 <= fault.position <= 8_000 for fault in first)
    assert [fault.connection for fault in first] == sorted({fault.connection for fault in first})
    assert random_traffic(seed=7)[0] != first


def test_set_down_cuts_live_and_new_connections(echo: Upstream) -> None:
    with FaultProxy("127.0.0.1", echo.port) as proxy:
        live = connect(proxy)
        try:
            live.sendall(b"ping")
            assert live.recv(10) == b"ping"
            proxy.set_down(True)
            with pytest.raises(ConnectionResetError):
                live.recv(10)
        finally:
            live.close()

        with pytest.raises((ConnectionResetError, ConnectionRefusedError)):
            with connect(proxy) as sock:
                sock.sendall(b"ping")
                read_to_end(sock)
        assert proxy.stats.refused == 1

        proxy.set_down(False)
        assert exchange(proxy, b"back up") == (b"back up", "eof")
        assert proxy.stats.connections == 3 and proxy.stats.refused == 1


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = str(len(self.rfile.read(length))).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


def test_http_through_the_proxy() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="http-upstream", daemon=True)
    thread.start()
    try:
        with FaultProxy("127.0.0.1", server.server_address[1]) as proxy, requests.Session() as session:
            response = session.get(proxy.url_for("/hello"), timeout=TIMEOUT)
            assert (response.status_code, response.content) == (200, b"hello /hello")
            body = bytes(1 << 20)
            response = session.put(proxy.url_for("/upload"), data=body, timeout=TIMEOUT)
            assert (response.status_code, response.content) == (201, str(len(body)).encode())
            assert proxy.stats.bytes_from_clients > len(body)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_close_ends_live_connections_and_threads(echo: Upstream) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port, stall_seconds=60)
    proxy.schedule(Fault.STALL, after_bytes=10)
    stalled, idle = connect(proxy), connect(proxy)
    try:
        stalled.sendall(bytes(100))
        idle.sendall(b"ping")
        assert idle.recv(10) == b"ping"
        wait_until(lambda: len(proxy.stats.faults) == 1)
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 3.0  # loose: only a wake-up and a join
        assert proxy_threads() == []
        assert read_to_end(idle) == b""
        proxy.close()  # idempotent
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=TIMEOUT).close()
    finally:
        stalled.close()
        idle.close()


RATE = 2_000_000  # bytes per second and direction


def burst(rate: float) -> float:
    """The token bucket capacity the proxy documents for ``rate``."""
    return max(64 * 1024, rate / 20)


def moved(proxy: FaultProxy, direction: str) -> int:
    stats = proxy.stats
    return stats.bytes_to_clients if direction == "download" else stats.bytes_from_clients


def run_exchange(proxy: FaultProxy, payload: bytes) -> tuple[threading.Thread, list[tuple[bytes, str]]]:
    result: list[tuple[bytes, str]] = []
    thread = threading.Thread(target=lambda: result.append(exchange(proxy, payload)), name="exchange")
    thread.start()
    return thread, result


def watch_limit(
    proxy: FaultProxy, direction: str, rate: float, since: float, thread: threading.Thread
) -> None:
    """Until ``thread`` ends: never more than burst + rate * elapsed bytes have moved, at any moment."""
    while thread.is_alive():
        count = moved(proxy, direction)
        assert count <= burst(rate) + rate * (time.monotonic() - since) + 1
        # One event-loop thread per proxy, none per connection or for the limiter.
        assert [thread.name for thread in proxy_threads()] == [f"faultproxy:{proxy.port}"]
        time.sleep(0.01)


@pytest.mark.parametrize("direction", ["upload", "download", "echo"])
def test_rate_limit_paces_each_direction(direction: str) -> None:
    payload = random.Random(10).randbytes(1 << 20)
    server = Upstream(reply=payload if direction == "download" else b"", echo=direction == "echo")
    try:
        started = time.monotonic()
        with FaultProxy("127.0.0.1", server.port, rate_limit=RATE) as proxy:
            assert proxy.rate_limit == RATE
            thread, result = run_exchange(proxy, b"" if direction == "download" else payload)
            watch_limit(proxy, "upload" if direction == "upload" else "download", RATE, started, thread)
            thread.join(TIMEOUT)
            elapsed = time.monotonic() - started
            assert result == [(b"" if direction == "upload" else payload, "eof")]
            wait_until(lambda: server.end(0) == "eof")
            assert server.got(0) == (b"" if direction == "download" else payload)
            stats = proxy.stats
            assert stats.bytes_from_clients == (0 if direction == "download" else len(payload))
            assert stats.bytes_to_clients == (0 if direction == "upload" else len(payload))
        # At least (1 MiB - burst) / rate = 0.47 s by construction; loose above: a busy 2-core machine.
        assert 0.4 <= elapsed <= 1.5
    finally:
        server.close()


def test_rate_limit_is_aggregate_over_connections(upstream: Upstream) -> None:
    payloads = [random.Random(20 + n).randbytes(256 * 1024) for n in range(4)]
    started = time.monotonic()
    with FaultProxy("127.0.0.1", upstream.port, rate_limit=RATE) as proxy:
        runs = [run_exchange(proxy, payload) for payload in payloads]
        for thread, _ in runs:
            watch_limit(proxy, "upload", RATE, started, thread)
            thread.join(TIMEOUT)
        elapsed = time.monotonic() - started
        assert [result for _, result in runs] == [[(b"", "eof")]] * 4
        assert proxy.stats.bytes_from_clients == 1 << 20
    assert 0.4 <= elapsed <= 1.5  # 4 x 256 KiB share one bucket: like 1 MiB on one connection
    wait_until(lambda: all(upstream.end(n) == "eof" for n in range(4)))
    assert sorted(upstream.got(n) for n in range(4)) == sorted(payloads)


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_set_rate_limit_applies_and_lifts_mid_transfer(direction: str) -> None:
    rate = 500_000
    payload = random.Random(11).randbytes(8 << 20)  # 16 s at `rate`
    server = Upstream(reply=payload if direction == "download" else b"")
    try:
        with FaultProxy("127.0.0.1", server.port) as proxy:
            assert proxy.rate_limit is None
            limited_at = time.monotonic()
            proxy.set_rate_limit(rate)  # from unlimited: applied before it returns
            assert proxy.rate_limit == rate
            thread, result = run_exchange(proxy, b"" if direction == "download" else payload)
            wait_until(lambda: moved(proxy, direction) >= 200_000)
            count = moved(proxy, direction)
            assert count <= burst(rate) + rate * (time.monotonic() - limited_at) + 1
            proxy.set_rate_limit(None)
            lifted_at = time.monotonic()
            thread.join(TIMEOUT)
            assert not thread.is_alive()
            assert time.monotonic() - lifted_at < 3.0  # loose; the limit would need another 15 s
            assert result == [(payload if direction == "download" else b"", "eof")]
            assert moved(proxy, direction) == len(payload)
            wait_until(lambda: server.end(0) == "eof")
            assert server.got(0) == (b"" if direction == "download" else payload)
    finally:
        server.close()


def test_fault_fires_at_its_exact_position_under_a_rate_limit(upstream: Upstream) -> None:
    rate, position = 200_000, 150_001  # the fault lies past the initial burst, in throttled reads
    payload = random.Random(12).randbytes(300_000)
    started = time.monotonic()
    with FaultProxy("127.0.0.1", upstream.port, rate_limit=rate) as proxy:
        proxy.schedule(Fault.CUT, after_bytes=position)
        thread, result = run_exchange(proxy, payload)
        watch_limit(proxy, "upload", rate, started, thread)
        thread.join(TIMEOUT)
        assert result[0][0] == b"" and result[0][1] in ("eof", "ConnectionResetError")
        elapsed = time.monotonic() - started
        wait_until(lambda: upstream.end(0) is not None)
        assert upstream.end(0) == "eof"
        assert upstream.got(0) == payload[:position]
        assert proxy.stats.faults == (InjectedFault(Fault.CUT, 0, position),)
        assert proxy.stats.bytes_from_clients == position
    assert elapsed >= (position - burst(rate)) / rate


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "fast"])
def test_rate_limit_rejects_invalid_values(upstream: Upstream, bad: object) -> None:
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", upstream.port, rate_limit=bad)  # type: ignore[arg-type]
    with FaultProxy("127.0.0.1", upstream.port, rate_limit=1_000) as proxy:
        with pytest.raises(ValueError):
            proxy.set_rate_limit(bad)  # type: ignore[arg-type]
        assert proxy.rate_limit == 1_000
