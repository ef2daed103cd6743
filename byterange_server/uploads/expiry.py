"""The periodic expiry sweep: one worker at a time removes expired incomplete resources.

Every worker process runs a :class:`ExpirySweeper` thread, but a sweep only runs in the process
that holds the ``expiry`` row of ``job_leases``: taking it is one compare-and-set ``UPDATE``
(free, expired, or already ours), so on SQLite and PostgreSQL alike exactly one holder wins, and
a holder that dies frees it when its lease runs out (three intervals). The sweep itself
(:meth:`UploadService.remove_expired`) is safe against writers racing it whoever runs it: under
the resource's row lock it skips a resource that has a live writer or completed meanwhile, and
removes rows before bytes. The lease only keeps several workers and hosts from doing the same
work at once.

Each sweep then collects the stored bytes recorded as garbage (garbage.py) and, on an object
store, assembles completed resources (assembly.py).

``byterange-server cleanup`` runs one sweep by hand (from cron, say), without the lease.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading

from ..db.ledger import jobs
from .service import UploadService

__all__ = ["JOB_NAME", "ExpirySweeper"]

log = logging.getLogger(__name__)

JOB_NAME = "expiry"


class ExpirySweeper:
    """Sweeps every ``interval`` seconds while this process holds the job lease."""

    def __init__(self, service: UploadService, interval: float, *, holder: str | None = None) -> None:
        self.service = service
        self.interval = interval
        self.holder = holder or f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int | None:
        """One sweep if the lease is ours: the number removed, or None when another holds it."""
        with self.service.db.write() as conn:
            if not jobs.take_lease(conn, JOB_NAME, self.holder, seconds=self.interval * 3):
                return None
        removed = self.service.remove_expired()
        if removed:
            log.info("expiry sweep removed %d expired upload(s)", removed)
        # Stored bytes: what was recorded as garbage (garbage.py), and on an object store the
        # assembly of completed resources (assembly.py).
        collected = self.service.collect_garbage()
        if collected:
            log.info("expiry sweep deleted %d stored object(s)", collected)
        self.service.assemble_pending()
        return removed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="byterange-expiry", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        # The first sweep waits one interval: a worker that just started (or a test app) sweeps
        # nothing on its way up.
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the thread; the next tick retries
                log.exception("the expiry sweep failed")
