"""Collecting stored bytes that nothing references any more, as recorded in ``storage_gc``.

Every decision that makes bytes garbage records them in its own transaction
(db/ledger/garbage.py): a DELETE or an expiry (all of a resource generation's objects), the
first reservation of a write on an object store (its objects, until its commit claims them), an
assembly (the pieces it replaced, and its own multipart upload until it succeeds). The request
that decided deletes at once what it can; the sweep (expiry.py, under its job lease) collects
the rest, so a crash at any point leaks nothing.

A write's garbage waits for its reservation: while the lease is live nothing of it is touched;
a lapsed one is deleted first, in a transaction under the resource's row lock (its writer's
commit then fails: it checks that its reservations still exist), and its objects are collected
one grace period later, so a store still in flight when the writer died has landed by then.
Correctness never depends on the store's conditional writes: keys are never reused.
"""

from __future__ import annotations

import logging

from ..db.ledger import garbage
from ..db.ledger import reservations
from ..db.ledger import resources
from ..db.ledger import segments
from ..errors import ResourceNotFoundError
from ..errors import StorageError
from .values import WriteContext

__all__ = ["Collector"]

log = logging.getLogger(__name__)


class Collector:
    """Carries out recorded garbage for the service whose context this is."""

    def __init__(self, context: WriteContext) -> None:
        self.context = context

    @property
    def grace(self) -> float:
        """Seconds a stored object may still arrive after its writer lost its reservation."""
        return 2 * self.context.settings.lease_seconds

    def collect_now(self, garbage_ids: list[int], keys: list[str]) -> None:
        """Right after the commit that recorded it: delete the objects of ``keys`` at once. On
        an object store the rows stay for a second pass one grace period later (a write's
        store in flight may land after this); files are done."""
        storage = self.context.storage
        try:
            for key in keys:
                storage.delete(key)
        except StorageError:
            log.warning("could not delete stored bytes now; the sweep will", exc_info=True)
            return
        if not storage.uses_segments:
            with self.context.db.write(durable=False) as conn:
                garbage.drop(conn, garbage_ids)

    def record_removed(self, conn: object, removed: list[tuple[str, str]]) -> list[int]:
        """Record every object of each ``(resource id, storage key)`` as garbage, in the
        transaction that removed those resources."""
        delay = self.grace if self.context.storage.uses_segments else 0.0
        return [
            garbage.record(conn, resource_id, key, garbage.ALL, delay=delay)  # type: ignore[arg-type]
            for resource_id, key in removed
        ]

    def collect_due(self, *, limit: int = 100) -> int:
        """Carry out the garbage that is due; returns how many objects were deleted."""
        db = self.context.db
        storage = self.context.storage
        with db.read() as conn:
            due = garbage.due(conn, limit=limit)
        deleted = 0
        for item in due:
            if item.reservation_id is not None and not self._writer_gone(item):
                continue

            def referenced(keys: list[str], resource_id: str = item.resource_id) -> set[str]:
                with db.read() as conn:
                    return segments.referenced(conn, resource_id, keys)

            try:
                deleted += storage.collect(
                    item.storage_key, item.scope, referenced if item.kind == garbage.UNREFERENCED else None
                )
            except StorageError:
                log.warning("could not collect garbage %d; next sweep", item.id, exc_info=True)
                continue
            with db.write(durable=False) as conn:
                garbage.drop(conn, [item.id])
        return deleted

    def _writer_gone(self, item: garbage.Garbage) -> bool:
        """Whether the write that recorded ``item`` can no longer commit anything; a lapsed
        reservation is ended here (and the garbage waits one more grace period)."""
        assert item.reservation_id is not None
        with self.context.db.write() as conn:
            try:
                resources.load_resource(conn, item.resource_id, for_update=True, expired_ok=True)
            except ResourceNotFoundError:
                pass  # deleted: its reservations went with it
            ids = [item.reservation_id]
            if reservations.live(conn, ids):
                garbage.postpone(conn, item.id, self.context.settings.lease_seconds)
                return False
            if reservations.reservations_alive(conn, ids):  # lapsed, not yet taken over
                reservations.release(conn, ids)
                garbage.postpone(conn, item.id, self.grace)
                return False
        return True
