"""The ``storage_gc`` rows: stored bytes to delete, recorded in the transaction whose decision
made them garbage (a DELETE, an expiry, a write that began, an assembly), and carried out
afterwards by whoever gets to them first: the request itself once it committed, else the sweep
(uploads/garbage.py). A crash between the decision and the deletion leaks nothing.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from .. import clock
from ..models import storage_gc

__all__ = ["Garbage", "drop", "due", "postpone", "record"]

#: Everything under the scope goes.
ALL = "all"
#: What no segment row names goes (a write's pieces it did not commit, replaced pieces).
UNREFERENCED = "unreferenced"


@dataclasses.dataclass(frozen=True)
class Garbage:
    id: int
    resource_id: str
    storage_key: str
    kind: str
    scope: str
    reservation_id: str | None
    not_before_ms: int


def record(
    conn: Connection,
    resource_id: str,
    storage_key: str,
    kind: str,
    *,
    scope: str = "",
    reservation_id: str | None = None,
    delay: float = 0.0,
) -> int:
    """Record garbage due in ``delay`` seconds; returns its id."""
    result = conn.execute(
        insert(storage_gc)
        .values(
            resource_id=resource_id,
            storage_key=storage_key,
            kind=kind,
            scope=scope,
            reservation_id=reservation_id,
            not_before_ms=clock.ms_from_now(delay),
        )
        .returning(storage_gc.c.id)
    )
    return int(result.scalar_one())


def due(conn: Connection, *, limit: int) -> list[Garbage]:
    rows = conn.execute(
        select(storage_gc)
        .where(storage_gc.c.not_before_ms <= clock.NOW_MS)
        .order_by(storage_gc.c.not_before_ms)
        .limit(limit)
    ).all()
    return [Garbage(**row._mapping) for row in rows]


def postpone(conn: Connection, garbage_id: int, delay: float) -> None:
    conn.execute(
        update(storage_gc)
        .where(storage_gc.c.id == garbage_id)
        .values(not_before_ms=clock.ms_from_now(delay))
    )


def drop(conn: Connection, garbage_ids: list[int]) -> None:
    if garbage_ids:
        conn.execute(delete(storage_gc).where(storage_gc.c.id.in_(garbage_ids)))


def drop_for_reservation(conn: Connection, reservation_id: str) -> None:
    """A write committed every piece it stored: its prefix holds no garbage."""
    conn.execute(delete(storage_gc).where(storage_gc.c.reservation_id == reservation_id))
