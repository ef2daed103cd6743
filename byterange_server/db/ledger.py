"""The extent ledger: every SQL statement about resources, extents and reservations.

Theory of operation
-------------------
A write goes through three short transactions and never holds one while bytes stream:

1. **reserve** — lock the resource row, refuse if a *live* reservation overlaps the range
   (409 + ``Retry-After``), drop expired ones, insert ours with a lease, and read the committed
   extents inside the range (the writer compares those bytes instead of writing them).
2. **renew** — while streaming, push the lease forward; finding the reservation gone means the
   resource was deleted or the lease was lost, and the writer stops.
3. **commit** — after the storage ``sync()``: lock the resource row, check the reservations are
   still ours, fix the length, merge the new extents (coalescing with neighbours), drop the
   reservations.

On PostgreSQL the row lock is ``SELECT … FOR UPDATE``; on SQLite the write transaction starts
with ``BEGIN IMMEDIATE`` (see :mod:`byterange_server.db.engine`), which serialises writers the same way.
Readers (HEAD, GET) take no lock: extents are only ever added in one committed step.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import secrets
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import Insert

from ..errors import LengthConflictError
from ..errors import ResourceExistsError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..errors import TooManyWritesError
from ..errors import WriteInProgressError
from ..extents import Extent
from ..extents import normalize
from ..storage.composed import Piece
from .models import OPEN_RESOURCES
from .models import STATUS_COMPLETE
from .models import STATUS_FAILED
from .models import STATUS_INCOMPLETE
from .models import concat_sources
from .models import extents
from .models import job_leases
from .models import reservations
from .models import resources
from .models import write_slots

# Statements of the write path, built once: building a statement each call (expression objects,
# then its cache key) cost more CPU than running it on SQLite. Values are bound per execution.
_RESOURCE_BY_ID = select(resources).where(resources.c.id == bindparam("id"))
_RESOURCE_BY_ID_FOR_UPDATE = _RESOURCE_BY_ID.with_for_update()
_EXTENTS_FROM = (
    select(extents.c.start, extents.c.stop)
    .where(extents.c.resource_id == bindparam("id"))
    .order_by(extents.c.start)
    .limit(bindparam("limit"))
)
_FIRST_STOP_AFTER = (
    select(extents.c.start)
    .where(extents.c.resource_id == bindparam("id"), extents.c.stop > bindparam("at"))
    .order_by(extents.c.stop)
    .limit(1)
)
_FIRST_STOP_FROM = (
    select(extents.c.start)
    .where(extents.c.resource_id == bindparam("id"), extents.c.stop >= bindparam("at"))
    .order_by(extents.c.stop)
    .limit(1)
)
_EXTENTS_STARTING_BELOW = (
    select(extents.c.start, extents.c.stop)
    .where(
        extents.c.resource_id == bindparam("id"),
        extents.c.start >= bindparam("first"),
        extents.c.start < bindparam("stop"),
    )
    .order_by(extents.c.start)
)
_EXTENTS_STARTING_UP_TO = (
    select(extents.c.start, extents.c.stop)
    .where(
        extents.c.resource_id == bindparam("id"),
        extents.c.start >= bindparam("first"),
        extents.c.start <= bindparam("stop"),
    )
    .order_by(extents.c.start)
)
_PREFIX_STOP = select(extents.c.stop).where(
    extents.c.resource_id == bindparam("id"), extents.c.start == 0
)
_DELETE_EXTENTS_AT = delete(extents).where(
    extents.c.resource_id == bindparam("id"), extents.c.start.in_(bindparam("starts", expanding=True))
)
_INSERT_EXTENT = insert(extents)
_EXTENTS_STARTING_BELOW_AT_MOST = _EXTENTS_STARTING_BELOW.limit(bindparam("limit"))
_OVERLAPPING_RESERVATIONS = select(reservations.c.id, reservations.c.lease_expires_ms).where(
    reservations.c.resource_id == bindparam("id"),
    reservations.c.start < bindparam("stop"),
    reservations.c.stop > bindparam("start"),
)
_RESERVATIONS_MEETING = (
    select(reservations.c.id, reservations.c.start, reservations.c.stop, reservations.c.lease_expires_ms)
    .where(
        reservations.c.resource_id == bindparam("id"),
        reservations.c.start < bindparam("stop"),
        reservations.c.stop > bindparam("start"),
    )
    .order_by(reservations.c.start)
)
_RESERVATIONS_MEETING_AT_MOST = _RESERVATIONS_MEETING.limit(bindparam("limit"))
_INSERT_RESERVATION = insert(reservations)
_RESERVATION_FLAGS = select(reservations.c.id, reservations.c.revoked).where(
    reservations.c.id.in_(bindparam("ids", expanding=True))
)
_RESERVATIONS_IN = select(reservations.c.id).where(reservations.c.id.in_(bindparam("ids", expanding=True)))
_DELETE_RESERVATIONS = delete(reservations).where(reservations.c.id.in_(bindparam("ids", expanding=True)))
_DELETE_DEAD_SLOTS = delete(write_slots).where(
    write_slots.c.resource_id == bindparam("id"), write_slots.c.lease_expires_ms <= bindparam("now")
)
_INSERT_SLOT = insert(write_slots)
_DELETE_SLOT = delete(write_slots).where(write_slots.c.id == bindparam("slot"))
_TOUCH = update(resources).where(resources.c.id == bindparam("rid")).values(updated_at=bindparam("at"))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


@dataclasses.dataclass(frozen=True)
class ResourceRecord:
    """One row of ``resources``, plus (when loaded with them) the first committed extents."""

    id: str
    length: int | None
    status: str
    content_type: str | None
    filename: str | None
    expected_digest_algorithm: str | None
    expected_digest: bytes | None
    sha256: bytes | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    completed_at: dt.datetime | None
    #: tus ``Upload-Metadata`` as the client sent it (validated), None when absent.
    upload_metadata: str | None = None
    #: tus concatenation role: ``"partial"``, ``"final"`` or None.
    concat: str | None = None
    #: Set once a partial that a final still reads from was terminated (gone for clients).
    terminated_at: dt.datetime | None = None
    #: The principal that created it; None when created without authentication.
    owner: str | None = None
    #: The ``storage_key`` column: None for rows that store their bytes under their id.
    storage_key: str | None = None

    @property
    def object_key(self) -> str:
        """The storage key of this generation's bytes (see storage/base.py)."""
        return self.storage_key or self.id

    @property
    def is_complete(self) -> bool:
        return self.status != STATUS_INCOMPLETE

    @property
    def is_failed(self) -> bool:
        return self.status == STATUS_FAILED

    def is_expired(self, now: dt.datetime) -> bool:
        return (
            self.status == STATUS_INCOMPLETE
            and self.expires_at is not None
            and self.expires_at <= now
        )


@dataclasses.dataclass(frozen=True)
class ResourceSnapshot:
    """A resource and its first committed extents (see :func:`load_snapshot`)."""

    resource: ResourceRecord
    extents: list[Extent]
    #: True when the resource has more extents than were read.
    truncated: bool


def _record(row: object) -> ResourceRecord:
    mapping = row._mapping  # type: ignore[attr-defined]
    return ResourceRecord(
        id=mapping["id"],
        length=mapping["length"],
        status=mapping["status"],
        content_type=mapping["content_type"],
        filename=mapping["filename"],
        expected_digest_algorithm=mapping["expected_digest_algorithm"],
        expected_digest=mapping["expected_digest"],
        sha256=mapping["sha256"],
        created_at=_aware(mapping["created_at"]),  # type: ignore[arg-type]
        updated_at=_aware(mapping["updated_at"]),  # type: ignore[arg-type]
        expires_at=_aware(mapping["expires_at"]),
        completed_at=_aware(mapping["completed_at"]),
        upload_metadata=mapping["upload_metadata"],
        concat=mapping["concat"],
        terminated_at=_aware(mapping["terminated_at"]),
        owner=mapping["owner"],
        storage_key=mapping["storage_key"],
    )


# -- allocation and lookup -----------------------------------------------------------------------


def insert_resource(
    conn: Connection,
    resource_id: str,
    *,
    length: int | None,
    content_type: str | None,
    filename: str | None,
    expected_digest: tuple[str, bytes] | None,
    expires_at: dt.datetime | None,
    upload_metadata: str | None = None,
    concat: str | None = None,
    owner: str | None = None,
    storage_key: str | None = None,
) -> None:
    """Insert the row; ``storage_key`` names the object already created for it (None: the id).

    :raises ResourceExistsError: a row with this id exists (a replayed signed creation URL:
        two replays can both pass an earlier check, the unique id decides).
    """
    now = utcnow()
    result = conn.execute(
        _insert_if_new(conn).values(
            id=resource_id,
            length=length,
            status=STATUS_INCOMPLETE,
            content_type=content_type,
            filename=filename,
            expected_digest_algorithm=expected_digest[0] if expected_digest else None,
            expected_digest=expected_digest[1] if expected_digest else None,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            upload_metadata=upload_metadata,
            concat=concat,
            owner=owner,
            storage_key=storage_key,
        )
    )
    if result.rowcount != 1:
        raise ResourceExistsError(extra={"resource": resource_id})


def _insert_if_new(conn: Connection) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` where the dialect has it: a taken id is then a
    row count of 0, not an error that aborts the transaction (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        statement = postgresql_insert(resources).on_conflict_do_nothing(index_elements=["id"])
    elif conn.dialect.name == "sqlite":
        statement = sqlite_insert(resources).on_conflict_do_nothing(index_elements=["id"])
    else:
        statement = insert(resources)
    # SQLAlchemy keeps an INSERT's row count only when asked.
    return statement.execution_options(preserve_rowcount=True)


def resource_row_exists(conn: Connection, resource_id: str) -> bool:
    """Whether a row has this id, terminated or expired ones included (an id taken)."""
    return conn.execute(select(resources.c.id).where(resources.c.id == resource_id)).first() is not None


def object_keys(conn: Connection, resource_ids: Iterable[str]) -> dict[str, str]:
    """The storage key of each existing resource of ``resource_ids`` (terminated ones too)."""
    ids = list(set(resource_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(resources.c.id, resources.c.storage_key).where(resources.c.id.in_(ids))
    ).all()
    return {row.id: row.storage_key or row.id for row in rows}


def load_resource(
    conn: Connection, resource_id: str, *, for_update: bool = False, expired_ok: bool = False
) -> ResourceRecord:
    """:raises ResourceNotFoundError: (404); :raises ResourceGoneError: (410) once expired,
    unless ``expired_ok`` (the expiry sweep, and a write that began before the expiry)."""
    query = _RESOURCE_BY_ID_FOR_UPDATE if for_update else _RESOURCE_BY_ID
    row = conn.execute(query, {"id": resource_id}).first()
    if row is None or row.terminated_at is not None:
        raise ResourceNotFoundError(extra={"resource": resource_id})
    record = _record(row)
    if not expired_ok and record.is_expired(utcnow()):
        raise ResourceGoneError("The incomplete resource expired.")
    return record


def resource_owner(conn: Connection, resource_id: str) -> tuple[bool, str | None]:
    row = conn.execute(
        select(resources.c.owner).where(resources.c.id == resource_id, resources.c.terminated_at.is_(None))
    ).first()
    return (False, None) if row is None else (True, row.owner)


def load_snapshot(
    conn: Connection,
    resource_id: str,
    *,
    limit: int,
    fits: Callable[[Extent], bool] | None = None,
) -> ResourceSnapshot:
    """The resource row, then its first extents in order: at most ``limit`` of them, and only
    while ``fits`` accepts the next one (the first is always kept: it gives the offset).

    Two indexed reads: the row once (not joined onto every extent), then bare ``(start, stop)``
    pairs, fetched lazily, so a resource with many extents costs what its header can show.
    """
    record = load_resource(conn, resource_id)
    rows = conn.execute(_EXTENTS_FROM, {"id": resource_id, "limit": limit + 1})
    found: list[Extent] = []
    truncated = False
    for start, stop in rows:
        extent = Extent(start, stop)
        if len(found) == limit:
            truncated = True
            break
        found.append(extent)
        if fits is not None and not fits(extent):
            truncated = True
            break
    rows.close()
    return ResourceSnapshot(record, found, truncated=truncated)


def page_extents(
    conn: Connection, resource_id: str, *, after: int, limit: int
) -> tuple[list[Extent], bool]:
    """Extents whose ``stop`` is past ``after``, in order; and whether more follow."""
    rows = conn.execute(
        select(extents.c.start, extents.c.stop)
        .where(extents.c.resource_id == resource_id, extents.c.stop > after)
        .order_by(extents.c.stop)
        .limit(limit + 1)
    ).all()
    found = [Extent(row.start, row.stop) for row in rows]
    return found[:limit], len(found) > limit


def _extents_near(
    conn: Connection, resource_id: str, start: int, stop: int, *, touching: bool
) -> list[Extent]:
    """Extents overlapping ``[start, stop)`` (or also touching it), in order.

    Extents are disjoint and sorted, so this is two bounded index range scans: the first
    extent ending at or after ``start`` (on ``(resource_id, stop)``), then the extents from
    there up to ``stop`` (on the primary key). Filtering on both bounds in one query would
    scan every extent on one side of the range.
    """
    first = conn.execute(
        _FIRST_STOP_FROM if touching else _FIRST_STOP_AFTER, {"id": resource_id, "at": start}
    ).first()
    if first is None:
        return []
    rows = conn.execute(
        _EXTENTS_STARTING_UP_TO if touching else _EXTENTS_STARTING_BELOW,
        {"id": resource_id, "first": first.start, "stop": stop},
    ).all()
    return [Extent(row.start, row.stop) for row in rows]


def extents_within(conn: Connection, resource_id: str, start: int, stop: int) -> list[Extent]:
    """Committed extents overlapping ``[start, stop)``, clipped to it."""
    return [
        Extent(max(extent.start, start), min(extent.stop, stop))
        for extent in _extents_near(conn, resource_id, start, stop, touching=False)
    ]


def _batch_bound(count: int) -> int:
    """Rows a batch statement reads over the span of ``count`` ranges before it falls back to
    one statement per range: spans crowded with other rows cost what the ranges do, not more."""
    return 4 * count + 64


def extents_within_many(
    conn: Connection, resource_id: str, ranges: Sequence[tuple[int, int]]
) -> list[list[Extent]]:
    """:func:`extents_within` for each of ``ranges``, in two statements for all of them (over
    their span; per range when the span holds many more extents than the ranges)."""
    if not ranges:
        return []
    low = min(start for start, _ in ranges)
    high = max(stop for _, stop in ranges)
    first = conn.execute(_FIRST_STOP_AFTER, {"id": resource_id, "at": low}).first()
    if first is None:
        return [[] for _ in ranges]
    bound = _batch_bound(len(ranges))
    rows = conn.execute(
        _EXTENTS_STARTING_BELOW_AT_MOST,
        {"id": resource_id, "first": first.start, "stop": high, "limit": bound + 1},
    ).all()
    if len(rows) > bound:
        return [extents_within(conn, resource_id, start, stop) for start, stop in ranges]
    # Coalesced extents are disjoint: sorted by start, their stops are sorted too.
    starts = [row.start for row in rows]
    stops = [row.stop for row in rows]
    out = []
    for start, stop in ranges:
        first_index = bisect.bisect_right(stops, start)
        last_index = bisect.bisect_left(starts, stop)
        out.append(
            [Extent(max(starts[k], start), min(stops[k], stop)) for k in range(first_index, last_index)]
        )
    return out


def prefix_stop(conn: Connection, resource_id: str) -> int:
    """End of the committed prefix that starts at byte 0 (the tus offset); 0 if none.

    Extents are coalesced, so the prefix is the one extent starting at 0 (a primary-key read).
    """
    row = conn.execute(_PREFIX_STOP, {"id": resource_id}).first()
    return int(row.stop) if row else 0


def committed_stop(conn: Connection, resource_id: str) -> int:
    """The end of the highest committed extent (0 if none)."""
    row = conn.execute(
        select(extents.c.stop)
        .where(extents.c.resource_id == resource_id)
        .order_by(extents.c.stop.desc())
        .limit(1)
    ).first()
    return int(row.stop) if row else 0


# -- reservations --------------------------------------------------------------------------------


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
    now = now_ms()
    overlapping = conn.execute(
        _OVERLAPPING_RESERVATIONS, {"id": resource_id, "start": start, "stop": stop}
    ).all()
    expired = [row.id for row in overlapping if row.lease_expires_ms <= now]
    live = [row for row in overlapping if row.lease_expires_ms > now]
    if live:
        wait_s = -(-(min(row.lease_expires_ms for row in live) - now) // 1000)
        # A live writer usually finishes well before its lease ends, and a dead one frees the
        # range when it does: suggest the remaining lease, but never more than 5 s.
        retry_after = max(1, min(5, wait_s))
        raise WriteInProgressError(
            "Another request is writing bytes in this range right now.",
            extra={"first": start, "last": stop - 1},
            headers={"Retry-After": str(retry_after)},
        )
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
            "lease_expires_ms": now + int(lease_seconds * 1000),
            "revocable": revocable,
        },
    )
    return reservation_id


def _conflict(start: int, stop: int, expiries_ms: Iterable[int], now: int) -> WriteInProgressError:
    wait_s = -(-(min(expiries_ms) - now) // 1000)
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
    now = now_ms()
    lease_ms = int(lease_seconds * 1000)
    low = min(start for start, _ in ranges)
    high = max(stop for _, stop in ranges)
    bound = _batch_bound(len(ranges))
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
        live_expiries = []
        k = bisect.bisect_left(row_starts, stop) - 1
        while k >= 0 and reach[k] > start:
            row = rows[k]
            if row.stop > start:
                if row.lease_expires_ms > now:
                    live_expiries.append(row.lease_expires_ms)
                else:
                    expired.add(row.id)
            k -= 1
        # Earlier ranges of this batch are live reservations too; they never overlap each
        # other (or this raised already), so only the neighbours of ``start`` can meet it.
        index = bisect.bisect_left(ours_starts, start)
        meets_next = index < len(ours_starts) and ours_starts[index] < stop
        if meets_next or (index and ours_stops[index - 1] > start):
            live_expiries.append(now + lease_ms)
        if live_expiries:
            raise _conflict(start, stop, live_expiries, now)
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
                "lease_expires_ms": now + lease_ms,
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
            reservations.c.lease_expires_ms > now_ms(),
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
            reservations.c.id.in_(list(reservation_ids)), reservations.c.lease_expires_ms > now_ms()
        )
    ).all()
    return [row.id for row in rows]


def renew(conn: Connection, reservation_ids: Sequence[str], *, lease_seconds: float) -> bool:
    """Extend the leases; False if any of them no longer exists (deleted or taken over) or
    was revoked (a revoked writer must let its lease run out, never extend it)."""
    if not reservation_ids:
        return True
    result = conn.execute(
        update(reservations)
        .where(reservations.c.id.in_(list(reservation_ids)), reservations.c.revoked.is_(False))
        .values(lease_expires_ms=now_ms() + int(lease_seconds * 1000))
    )
    return result.rowcount == len(reservation_ids)


# -- write slots (concurrency limits) ------------------------------------------------------------


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
    now = now_ms()
    conn.execute(_DELETE_DEAD_SLOTS, {"id": resource_id, "now": now})
    if max_per_resource:
        live = _count_live(conn, write_slots.c.resource_id == resource_id, now)
        if live >= max_per_resource:
            raise TooManyWritesError(
                "Too many writes to this resource are in flight; send this one again shortly.",
                extra={"max-writes-per-resource": max_per_resource},
                headers={"Retry-After": "1"},
            )
    if principal is not None and max_per_principal:
        if conn.dialect.name == "postgresql":
            # Writers of one principal on different resources hold different row locks.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:principal))"), {"principal": principal})
        live = _count_live(conn, write_slots.c.principal == principal, now)
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
            "lease_expires_ms": now + int(lease_seconds * 1000),
        },
    )
    return slot_id


def _count_live(conn: Connection, condition: object, now: int) -> int:
    return conn.execute(
        select(func.count()).select_from(write_slots).where(condition, write_slots.c.lease_expires_ms > now)
    ).scalar_one()


def renew_write_slot(conn: Connection, slot_id: str | None, *, lease_seconds: float) -> None:
    if slot_id is not None:
        conn.execute(
            update(write_slots)
            .where(write_slots.c.id == slot_id)
            .values(lease_expires_ms=now_ms() + int(lease_seconds * 1000))
        )


def release_write_slot(conn: Connection, slot_id: str | None) -> None:
    if slot_id is not None:
        conn.execute(_DELETE_SLOT, {"slot": slot_id})


def delete_dead_write_slots(conn: Connection) -> None:
    """Slots whose writer died (the sweep tidies them; counts ignore them anyway)."""
    conn.execute(delete(write_slots).where(write_slots.c.lease_expires_ms <= now_ms()))


def extent_count(conn: Connection, resource_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(extents).where(extents.c.resource_id == resource_id)
    ).scalar_one()


def reservations_alive(conn: Connection, reservation_ids: Sequence[str]) -> bool:
    if not reservation_ids:
        return True
    count = conn.execute(_RESERVATIONS_IN, {"ids": list(reservation_ids)}).all()
    return len(count) == len(reservation_ids)


def release(conn: Connection, reservation_ids: Iterable[str]) -> None:
    ids = list(reservation_ids)
    if ids:
        conn.execute(_DELETE_RESERVATIONS, {"ids": ids})


# -- committing ----------------------------------------------------------------------------------


def set_length(conn: Connection, record: ResourceRecord, length: int) -> ResourceRecord:
    """Fix the complete length; it never changes once known.

    :raises LengthConflictError: (409) for a different length, or one below committed bytes.
    """
    if record.length is not None:
        if record.length != length:
            raise LengthConflictError(
                "The resource already has a different length.",
                extra={"length": record.length, "requested-length": length},
            )
        return record
    highest = committed_stop(conn, record.id)
    if length < highest:
        raise LengthConflictError(
            "Bytes are already committed at or past the requested length.",
            extra={"requested-length": length, "committed-stop": highest},
        )
    conn.execute(
        update(resources)
        .where(resources.c.id == record.id)
        .values(length=length, updated_at=utcnow())
    )
    return dataclasses.replace(record, length=length)


def add_extents(conn: Connection, resource_id: str, new: Iterable[Extent]) -> list[Extent]:
    """Merge ``new`` into the table, coalescing with overlapping or touching extents.

    Returns the merged extents that now contain the new ones. Only the neighbourhood of each
    new extent is read and rewritten, so the cost does not grow with the resource's history.
    """
    merged_out: list[Extent] = []
    for extent in normalize(new):
        neighbours = _extents_near(conn, resource_id, extent.start, extent.stop, touching=True)
        start = min([extent.start, *(row.start for row in neighbours)])
        stop = max([extent.stop, *(row.stop for row in neighbours)])
        if neighbours:
            conn.execute(_DELETE_EXTENTS_AT, {"id": resource_id, "starts": [row.start for row in neighbours]})
        conn.execute(_INSERT_EXTENT, {"resource_id": resource_id, "start": start, "stop": stop})
        merged_out.append(Extent(start, stop))
    return normalize(merged_out)


def is_covered(conn: Connection, resource_id: str, length: int) -> bool:
    """True when one coalesced extent spans ``[0, length)`` (or the length is 0)."""
    if length == 0:
        return True
    row = conn.execute(_PREFIX_STOP, {"id": resource_id}).first()
    return row is not None and row.stop >= length


def touch(conn: Connection, resource_id: str) -> None:
    conn.execute(_TOUCH, {"rid": resource_id, "at": utcnow()})


def mark_complete(
    conn: Connection, resource_id: str, sha256: bytes | None, *, failed: bool, storage_key: str | None = None
) -> bool:
    """Record the digest and the final status; False if another request did it first.

    ``sha256`` is None for a final concatenation, whose digest is computed on first read.
    ``storage_key``: only if the row is still that generation (the one that was hashed).
    """
    now = utcnow()
    condition = [resources.c.id == resource_id, resources.c.status == STATUS_INCOMPLETE]
    if storage_key is not None:
        condition.append(func.coalesce(resources.c.storage_key, resources.c.id) == storage_key)
    result = conn.execute(
        update(resources)
        .where(*condition)
        .values(
            sha256=sha256,
            status=STATUS_FAILED if failed else STATUS_COMPLETE,
            completed_at=now,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def set_expected_digest(
    conn: Connection, resource_id: str, algorithm: str, digest: bytes
) -> None:
    conn.execute(
        update(resources)
        .where(resources.c.id == resource_id)
        .values(expected_digest_algorithm=algorithm, expected_digest=digest)
    )


def set_sha256(conn: Connection, resource_id: str, sha256: bytes) -> None:
    """The digest of a complete resource that had none yet (a final concatenation)."""
    conn.execute(
        update(resources)
        .where(resources.c.id == resource_id, resources.c.sha256.is_(None))
        .values(sha256=sha256)
    )


def delete_resource(conn: Connection, resource_id: str) -> bool:
    # Extents and reservations go with it (ON DELETE CASCADE); deleting them explicitly too
    # keeps SQLite correct even on a connection where foreign keys were not enabled.
    conn.execute(delete(concat_sources).where(concat_sources.c.final_id == resource_id))
    conn.execute(delete(reservations).where(reservations.c.resource_id == resource_id))
    conn.execute(delete(extents).where(extents.c.resource_id == resource_id))
    result = conn.execute(delete(resources).where(resources.c.id == resource_id))
    return result.rowcount == 1


def has_live_writers(conn: Connection, resource_id: str) -> bool:
    """Whether a write request holds an unexpired reservation or write slot on the resource."""
    now = now_ms()
    for table in (reservations, write_slots):
        found = conn.execute(
            select(table.c.id)
            .where(table.c.resource_id == resource_id, table.c.lease_expires_ms > now)
            .limit(1)
        ).first()
        if found is not None:
            return True
    return False


def expired_resource_ids(conn: Connection, *, now: dt.datetime, limit: int) -> list[str]:
    rows = conn.execute(
        select(resources.c.id)
        .where(
            resources.c.status == STATUS_INCOMPLETE,
            resources.c.expires_at <= now,
            resources.c.terminated_at.is_(None),  # already gone; removed with its last final
        )
        .limit(limit)
    ).all()
    return [row.id for row in rows]


# -- tus concatenation ---------------------------------------------------------------------------


def insert_pieces(conn: Connection, final_id: str, pieces: Sequence[Piece]) -> None:
    conn.execute(
        insert(concat_sources),
        [
            {
                "final_id": final_id,
                "position": piece.position,
                "source_id": piece.source_id,
                "start": piece.start,
                "length": piece.length,
            }
            for piece in pieces
        ],
    )


def load_pieces(conn: Connection, final_id: str) -> list[Piece]:
    """The pieces of a final upload in order; empty for any other resource."""
    rows = conn.execute(
        select(concat_sources)
        .where(concat_sources.c.final_id == final_id)
        .order_by(concat_sources.c.position)
    ).all()
    return [Piece(row.position, row.source_id, row.start, row.length) for row in rows]


def finals_reading(conn: Connection, source_id: str) -> list[str]:
    """Ids of the final uploads that read from ``source_id``."""
    rows = conn.execute(
        select(concat_sources.c.final_id).where(concat_sources.c.source_id == source_id).distinct()
    ).all()
    return [row.final_id for row in rows]


def source_statuses(conn: Connection, source_ids: Iterable[str]) -> dict[str, str]:
    """Status of each source, terminated ones included (a final keeps reading from them)."""
    ids = list(set(source_ids))
    rows = conn.execute(select(resources.c.id, resources.c.status).where(resources.c.id.in_(ids))).all()
    return {row.id: row.status for row in rows}


def mark_terminated(conn: Connection, resource_id: str) -> None:
    conn.execute(
        update(resources).where(resources.c.id == resource_id).values(terminated_at=utcnow())
    )


def unreferenced_terminated(conn: Connection, source_ids: Iterable[str]) -> list[str]:
    """Of ``source_ids``, the terminated ones no final reads from any more."""
    ids = list(set(source_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(resources.c.id).where(
            resources.c.id.in_(ids),
            resources.c.terminated_at.is_not(None),
            ~select(concat_sources.c.final_id)
            .where(concat_sources.c.source_id == resources.c.id)
            .exists(),
        )
    ).all()
    return [row.id for row in rows]


# -- quotas --------------------------------------------------------------------------------------

#: The first key of the PostgreSQL advisory locks that serialise one principal's creations (the
#: two-key form: a space apart from take_write_slot's one-key locks).
_QUOTA_LOCK_CLASS = 0x71756F74


def principal_usage(conn: Connection, owner: str) -> tuple[int, int]:
    """(open resources, bytes declared for them) of ``owner``, for the quota check of a creation
    in the same transaction. Serialised per principal across workers and hosts: SQLite write
    transactions begin IMMEDIATE (one writer at a time); on PostgreSQL an advisory lock of the
    principal is held until this transaction ends. Terminated partials no longer count; a
    length not declared yet counts 0 (the resource count bounds those)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:class, hashtext(:owner))"),
            {"class": _QUOTA_LOCK_CLASS, "owner": owner},
        )
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(resources.c.length), 0)).where(
            resources.c.owner == owner,
            text(f"({OPEN_RESOURCES})"),
            resources.c.terminated_at.is_(None),
        )
    ).one()
    return int(row[0]), int(row[1])


# -- job leases of one resource (the digest of a final) ------------------------------------------


def release_job_lease(conn: Connection, name: str, holder: str | None = None) -> None:
    """Drop the lease row of job ``name`` (only if ``holder`` still holds it, when given)."""
    condition = job_leases.c.name == name
    if holder is not None:
        condition = condition & (job_leases.c.holder == holder)
    conn.execute(delete(job_leases).where(condition))
