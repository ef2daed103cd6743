"""The lease keeper: one thread per service renews the leases of streaming writes and tells
them, within a tick, that a DELETE fenced them or a newer IETF append revoked them.

It knows a write only as a :class:`KeptWrite`: the write session (writes.py) is one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from ..config import Settings
from ..db.engine import Database
from ..db.ledger import reservations
from .values import WriteOptions

__all__ = ["REVOCATION_POLL", "KeptWrite", "LeaseKeeper"]

log = logging.getLogger(__name__)

#: How often the lease keeper asks whether its writes were revoked or fenced (see
#: UploadService.end_stale_appends, which waits for them).
REVOCATION_POLL = 0.25


class KeptWrite(Protocol):
    """What the keeper needs of a write (writes.WriteSession)."""

    options: WriteOptions
    #: The reservation polled for all of the write's (None until its first batch is reserved).
    sentinel: str | None
    #: Whether the keeper still looks after it; read and set under ``keeper_lock``.
    kept: bool
    keeper_lock: threading.Lock

    def keep(self, tick: float) -> None:
        """Renew the leases when due (under ``keeper_lock``)."""

    def fence(self) -> None:
        """Its reservations were ended: stop (under ``keeper_lock``)."""

    def revoke(self) -> None:
        """A newer request revoked it: stop reading, commit what arrived (under ``keeper_lock``)."""


class LeaseKeeper:
    """One thread per service renews the leases of the writes whose bodies are streaming, and
    tells each of them, within a tick, that its reservations were ended: by a DELETE of the
    resource (fenced: the write stops and answers 404) or, for an IETF append, by a newer
    request for the upload (revoked: it commits what it has).

    A body read blocks until a whole chunk arrives, so the request thread cannot renew on time
    for a slow client; this thread does, every ``renew_interval``, for each registered write.
    It stops renewing a write once no body chunk has arrived for ``write_idle_seconds``: a
    stalled connection then loses its range after one more lease, and another writer may take
    it over (the stalled request finds out before it writes again, see
    ``WriteSession._write``).

    Every tick it asks the database about all its writes at once: one statement reading the
    first reservation of each (:func:`reservations.reservation_flags`); a write's reservations are
    all deleted with its resource and all revoked together, so the first one tells. A write
    whose reservation is gone is fenced: ``on_stale`` cuts its body, and it writes nothing
    more.

    One thread for all writes, not one per request: registering is a dict insert, and a write
    that ends within a tick is never looked at (starting and joining a thread per request was
    7% of a 64 KiB write's time). The price: a renewal that waits on the database delays the
    others' by as long. That costs liveness, never safety: a write whose lease ran out renews
    before its next storage write, or finds its range taken and stops (``WriteSession._write``),
    and a write the keeper has not yet fenced can only reach the storage object of the resource
    generation it reserved in, never the next one's.
    """

    #: The thread ends after this long with nothing to keep; the next write starts another.
    IDLE_EXIT = 60.0

    def __init__(self, settings: Settings, db: Database) -> None:
        renew_interval = min(settings.lease_seconds / 3, 5.0)
        self.tick = min(renew_interval, REVOCATION_POLL)
        self.db = db
        self._lock = threading.Lock()
        self._sessions: dict[int, KeptWrite] = {}
        self._thread: threading.Thread | None = None

    def add(self, session: KeptWrite) -> None:
        with self._lock:
            self._sessions[id(session)] = session
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="byterange-leases", daemon=True)
                self._thread.start()

    def remove(self, session: KeptWrite) -> None:
        """After this returns the thread does nothing more for ``session`` (it waits for a
        renewal in progress, as a request must not end while its lease is being renewed)."""
        with session.keeper_lock:
            session.kept = False
        with self._lock:
            self._sessions.pop(id(session), None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(self.tick)
            with self._lock:
                sessions = list(self._sessions.values())
                if not sessions:
                    if time.monotonic() - idle_since > self.IDLE_EXIT:
                        self._thread = None
                        return
                    continue
            idle_since = time.monotonic()
            self._poll(sessions)
            for session in sessions:
                with session.keeper_lock:
                    if session.kept:
                        session.keep(self.tick)

    def _poll(self, sessions: list[KeptWrite]) -> None:
        """Fence the writes whose reservations were ended, and stop the revoked appends."""
        watched = {session.sentinel: session for session in sessions if session.sentinel is not None}
        if not watched:
            return
        try:
            with self.db.read() as conn:
                flags = reservations.reservation_flags(conn, list(watched))
        except Exception:  # the next tick asks again; _write and _commit check for themselves
            log.warning("could not poll the reservations of %d writes", len(watched), exc_info=True)
            return
        for reservation_id, session in watched.items():
            revoked = flags.get(reservation_id)
            if revoked is None:
                with session.keeper_lock:
                    if session.kept:
                        session.fence()
            elif revoked and session.options.revocable:
                with session.keeper_lock:
                    if session.kept:
                        session.revoke()
