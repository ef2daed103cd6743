"""Graceful shutdown: a process-wide draining state and the in-flight writes it can cut short.

Without this, a gunicorn worker told to stop (SIGTERM from the master on stop or reload) waits up
to ``graceful_timeout`` for its requests, then is SIGKILLed: a large upload still streaming then
commits nothing, because a write commits only when its body ends. Instead:

1. the worker's SIGTERM handler calls :meth:`Drain.begin` (the gunicorn hooks below install it):
   the process is *draining*. New requests that still reach it (on kept-alive connections) are
   refused with 503 + ``Retry-After``, and ``/healthz`` answers 503 (see ``api/shutdown.py``);
2. in-flight writes keep streaming for ``shutdown_grace`` seconds, so those about to finish do;
3. then every write still registered here is *cut*: its body reader stops at the next chunk and
   the connection's read side is shut down (waking a ``recv`` blocked on a slow client), exactly
   as a revoked IETF append is ended. The write session sees an interrupted body and applies its
   usual rule: under ``persist`` the received prefix of every part is ``fdatasync``-ed and
   committed, under ``atomic`` (or with a digest to verify) nothing is. The API layer answers
   503 with ``Retry-After`` and the state headers, so the client resumes elsewhere at once.

SIGINT and SIGQUIT (gunicorn's fast shutdown) cut at once, without the grace.

This module knows neither Flask nor gunicorn beyond the duck-typed ``worker`` of the hooks; the
HTTP side lives in ``api/shutdown.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from ..config import Settings

__all__ = ["DRAIN", "Drain", "InFlightWrite", "grace_for", "on_worker_init", "on_worker_int"]

log = logging.getLogger(__name__)


class InFlightWrite:
    """One registered write: how to cut it, and whether the shutdown did."""

    def __init__(self, cut: Callable[[], None]) -> None:
        self._cut = cut
        self._done = threading.Lock()
        #: Set (before the body is cut) once the shutdown ended this write.
        self.cut_by_shutdown = False

    def cut(self) -> None:
        """End the write's body now; safe from any thread, and to repeat."""
        if not self._done.acquire(blocking=False):
            return
        self.cut_by_shutdown = True
        try:
            self._cut()
        except Exception:  # the write then ends at its next chunk, or at graceful_timeout
            log.exception("could not cut an in-flight write")


class Drain:
    """Whether this process is draining, and the writes in flight in it.

    One instance per process (:data:`DRAIN`): a worker drains as a whole. Its methods may be called
    from a signal handler (in the main thread), so the lock is reentrant and nothing here blocks
    on I/O other than the cut callables themselves (a flag and a ``shutdown(2)``).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._writes: dict[int, InFlightWrite] = {}
        self._ids = itertools.count()
        self._draining = threading.Event()
        self._cutting = False
        #: monotonic time at which the writes are cut; None until draining.
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._timer: threading.Thread | None = None

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    @property
    def cutting(self) -> bool:
        """True once the grace is over: in-flight writes have been (or are being) cut."""
        return self._cutting

    def in_flight(self) -> int:
        with self._lock:
            return len(self._writes)

    def begin(self, grace: float) -> None:
        """Start draining; cut every in-flight write after ``grace`` seconds (at once if <= 0).

        Idempotent: a later call can only bring the cut forward (SIGQUIT after SIGTERM).
        """
        grace = max(0.0, grace)
        with self._lock:
            self._draining.set()
            deadline = time.monotonic() + grace
            if self._deadline is not None and self._deadline <= deadline:
                return
            self._deadline = deadline
            if grace == 0:
                cut_now = True
            else:
                cut_now = False
                if self._timer is None:
                    self._timer = threading.Thread(target=self._wait_then_cut, name="byterange-drain",
                                                   daemon=True)
                    self._timer.start()
                else:
                    self._wake.set()
        if cut_now:
            self.cut_all()
        log.info("draining: in-flight writes (%d) are cut in %.1f s", self.in_flight(), grace)

    def _wait_then_cut(self) -> None:
        while True:
            with self._lock:
                deadline = self._deadline
                self._wake.clear()
            if deadline is None:
                return  # reset() (tests)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(left)
        self.cut_all()

    def cut_all(self) -> int:
        """Cut every in-flight write (and any registered later); returns how many were cut."""
        with self._lock:
            self._cutting = True
            writes = list(self._writes.values())
        for write in writes:
            write.cut()
        if writes:
            log.info("draining: cut %d in-flight write(s); each commits what it received", len(writes))
        return len(writes)

    @contextlib.contextmanager
    def tracking(self, cut: Callable[[], None]) -> Iterator[InFlightWrite]:
        """Register a write for the length of the block; ``cut`` ends its body."""
        write = InFlightWrite(cut)
        key = next(self._ids)
        with self._lock:
            self._writes[key] = write
            late = self._cutting
        if late:  # started after the cut: it gets no grace either
            write.cut()
        try:
            yield write
        finally:
            with self._lock:
                self._writes.pop(key, None)

    def reset(self) -> None:
        """Back to serving (tests; a process never leaves draining otherwise)."""
        with self._lock:
            self._draining.clear()
            self._cutting = False
            self._deadline = None
            self._wake.set()
            self._timer = None


#: The drain state of this process.
DRAIN = Drain()


# -- gunicorn hooks (called from gunicorn_conf.py) -----------------------------------------------


def grace_for(setting: float, graceful_timeout: float) -> float:
    """The grace actually used: at most half of gunicorn's ``graceful_timeout``, so the other half
    is left to commit the cut writes and answer them before the master SIGKILLs the worker."""
    return max(0.0, min(setting, graceful_timeout / 2))


def _settings_of(worker: Any) -> Any:
    settings = getattr(getattr(worker, "wsgi", None), "config", {}).get("BYTERANGE_SETTINGS")
    if settings is None:
        settings = Settings.from_env()
    return settings


def on_worker_init(worker: Any) -> None:
    """``post_worker_init``: make the worker's SIGTERM start draining, then stop as gunicorn does.

    gunicorn installed its own handler before this hook runs; it is kept and called after ours.
    """
    settings = _settings_of(worker)
    graceful_timeout = float(worker.cfg.graceful_timeout)
    grace = grace_for(settings.shutdown_grace, graceful_timeout)
    if grace < settings.shutdown_grace:
        worker.log.warning(
            "BYTERANGE_SHUTDOWN_GRACE=%s is more than half of graceful_timeout (%s s): using %s s",
            settings.shutdown_grace, graceful_timeout, grace,
        )
    previous = signal.getsignal(signal.SIGTERM)

    def handle_term(signum: int, frame: Any) -> None:
        DRAIN.begin(grace)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle_term)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn: do not disturb active requests


def on_worker_int(worker: Any) -> None:
    """``worker_int`` (SIGINT, SIGQUIT: the fast shutdown): cut every in-flight write at once.

    The worker then exits after its threads end, which for a cut write is as soon as it has
    committed its prefix and answered.
    """
    DRAIN.begin(0)
