"""The ``segments`` rows: which stored object holds which committed range of a resource, on an
object store (storage/s3.py). Files need none: their bytes sit at their offsets.

Rows are written in the transaction that commits the extents those bytes fill, after the store
acknowledged the objects, and they never overlap: a write stores only the gaps it reserved.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select

from ...storage.base import Segment
from ..models import segments

__all__ = ["insert_segments", "load_segments", "referenced", "replace_segments", "segments_from"]

_FROM = (
    select(segments)
    .where(segments.c.resource_id == bindparam("rid"), segments.c.stop > bindparam("at"))
    .order_by(segments.c.start)
    .limit(bindparam("most"))
)


def _segment(row: object) -> Segment:
    return Segment(
        row.start, row.stop, row.object_key, row.object_offset, row.checksum  # type: ignore[attr-defined]
    )


def insert_segments(conn: Connection, resource_id: str, found: Sequence[Segment]) -> None:
    if not found:
        return
    conn.execute(
        insert(segments),
        [
            {
                "resource_id": resource_id,
                "start": segment.start,
                "stop": segment.stop,
                "object_key": segment.object_key,
                "object_offset": segment.object_offset,
                "checksum": segment.checksum,
            }
            for segment in found
        ],
    )


def segments_from(conn: Connection, resource_id: str, at: int, *, most: int = 256) -> list[Segment]:
    """The first ``most`` segments that end after ``at``, in order (the one holding ``at``
    first, if any)."""
    return [_segment(row) for row in conn.execute(_FROM, {"rid": resource_id, "at": at, "most": most})]


def load_segments(
    conn: Connection, resource_id: str, start: int = 0, stop: int | None = None
) -> list[Segment]:
    """Every segment that meets ``[start, stop)`` (all of them by default), in order."""
    query = select(segments).where(segments.c.resource_id == resource_id, segments.c.stop > start)
    if stop is not None:
        query = query.where(segments.c.start < stop)
    return [_segment(row) for row in conn.execute(query.order_by(segments.c.start))]


def replace_segments(conn: Connection, resource_id: str, whole: Segment) -> None:
    """The assembled object takes the place of every piece."""
    conn.execute(delete(segments).where(segments.c.resource_id == resource_id))
    insert_segments(conn, resource_id, [whole])


def referenced(conn: Connection, resource_id: str, object_keys: Sequence[str]) -> set[str]:
    """Those of ``object_keys`` that a segment of the resource names."""
    if not object_keys:
        return set()
    rows = conn.execute(
        select(segments.c.object_key).where(
            segments.c.resource_id == resource_id, segments.c.object_key.in_(list(object_keys))
        )
    ).all()
    return {row.object_key for row in rows}
