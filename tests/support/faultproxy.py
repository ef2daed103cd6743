"""A fault-injecting TCP proxy for end-to-end tests of the upload/download client.

Point the client at :class:`FaultProxy` instead of the server; the proxy forwards every
connection to the real server and, on some connections, breaks it on purpose::

    with FaultProxy("127.0.0.1", server_port, seed=3, faults=5, cut_after=(0, 4 * MiB)) as proxy:
        client.upload(proxy.url_for("/files/x"), data)
        assert proxy.stats.faults  # the client survived these

Theory of operation
-------------------
One thread runs a ``selectors`` event loop over non-blocking sockets: the listening socket, both
sockets of every live connection, and a wake-up socket pair that other threads use to hand over
commands (``set_down``, ``set_rate_limit``, ``close``). Because only that thread ever touches a
connection's sockets, a fault can close them at any moment without racing a thread blocked in
``recv`` or ``send`` -- which is what makes a true RST (``SO_LINGER`` 0, no FIN first) and a
prompt ``close()`` possible.

Each direction of a connection is a :class:`_Pipe` with its own reused 256 KiB buffer. Bytes are
``recv_into`` the buffer and sent on at once; when the destination cannot take them all, the rest
stays in the buffer and the source is not read again until it is drained (back-pressure, so a
slow peer slows the other one down instead of growing memory). An EOF is passed on as a
half-close (``shutdown(SHUT_WR)``); the connection is closed once both directions are done.

Faults act on one direction, client->server by default (``to_clients=True`` for server->client,
to cut downloads mid-response): a connection armed with ``(kind, position)`` never reads more
than ``position`` bytes from that direction's source, and the fault fires as soon as exactly
``position`` bytes have been handed on. So the receiver has seen exactly the first ``position``
bytes, whatever the chunking. A connection that ends before reaching its position
is simply forwarded; its fault does not fire.

Bandwidth limit (``rate_limit``, :meth:`FaultProxy.set_rate_limit`): one token bucket per
direction, shared by all connections, refilled at the rate and holding at most
max(64 KiB, rate/20) bytes (the burst). A ``recv_into`` is capped to the whole tokens available
(as well as to a fault position), so the bytes read from a direction's sources never exceed
burst + rate * elapsed, at any moment. When a bucket runs dry its direction is *starved*: its
sources lose read interest and the select timeout wakes the loop when ~5 ms worth of tokens
(at least one byte) have accrued again. Only reading is throttled; writes, back-pressure, fault
positions and byte counting work exactly as without a limit. The connection that emptied a bucket
moves to the back of the line for re-arming read interest, so concurrent connections take turns.

* :attr:`Fault.CUT`: both sockets are closed normally (FIN), as a server calling ``close()``
  would. Like a real server, the kernel answers with RST if the client had sent bytes past the
  cut that were never read, so a client may see EOF or a reset.
* :attr:`Fault.RESET`: both sockets are closed with ``SO_LINGER (1, 0)``: both peers get RST.
* :attr:`Fault.STALL`: nothing more is read or written in either direction; the sockets stay
  open for ``stall_seconds`` (the client normally times out first), then are closed.

Which connections get a fault: first the FIFO queue filled by :meth:`FaultProxy.schedule`, one
entry per connection; otherwise a random draw with probability ``fault_probability``, kind from
``kinds`` and position uniform in ``cut_after`` (inclusive). Every forwarded connection consumes
the same three draws from ``random.Random(seed)``, so the n-th forwarded connection's random
fault depends only on the seed and n. Random faults are limited by the lifetime budget
``faults``, checked when a fault is about to fire (an armed fault over budget is dropped and the
connection forwarded cleanly); scheduled faults do not count against it. Sequential traffic
therefore always meets the same faults; concurrent connections are accepted in whatever order
the kernel delivers them.

:meth:`FaultProxy.set_down` simulates pulling the cable: live connections are reset and new ones
are accepted and reset at once until ``set_down(False)``.

Byte counting (:attr:`FaultProxy.stats`): ``bytes_from_clients`` counts bytes read from client
sockets, when read -- including those of a connection that was then faulted (with the cap above,
exactly the fault position for a faulted connection). ``bytes_to_clients`` counts bytes the
client sockets accepted. Bytes a client wrote that the proxy never read (past a fault) are not
counted.

The upstream is connected with a blocking ``connect`` (bounded by ``connect_timeout``) from the
loop thread, which is instant for the loopback servers this proxy is meant for.
"""

from __future__ import annotations

import collections
import enum
import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Fault", "FaultProxy", "InjectedFault", "ProxyStats"]

CHUNK = 256 * 1024
#: Smallest token bucket capacity (burst) under a rate limit; larger rates get rate/20.
_MIN_BURST = 64 * 1024
#: A starved direction resumes once this many seconds' worth of tokens (at least 1 byte) accrued.
_RESUME_SECONDS = 0.005
#: Chunks one direction may move per wake-up before the loop serves other connections.
_BURST = 16
_LINGER_RESET = struct.pack("ii", 1, 0)
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class Fault(enum.Enum):
    CUT = "cut"
    RESET = "reset"
    STALL = "stall"


@dataclass(frozen=True)
class InjectedFault:
    """A fault that fired: ``position`` client bytes of connection ``connection`` reached the server."""

    kind: Fault
    #: Lifetime index of the connection, in accept order from 0 (not reset by ``reset_stats``).
    connection: int
    position: int


@dataclass(frozen=True)
class ProxyStats:
    #: Connections accepted (including ``refused`` ones).
    connections: int
    #: Connections accepted and reset at once because the network was down.
    refused: int
    #: Client->server bytes read from client sockets.
    bytes_from_clients: int
    #: Server->client bytes written to client sockets.
    bytes_to_clients: int
    faults: tuple[InjectedFault, ...]


class _Armed(NamedTuple):
    kind: Fault
    position: int
    scheduled: bool


class _Pipe:
    """One direction of a connection: bytes read from ``src`` wait in ``buf[start:end]`` for ``dst``."""

    __slots__ = ("src", "dst", "buf", "start", "end", "received", "sent", "eof", "shut")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.buf = memoryview(bytearray(CHUNK))
        self.start = 0
        self.end = 0
        self.received = 0
        self.sent = 0
        self.eof = False  # src said EOF
        self.shut = False  # ... and that EOF has been passed on to dst

    @property
    def pending(self) -> bool:
        return self.start < self.end

    @property
    def readable(self) -> bool:
        return not self.eof and not self.pending


class _Bucket:
    """Token bucket of one direction, shared by all connections; owned by the loop thread.

    ``rate`` None means unlimited. ``starved`` is set when fewer than one token is left and cleared
    only by :meth:`try_resume` (or :meth:`set_rate`) once ``resume`` tokens have accrued, so that the
    loop re-arms read interest of every connection then; while set, nothing may be read.
    """

    __slots__ = ("rate", "capacity", "resume", "tokens", "updated", "starved")

    def __init__(self, rate: float | None, now: float) -> None:
        self.rate: float | None = None
        self.capacity = self.resume = self.tokens = 0.0
        self.updated = now
        self.starved = False
        self.set_rate(rate, now)

    def set_rate(self, rate: float | None, now: float) -> None:
        self.refill(now)
        was_limited = self.rate is not None
        self.rate = rate
        if rate is None:
            self.starved = False
            return
        self.capacity = max(float(_MIN_BURST), rate / 20)
        self.resume = min(self.capacity, max(1.0, rate * _RESUME_SECONDS))
        # Coming from unlimited, start with a full bucket; otherwise keep (at most a burst of) the tokens.
        self.tokens = min(self.tokens, self.capacity) if was_limited else self.capacity
        self.starved = self.tokens < 1 or (self.starved and self.tokens < self.resume)

    def refill(self, now: float) -> None:
        if self.rate is not None:
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    def try_resume(self, now: float) -> bool:
        """Refill a starved bucket; True if that ended the starvation."""
        if not self.starved:
            return False
        self.refill(now)
        self.starved = self.tokens < self.resume
        return not self.starved

    def allowance(self) -> int:
        """How many bytes may be read now (call :meth:`refill` first)."""
        if self.rate is None:
            return CHUNK
        return 0 if self.starved else int(self.tokens)

    def take(self, amount: int) -> None:
        if self.rate is not None:
            self.tokens -= amount
            if self.tokens < 1:
                self.starved = True

    def wait(self, now: float) -> float | None:
        """Seconds until a starved bucket resumes; None if it is not starved."""
        if not self.starved or self.rate is None:
            return None
        return max(0.0, self.updated + (self.resume - self.tokens) / self.rate - now)


def _check_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
        raise ValueError("rate limit must be a positive finite number of bytes per second, or None")
    return float(rate)


class _Conn:
    __slots__ = ("index", "client", "upstream", "c2s", "s2c", "fault", "events", "stall_until", "closed")

    def __init__(self, index: int, client: socket.socket, upstream: socket.socket, fault: _Armed | None):
        self.index = index
        self.client = client
        self.upstream = upstream
        self.c2s = _Pipe(client, upstream)
        self.s2c = _Pipe(upstream, client)
        self.fault = fault
        self.events = {client: 0, upstream: 0}  # what each socket is registered for; 0 = not registered
        self.stall_until: float | None = None
        self.closed = False


def _reset_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already dead; close() below still releases it
    sock.close()


class FaultProxy:
    """TCP proxy on ``127.0.0.1:<free port>`` to ``upstream_host:upstream_port`` that injects faults.

    ``faults``: lifetime budget of random faults (0 = a pure proxy, apart from :meth:`schedule`).
    ``kinds``: kinds to draw from (by default CUT and RESET: each STALL costs the client a timeout).
    ``cut_after``: inclusive range of byte positions on a connection where a random fault fires,
    counted client->server, or server->client with ``to_clients``. ``fault_probability``: chance
    that a connection is armed with a random fault.
    ``stall_seconds``: how long a :attr:`Fault.STALL` holds the sockets. ``connect_timeout``: for
    the upstream connect. ``rate_limit``: bytes per second in each direction, aggregate over all
    connections (None = unlimited); see :meth:`set_rate_limit`. See the module docstring for the
    exact semantics.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        seed: int = 0,
        faults: int = 0,
        kinds: tuple[Fault, ...] = (Fault.CUT, Fault.RESET),
        cut_after: tuple[int, int] = (0, 1 << 20),
        fault_probability: float = 0.5,
        stall_seconds: float = 30.0,
        connect_timeout: float = 5.0,
        rate_limit: float | None = None,
        to_clients: bool = False,
    ) -> None:
        if faults < 0:
            raise ValueError("faults must be >= 0")
        if not 0 <= cut_after[0] <= cut_after[1]:
            raise ValueError("cut_after must be (lo, hi) with 0 <= lo <= hi")
        if not 0.0 <= fault_probability <= 1.0:
            raise ValueError("fault_probability must be within [0, 1]")
        if not kinds or not all(isinstance(kind, Fault) for kind in kinds):
            raise ValueError("kinds must be a non-empty tuple of Fault")
        rate_limit = _check_rate(rate_limit)
        self._upstream = (upstream_host, upstream_port)
        # Which direction's byte count positions a fault: client->server, or server->client.
        self._faulted_direction_is_c2s = not to_clients
        self._kinds = tuple(kinds)
        self._cut_after = cut_after
        self._probability = fault_probability
        self._stall_seconds = stall_seconds
        self._connect_timeout = connect_timeout
        self._budget = faults
        self._rng = random.Random(seed)

        # Shared with other threads; guarded by _lock.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._scheduled: collections.deque[_Armed] = collections.deque()
        self._fired_random = 0
        self._next_index = 0
        self._connections = 0
        self._refused = 0
        self._from_clients = 0
        self._to_clients = 0
        self._faults: list[InjectedFault] = []
        self._down = False
        self._down_generation = 0
        self._down_applied = 0
        self._rate = rate_limit
        self._rate_generation = 0
        self._rate_applied = 0
        self._stopping = False
        self._dead = False
        self._error: BaseException | None = None

        # Owned by the loop thread once it runs.
        self._conns: dict[int, _Conn] = {}
        self._stalled: set[_Conn] = set()
        now = time.monotonic()
        self._c2s_bucket = _Bucket(rate_limit, now)
        self._s2c_bucket = _Bucket(rate_limit, now)
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(128)
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.setblocking(False)
            self._selector.register(self._listener, _READ)
            self._selector.register(self._wake_r, _READ)
            self.address: tuple[str, int] = self._listener.getsockname()
            self._thread = threading.Thread(target=self._run, name=f"faultproxy:{self.port}", daemon=True)
            self._thread.start()
        except BaseException:
            self._release_sockets()
            raise

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        return self.address[1]

    def url_for(self, path: str = "/") -> str:
        """``http://127.0.0.1:<port><path>``."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        return f"http://127.0.0.1:{self.port}{path}"

    def schedule(self, kind: Fault, after_bytes: int) -> None:
        """Arm ``kind`` at client->server byte ``after_bytes`` for the next forwarded connection.

        Calls queue up (FIFO, one per connection) ahead of the random draw and bypass the budget.
        """
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        with self._lock:
            self._scheduled.append(_Armed(kind, after_bytes, scheduled=True))

    def set_down(self, down: bool) -> None:
        """Pull (True) or plug back (False) the network cable; returns once the loop has applied it."""
        with self._lock:
            self._down = down
            self._down_generation += 1
            generation = self._down_generation
        self._wake()
        with self._changed:
            self._changed.wait_for(lambda: self._down_applied >= generation or self._dead, timeout=10.0)

    def set_rate_limit(self, bytes_per_second: float | None) -> None:
        """Limit each direction to ``bytes_per_second`` (aggregate over all connections; None = unlimited).

        Thread-safe; returns once the loop has applied it. Lifting the limit lets a starved direction
        go on at once; from unlimited, the limit starts with a full burst of tokens.
        """
        rate = _check_rate(bytes_per_second)
        with self._lock:
            self._rate = rate
            self._rate_generation += 1
            generation = self._rate_generation
        self._wake()
        with self._changed:
            self._changed.wait_for(lambda: self._rate_applied >= generation or self._dead, timeout=10.0)

    @property
    def rate_limit(self) -> float | None:
        """The current limit in bytes per second per direction (None = unlimited)."""
        with self._lock:
            return self._rate

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                connections=self._connections,
                refused=self._refused,
                bytes_from_clients=self._from_clients,
                bytes_to_clients=self._to_clients,
                faults=tuple(self._faults),
            )

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded faults (the fault budget and the RNG go on)."""
        with self._lock:
            self._connections = self._refused = self._from_clients = self._to_clients = 0
            self._faults.clear()

    @property
    def faults_remaining(self) -> int:
        """How many random faults the budget still allows."""
        with self._lock:
            return self._budget - self._fired_random

    def close(self) -> None:
        """Stop accepting, close every live connection and join the loop thread. Idempotent."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise RuntimeError("fault proxy loop failed") from error

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self._upstream[0]}:{self._upstream[1]}>"

    # ------------------------------------------------------------------ loop thread

    def _wake(self) -> None:
        with self._lock:
            if self._dead:
                return
            try:
                self._wake_w.send(b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                for key, mask in self._selector.select(self._select_timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        while True:
                            try:
                                if not self._wake_r.recv(4096):
                                    break
                            except BlockingIOError:
                                break
                    else:
                        self._on_event(key.data, key.fileobj, mask)
                self._apply_down()
                self._apply_rate()
                self._refill_buckets()
                self._expire_stalls()
        except BaseException as error:  # surfaced by close(), so a broken loop fails the test
            with self._lock:
                self._error = error
        finally:
            for conn in list(self._conns.values()):
                self._close_conn(conn, reset=False)
            with self._changed:
                self._dead = True
                self._release_sockets()
                self._changed.notify_all()

    def _release_sockets(self) -> None:
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _select_timeout(self) -> float | None:
        now = time.monotonic()
        waits = [max(0.0, (conn.stall_until or 0.0) - now) for conn in self._stalled]
        for bucket in (self._c2s_bucket, self._s2c_bucket):
            wait = bucket.wait(now)
            if wait is not None:
                waits.append(wait)
        return min(waits) if waits else None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError:
                return  # e.g. EMFILE; level-triggered select brings us back
            fault: _Armed | None = None
            with self._lock:
                index = self._next_index
                self._next_index += 1
                self._connections += 1
                down = self._down
                if down:
                    self._refused += 1
                else:
                    fault = self._draw_fault()
            if down:
                _reset_close(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=self._connect_timeout)
            except OSError:
                _reset_close(client)  # what the client would see from a dead server: a reset
                continue
            conn = _Conn(index, client, upstream, fault)
            for sock in (client, upstream):
                sock.setblocking(False)
                # Forward small writes (HTTP heads) at once; Nagle + delayed ACK adds 40 ms stalls.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns[index] = conn
            if fault is not None and fault.position == 0 and self._fire(conn):
                continue
            self._update_interest(conn)

    def _draw_fault(self) -> _Armed | None:
        """Called with _lock held, once per forwarded connection, in accept order."""
        # Always draw all three so that a connection's random fault depends only on (seed, n).
        roll = self._rng.random()
        kind = self._kinds[self._rng.randrange(len(self._kinds))]
        position = self._rng.randint(*self._cut_after)
        if self._scheduled:
            return self._scheduled.popleft()
        if self._budget and roll < self._probability:
            return _Armed(kind, position, scheduled=False)
        return None

    def _fire(self, conn: _Conn) -> bool:
        """Inject the connection's fault; False if the budget dropped it and forwarding goes on."""
        armed = conn.fault
        assert armed is not None
        conn.fault = None
        with self._lock:
            if not armed.scheduled:
                if self._fired_random >= self._budget:
                    return False
                self._fired_random += 1
            pipe = conn.c2s if self._faulted_direction_is_c2s else conn.s2c
            self._faults.append(InjectedFault(armed.kind, conn.index, pipe.sent))
        if armed.kind is Fault.CUT:
            self._close_conn(conn, reset=False)
        elif armed.kind is Fault.RESET:
            self._close_conn(conn, reset=True)
        else:
            for sock in (conn.client, conn.upstream):
                self._set_events(conn, sock, 0)
            conn.stall_until = time.monotonic() + self._stall_seconds
            self._stalled.add(conn)
        return True

    def _on_event(self, conn: _Conn, sock: socket.socket, mask: int) -> None:
        if conn.closed or conn.stall_until is not None:
            return  # an earlier event of this batch finished it
        try:
            for pipe in (conn.c2s, conn.s2c):
                if (mask & _READ and pipe.src is sock) or (mask & _WRITE and pipe.dst is sock):
                    if not self._pump(conn, pipe):
                        return
        except OSError:
            # One side failed (reset, broken pipe): pass it on to the other side as a reset.
            self._close_conn(conn, reset=True)
            return
        if conn.c2s.shut and conn.s2c.shut:
            self._close_conn(conn, reset=False)
        else:
            self._update_interest(conn)

    def _pump(self, conn: _Conn, pipe: _Pipe) -> bool:
        """Move bytes along one direction until a socket would block; False once a fault took over."""
        to_server = pipe is conn.c2s
        faulted = to_server == self._faulted_direction_is_c2s
        bucket = self._c2s_bucket if to_server else self._s2c_bucket
        for _ in range(_BURST):
            if pipe.pending:
                try:
                    sent = pipe.dst.send(pipe.buf[pipe.start : pipe.end])
                except BlockingIOError:
                    return True
                pipe.start += sent
                pipe.sent += sent
                if not to_server:
                    with self._lock:
                        self._to_clients += sent
                if pipe.pending:
                    return True  # dst is full; resume when it is writable
                pipe.start = pipe.end = 0
            if faulted and conn.fault is not None and pipe.sent >= conn.fault.position:
                if self._fire(conn):
                    return False
            if pipe.eof:
                return True  # and already passed on, below
            room = len(pipe.buf)
            if faulted and conn.fault is not None:
                # Never read past the fault position, so the peer gets exactly `position` bytes.
                room = min(room, conn.fault.position - pipe.received)
            bucket.refill(time.monotonic())
            room = min(room, bucket.allowance())
            if room <= 0:
                return True  # starved: _update_interest drops read interest until the bucket refills
            try:
                received = pipe.src.recv_into(pipe.buf[:room])
            except BlockingIOError:
                return True
            if received == 0:
                # Pass the EOF on at once: deferring it to the next round would lose it after the last one.
                pipe.eof = True
                pipe.dst.shutdown(socket.SHUT_WR)
                pipe.shut = True
                return True
            pipe.end = received
            pipe.received += received
            bucket.take(received)
            if bucket.starved:
                # To the back of the line: _refresh_interest re-arms the others first, so they go first.
                self._conns[conn.index] = self._conns.pop(conn.index)
            if to_server:
                with self._lock:
                    self._from_clients += received
        return True

    def _update_interest(self, conn: _Conn) -> None:
        c2s, s2c = conn.c2s, conn.s2c
        read_c2s = c2s.readable and not self._c2s_bucket.starved
        read_s2c = s2c.readable and not self._s2c_bucket.starved
        self._set_events(conn, conn.client, (_READ if read_c2s else 0) | (_WRITE if s2c.pending else 0))
        self._set_events(conn, conn.upstream, (_READ if read_s2c else 0) | (_WRITE if c2s.pending else 0))

    def _refresh_interest(self) -> None:
        """Re-derive every live, unstalled connection's interest (after a bucket changed state)."""
        for conn in list(self._conns.values()):
            if not conn.closed and conn.stall_until is None:
                self._update_interest(conn)

    def _set_events(self, conn: _Conn, sock: socket.socket, events: int) -> None:
        old = conn.events[sock]
        if events == old:
            return
        if not old:
            self._selector.register(sock, events, conn)
        elif not events:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, events, conn)
        conn.events[sock] = events

    def _close_conn(self, conn: _Conn, *, reset: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        for sock in (conn.client, conn.upstream):
            self._set_events(conn, sock, 0)
            if reset:
                _reset_close(sock)
            else:
                sock.close()
        self._conns.pop(conn.index, None)
        self._stalled.discard(conn)

    def _apply_down(self) -> None:
        with self._lock:
            down, generation = self._down, self._down_generation
            if generation == self._down_applied:
                return
        if down:
            for conn in list(self._conns.values()):
                self._close_conn(conn, reset=True)
        with self._changed:
            self._down_applied = generation
            self._changed.notify_all()

    def _apply_rate(self) -> None:
        with self._lock:
            rate, generation = self._rate, self._rate_generation
            if generation == self._rate_applied:
                return
        now = time.monotonic()
        for bucket in (self._c2s_bucket, self._s2c_bucket):
            bucket.set_rate(rate, now)
        self._refresh_interest()
        with self._changed:
            self._rate_applied = generation
            self._changed.notify_all()

    def _refill_buckets(self) -> None:
        now = time.monotonic()
        resumed = [bucket.try_resume(now) for bucket in (self._c2s_bucket, self._s2c_bucket)]
        if any(resumed):
            self._refresh_interest()

    def _expire_stalls(self) -> None:
        now = time.monotonic()
        for conn in [conn for conn in self._stalled if (conn.stall_until or 0.0) <= now]:
            self._close_conn(conn, reset=False)
