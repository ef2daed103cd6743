"""The ``reservations`` and ``write_slots`` rows: what live writers hold, each under a lease.

A reservation is the range one request is writing right now; a write slot counts the request
against the concurrency limits. Both mean nothing after a crash (they are written with
``Database.write(durable=False)``) and free themselves when their lease runs out. Deleting a
resource deletes its reservations, which is how its live writers are fenced (the lease keeper
finds them gone); a newer IETF append marks them revoked instead (the writer commits what it has).
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Iterable
from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from ...errors import TooManyWritesError
from ...errors import WriteInProgressError
from ...extents import Extent
from ...extents import normalize
from .. import clock
from ..models import reservations
from ..models import write_slots
from .extents import batch_bound

# Built once, values bound per execution (see resources.py).
# "Now" is the database's (clock.NOW_MS), read in the statement that decides: ``left_ms`` is what
# remains of a lease, <= 0 once it ran out, whatever the clock of the host asking.
_LEFT_MS = (reservations.c.lease_expires_ms - clock.NOW_MS).label("left_ms")
_OVERLAPPING_RESERVATIONS = select(reservations.c.id, _LEFT_MS).where(
    reservations.c.resource_id == bindparam("id"),
    reservations.c.start < bindparam("stop"),
    reservations.c.stop > bindparam("start"),
)
_RESERVATIONS_MEETING = (
    select(reservations.c.id, reservations.c.start, reservations.c.stop, _LEFT_MS)
    .where(
        reservations.c.resource_id == bindparam("id"),
        reservations.c.start < bindparam("stop"),
        reservations.c.stop > bindparam("start"),
    )
    .order_by(reservations.c.start)
)
_RESERVATIONS_MEETING_AT_MOST = _RESERVATIONS_MEETING.limit(bindparam("limit"))
_INSERT_RESERVATION = insert(reservations).values(lease_expires_ms=clock.NOW_MS + bindparam("lease_ms"))
_RESERVATION_FLAGS = select(reservations.c.id, reservations.c.revoked).where(
    reservations.c.id.in_(bindparam("ids", expanding=True))
)
_RESERVATIONS_IN = select(reservations.c.id).where(reservations.c.id.in_(bindparam("ids", expanding=True)))
_DELETE_RESERVATIONS = delete(reservations).where(reservations.c.id.in_(bindparam("ids", expanding=True)))
_DELETE_DEAD_SLOTS = delete(write_slots).where(
    write_slots.c.resource_id == bindparam("id"), write_slots.c.lease_expires_ms <= clock.NOW_MS
)
#: (all, live) write slots of a resource.
_SLOTS_OF_RESOURCE = (
    select(
        func.count(),
        func.coalesce(func.sum(case((write_slots.c.lease_expires_ms > clock.NOW_MS, 1), else_=0)), 0),
    )
    .select_from(write_slots)
    .where(write_slots.c.resource_id == bindparam("id"))
)
_INSERT_SLOT = insert(write_slots).values(lease_expires_ms=clock.NOW_MS + bindparam("lease_ms"))
_DELETE_SLOT = delete(write_slots).where(write_slots.c.id == bindparam("slot"))


def reserve(
    conn: Connection,
    resource_id: str,
    start: int,
    stop: int,
    *,
    lease_seconds: float,
    revocable: bool = False,
) -> str:
    """Insert a reservation for ``[start, stop)``; the caller holds the resource row lock.

    ``revocable``: a newer request for the resource may end this writer (:func:`revoke_writes`).

    :raises WriteInProgressError: (409, ``Retry-After``) if a live reservation overlaps.
    """
    overlapping = conn.execute(
        _OVERLAPPING_RESERVATIONS, {"id": resource_id, "start": start, "stop": stop}
    ).all()
    expired = [row.id for row in overlapping if row.left_ms <= 0]
    live = [row.left_ms for row in overlapping if row.left_ms > 0]
    if live:
        raise _conflict(start, stop, live)
    if expired:
        conn.execute(_DELETE_RESERVATIONS, {"ids": expired})
    reservation_id = secrets.token_hex(16)
    conn.execute(
        _INSERT_RESERVATION,
        {
            "id": reservation_id,
            "resource_id": resource_id,
            "start": start,
            "stop": stop,
            "lease_ms": int(lease_seconds * 1000),
            "revocable": revocable,
        },
    )
    return reservation_id


def _conflict(start: int, stop: int, left_ms: Iterable[int]) -> WriteInProgressError:
    wait_s = -(-min(left_ms) // 1000)
    # A live writer usually finishes well before its lease ends, and a dead one frees the
    # range when it does: suggest the remaining lease, but never more than 5 s.
    return WriteInProgressError(
        "Another request is writing bytes in this range right now.",
        extra={"first": start, "last": stop - 1},
        headers={"Retry-After": str(max(1, min(5, wait_s)))},
    )


def reserve_many(
    conn: Connection,
    resource_id: str,
    ranges: Sequence[tuple[int, int]],
    *,
    lease_seconds: float,
    revocable: bool = False,
) -> list[str]:
    """:func:`reserve` for each of ``ranges`` (in request order), in one transaction and a few
    statements whatever their number: one read of the reservations over their span (per range
    when that span is crowded), one delete of the lapsed ones they meet, one multi-row insert.
    The caller holds the resource row lock.

    All or none: the first range (in order) that meets a live reservation, or an earlier range
    of this batch, raises, and the caller's transaction rolls back the batch.

    :raises WriteInProgressError: (409, ``Retry-After``) as :func:`reserve`.
    """
    if not ranges:
        return []
    lease_ms = int(lease_seconds * 1000)
    low = min(start for start, _ in ranges)
    high = max(stop for _, stop in ranges)
    bound = batch_bound(len(ranges))
    rows = conn.execute(
        _RESERVATIONS_MEETING_AT_MOST, {"id": resource_id, "start": low, "stop": high, "limit": bound + 1}
    ).all()
    if len(rows) > bound:
        found = {}
        for start, stop in ranges:
            for row in conn.execute(_RESERVATIONS_MEETING, {"id": resource_id, "start": start, "stop": stop}):
                found[row.id] = row
        rows = sorted(found.values(), key=lambda row: row.start)
    # Rows sorted by start; ``reach[k]`` is the furthest stop among rows[0..k], so the rows
    # meeting [start, stop) are found walking back from the last one starting before ``stop``
    # until none further back can reach past ``start`` (whether or not the rows overlap).
    row_starts = [row.start for row in rows]
    reach: list[int] = []
    for row in rows:
        reach.append(max(row.stop, reach[-1]) if reach else row.stop)
    expired: set[str] = set()
    ours_starts: list[int] = []
    ours_stops: list[int] = []
    for start, stop in ranges:
        live_left = []
        k = bisect.bisect_left(row_starts, stop) - 1
        while k >= 0 and reach[k] > start:
            row = rows[k]
            if row.stop > start:
                if row.left_ms > 0:
                    live_left.append(row.left_ms)
                else:
                    expired.add(row.id)
            k -= 1
        # Earlier ranges of this batch are live reservations too; they never overlap each
        # other (or this raised already), so only the neighbours of ``start`` can meet it.
        index = bisect.bisect_left(ours_starts, start)
        meets_next = index < len(ours_starts) and ours_starts[index] < stop
        if meets_next or (index and ours_stops[index - 1] > start):
            live_left.append(lease_ms)
        if live_left:
            raise _conflict(start, stop, live_left)
        ours_starts.insert(index, start)
        ours_stops.insert(index, stop)
    if expired:
        conn.execute(_DELETE_RESERVATIONS, {"ids": sorted(expired)})
    ids = [secrets.token_hex(16) for _ in ranges]
    conn.execute(
        _INSERT_RESERVATION,
        [
            {
                "id": reservation_id,
                "resource_id": resource_id,
                "start": start,
                "stop": stop,
                "lease_ms": lease_ms,
                "revocable": revocable,
            }
            for reservation_id, (start, stop) in zip(ids, ranges, strict=True)
        ],
    )
    return ids


def reservation_flags(conn: Connection, reservation_ids: Sequence[str]) -> dict[str, bool]:
    """``{id: revoked}`` for those of ``reservation_ids`` that still exist: one statement for
    every write a process keeps (an id missing from the answer was ended: its resource was
    deleted, or its lapsed lease was taken over)."""
    if not reservation_ids:
        return {}
    rows = conn.execute(_RESERVATION_FLAGS, {"ids": list(reservation_ids)}).all()
    return {row.id: bool(row.revoked) for row in rows}


def end_reservations(conn: Connection, resource_id: str) -> None:
    """Delete every reservation of a resource: its live writers find theirs gone and stop (the
    lease keepers look every tick) without writing or committing anything more."""
    conn.execute(delete(reservations).where(reservations.c.resource_id == resource_id))


def revoke_writes(conn: Connection, resource_id: str) -> list[str]:
    """Ask the live revocable writers of a resource to stop; returns their reservation ids.

    The caller holds the resource row lock. Nothing is taken over here: each writer commits
    the prefix it has and releases its reservation itself, or its lease lapses (it no longer
    renews), so no byte is ever written under a reservation that another request now holds.
    """
    rows = conn.execute(
        select(reservations.c.id).where(
            reservations.c.resource_id == resource_id,
            reservations.c.revocable.is_(True),
            reservations.c.lease_expires_ms > clock.NOW_MS,
        )
    ).all()
    ids = [row.id for row in rows]
    if ids:
        conn.execute(update(reservations).where(reservations.c.id.in_(ids)).values(revoked=True))
    return ids


def any_revoked(conn: Connection, reservation_ids: Sequence[str]) -> bool:
    if not reservation_ids:
        return False
    row = conn.execute(
        select(reservations.c.id)
        .where(reservations.c.id.in_(list(reservation_ids)), reservations.c.revoked.is_(True))
        .limit(1)
    ).first()
    return row is not None


def live(conn: Connection, reservation_ids: Sequence[str]) -> list[str]:
    """Those of ``reservation_ids`` that are still there with a lease that has not run out."""
    if not reservation_ids:
        return []
    rows = conn.execute(
        select(reservations.c.id).where(
            reservations.c.id.in_(list(reservation_ids)), reservations.c.lease_expires_ms > clock.NOW_MS
        )
    ).all()
    return [row.id for row in rows]


def in_flight(conn: Connection, resource_id: str, *, after: int = 0, limit: int = 1000) -> list[Extent]:
    """The ranges live writers of a resource hold now (their leases have not run out), merged,
    in order, ending after ``after``: a picture of the upload (the extent map), not a basis for
    decisions -- a reservation may end the moment after. At most ``limit`` reservations are read
    (``max_writes_per_resource`` bounds them anyway)."""
    rows = conn.execute(
        select(reservations.c.start, reservations.c.stop)
        .where(
            reservations.c.resource_id == resource_id,
            reservations.c.stop > after,
            reservations.c.lease_expires_ms > clock.NOW_MS,
        )
        .order_by(reservations.c.start)
        .limit(limit)
    ).all()
    return normalize((row.start, row.stop) for row in rows)


def renew(conn: Connection, reservation_ids: Sequence[str], *, lease_seconds: float) -> bool:
    """Extend the leases; False if any of them no longer exists (deleted or taken over) or
    was revoked (a revoked writer must let its lease run out, never extend it)."""
    if not reservation_ids:
        return True
    result = conn.execute(
        update(reservations)
        .where(reservations.c.id.in_(list(reservation_ids)), reservations.c.revoked.is_(False))
        .values(lease_expires_ms=clock.ms_from_now(lease_seconds))
    )
    return result.rowcount == len(reservation_ids)


def reservations_alive(conn: Connection, reservation_ids: Sequence[str]) -> bool:
    if not reservation_ids:
        return True
    count = conn.execute(_RESERVATIONS_IN, {"ids": list(reservation_ids)}).all()
    return len(count) == len(reservation_ids)


def release_alive(conn: Connection, reservation_ids: Sequence[str]) -> bool:
    """Release the reservations; whether every one of them was still there (what
    :func:`reservations_alive` tells, in the same statement). The caller rolls back when not."""
    if not reservation_ids:
        return True
    result = conn.execute(_DELETE_RESERVATIONS, {"ids": list(reservation_ids)})
    return result.rowcount == len(reservation_ids)


def release(conn: Connection, reservation_ids: Iterable[str]) -> None:
    ids = list(reservation_ids)
    if ids:
        conn.execute(_DELETE_RESERVATIONS, {"ids": ids})


def has_live_writers(conn: Connection, resource_id: str) -> bool:
    """Whether a write request holds an unexpired reservation or write slot on the resource."""
    for table in (reservations, write_slots):
        found = conn.execute(
            select(table.c.id)
            .where(table.c.resource_id == resource_id, table.c.lease_expires_ms > clock.NOW_MS)
            .limit(1)
        ).first()
        if found is not None:
            return True
    return False


def take_write_slot(
    conn: Connection,
    resource_id: str,
    principal: str | None,
    *,
    lease_seconds: float,
    max_per_resource: int,
    max_per_principal: int,
) -> str:
    """Count the live writes and take a slot; the caller holds the resource row lock (which
    serialises the per-resource count; the per-principal one takes a lock of its own).

    :raises TooManyWritesError: (429, Retry-After) a limit is reached.
    """
    if max_per_resource:
        # One statement counts both: the slots of writers that died are deleted only when
        # there are some (a DELETE on every write found none almost always).
        total, live = conn.execute(_SLOTS_OF_RESOURCE, {"id": resource_id}).one()
        if total > live:
            conn.execute(_DELETE_DEAD_SLOTS, {"id": resource_id})
        if live >= max_per_resource:
            raise TooManyWritesError(
                "Too many writes to this resource are in flight; send this one again shortly.",
                extra={"max-writes-per-resource": max_per_resource},
                headers={"Retry-After": "1"},
            )
    else:
        conn.execute(_DELETE_DEAD_SLOTS, {"id": resource_id})
    if principal is not None and max_per_principal:
        if conn.dialect.name == "postgresql":
            # Writers of one principal on different resources hold different row locks.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:principal))"), {"principal": principal})
        live = _count_live(conn, write_slots.c.principal == principal)
        if live >= max_per_principal:
            raise TooManyWritesError(
                "Too many of your writes are in flight; send this one again shortly.",
                extra={"max-writes-per-principal": max_per_principal},
                headers={"Retry-After": "1"},
            )
    slot_id = secrets.token_hex(16)
    conn.execute(
        _INSERT_SLOT,
        {
            "id": slot_id,
            "resource_id": resource_id,
            "principal": principal,
            "lease_ms": int(lease_seconds * 1000),
        },
    )
    return slot_id


def _count_live(conn: Connection, condition: object) -> int:
    return conn.execute(
        select(func.count())
        .select_from(write_slots)
        .where(condition, write_slots.c.lease_expires_ms > clock.NOW_MS)
    ).scalar_one()


def renew_write_slot(conn: Connection, slot_id: str | None, *, lease_seconds: float) -> None:
    if slot_id is not None:
        conn.execute(
            update(write_slots)
            .where(write_slots.c.id == slot_id)
            .values(lease_expires_ms=clock.ms_from_now(lease_seconds))
        )


def release_write_slot(conn: Connection, slot_id: str | None) -> None:
    if slot_id is not None:
        conn.execute(_DELETE_SLOT, {"slot": slot_id})


def delete_dead_write_slots(conn: Connection) -> None:
    """Slots whose writer died (the sweep tidies them; counts ignore them anyway)."""
    conn.execute(delete(write_slots).where(write_slots.c.lease_expires_ms <= clock.NOW_MS))
