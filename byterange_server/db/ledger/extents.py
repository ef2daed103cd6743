"""The ``extents`` rows: the committed ranges of each resource, kept coalesced (no two overlap
or touch), so the extent table is the record of which bytes are durable.

Extents are only ever added, in the commit transaction that claims bytes already synced to
storage; readers take no lock. Every query reads a bounded neighbourhood through an index, so
the cost does not grow with a resource's history.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from ...extents import Extent
from ...extents import normalize
from ..models import extents

# Built once, values bound per execution (see resources.py).
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
_SET_EXTENT_STOP = (
    update(extents)
    .where(extents.c.resource_id == bindparam("id"), extents.c.start == bindparam("at"))
    .values(stop=bindparam("new_stop"))
)
_EXTENTS_STARTING_BELOW_AT_MOST = _EXTENTS_STARTING_BELOW.limit(bindparam("limit"))


def first_extents(
    conn: Connection, resource_id: str, *, limit: int, fits: Callable[[Extent], bool] | None = None
) -> tuple[list[Extent], bool]:
    """The first extents in order: at most ``limit`` of them, and only while ``fits`` accepts
    the next one (the first is always kept: it gives the offset); and whether more exist.

    Bare ``(start, stop)`` pairs from the primary key, fetched lazily, so a resource with many
    extents costs what the caller can show (see :func:`.resources.load_snapshot`).
    """
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
    return found, truncated


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


def batch_bound(count: int) -> int:
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
    bound = batch_bound(len(ranges))
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
        if len(neighbours) == 1 and neighbours[0].start == start:
            # An append (or bytes inside one extent): that row only grows, in place.
            if neighbours[0].stop != stop:
                conn.execute(_SET_EXTENT_STOP, {"id": resource_id, "at": start, "new_stop": stop})
        else:
            if neighbours:
                starts = [row.start for row in neighbours]
                conn.execute(_DELETE_EXTENTS_AT, {"id": resource_id, "starts": starts})
            conn.execute(_INSERT_EXTENT, {"resource_id": resource_id, "start": start, "stop": stop})
        merged_out.append(Extent(start, stop))
    return normalize(merged_out)


def is_covered(conn: Connection, resource_id: str, length: int) -> bool:
    """True when one coalesced extent spans ``[0, length)`` (or the length is 0)."""
    if length == 0:
        return True
    row = conn.execute(_PREFIX_STOP, {"id": resource_id}).first()
    return row is not None and row.stop >= length


def extent_count(conn: Connection, resource_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(extents).where(extents.c.resource_id == resource_id)
    ).scalar_one()
