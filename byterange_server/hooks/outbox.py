"""SQL of the hook outbox (table ``hook_events``, models.py), in the style of ledger.py.

Writing (:func:`record`) happens inside the transaction of the change the event reports, so an
event exists if and only if its change committed. Reading is a lease protocol that lets any
number of worker processes, on any number of hosts, share one outbox:

- the *head* of a ``(target, resource_id)`` is its oldest ``pending`` row; only heads are ever
  claimed, so event N+1 of a resource cannot be sent before event N was delivered or given up;
- :func:`claim` takes a due head whose lease is free and stamps it with the worker's name and a
  lease deadline (compare-and-set; on PostgreSQL also ``FOR UPDATE SKIP LOCKED`` so workers do
  not queue behind each other's row locks);
- :func:`succeed` / :func:`fail` finish the attempt only if the worker still holds the lease: a
  worker whose lease ran out (stuck past ``hook_timeout``) cannot finish a row someone else
  took over, which at worst sends that event twice — with the same ``Idempotency-Key``.

Within one resource, event rows are inserted by transactions that hold the resource's row lock
(or, on SQLite, the database write lock), so ``id`` order is commit order per resource.

Progress events are coalesced: a ``progress`` row is held back ``hook_progress_interval``
seconds, and a later progress of the same resource merges into it (ranges united, latest offset)
as long as it is the resource's newest row and was never attempted (an interval of 0 turns this
off). Any other event releases a
held progress row at once, so holding never delays a ``completed`` or ``deleted``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import Connection
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from ..db import clock
from ..db.clock import aware
from ..db.models import HOOK_ABANDONED
from ..db.models import HOOK_DELIVERED
from ..db.models import HOOK_PENDING
from ..db.models import hook_events
from ..uploads.lifecycle import ResourceEvent

__all__ = [
    "OutboxRow",
    "claim",
    "event_payload",
    "fail",
    "merge_ranges",
    "has_due",
    "prune",
    "record",
    "release",
    "succeed",
]

_MAX_ERROR_LENGTH = 2000


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    target: str
    resource_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: dt.datetime

    def body(self) -> dict[str, Any]:
        """The JSON document sent for this row: the payload with its ``sequence``."""
        document = dict(self.payload)
        # Rebuilt in a fixed order so every retry sends the same bytes (and signature).
        return {
            "id": document.pop("id"),
            "sequence": self.id,
            "type": document.pop("type"),
            **document,
        }


def _row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        event_id=row.event_id,
        target=row.target,
        resource_id=row.resource_id,
        kind=row.kind,
        payload=json.loads(row.payload),
        attempts=row.attempts,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
    )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def event_payload(event: ResourceEvent, event_id: str) -> dict[str, Any]:
    """The stored JSON of an event (docs/hooks.md has its schema)."""
    return {
        "id": event_id,
        "type": event.kind,
        "at": _iso(event.at),
        "resource": {"id": event.resource_id, "owner": event.owner, "length": event.length},
        "data": dict(event.data),
    }


def merge_ranges(*lists: Iterable[Sequence[int]]) -> list[list[int]]:
    """Union of half-open ``[start, stop)`` lists, sorted, with touching ranges joined."""
    merged: list[list[int]] = []
    for start, stop in sorted((int(a), int(b)) for ranges in lists for a, b in ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return merged


def _coalesced(held: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    data = dict(held["data"])
    data.update(newer["data"])
    data["ranges"] = merge_ranges(held["data"].get("ranges", []), newer["data"].get("ranges", []))
    offsets = [d["offset"] for d in (held["data"], newer["data"]) if d.get("offset") is not None]
    if offsets:
        data["offset"] = max(offsets)
    return {**newer, "id": held["id"], "data": data}


def record(
    conn: Connection,
    event: ResourceEvent,
    *,
    targets: Sequence[str],
    progress_interval: float,
) -> None:
    """Write ``event`` for each target, inside the caller's (the change's) transaction."""
    event_id = "evt_" + secrets.token_hex(16)
    payload = event_payload(event, event_id)
    now = event.at
    for target in targets:
        of_resource = (hook_events.c.target == target, hook_events.c.resource_id == event.resource_id)
        if event.kind == "progress":
            # An interval of 0 turns coalescing off: every progress is its own event.
            if progress_interval > 0 and _coalesce(conn, of_resource, payload):
                continue
            next_attempt_at: Any = clock.at_from_now(progress_interval)
        else:
            # A held progress row goes out now: holding must not delay what follows it.
            conn.execute(
                update(hook_events)
                .where(
                    *of_resource,
                    hook_events.c.status == HOOK_PENDING,
                    hook_events.c.kind == "progress",
                    hook_events.c.attempts == 0,
                    hook_events.c.next_attempt_at > clock.NOW,
                )
                .values(next_attempt_at=clock.NOW)
            )
            # Due times are the database's clock, as leases are (see db/clock.py).
            next_attempt_at = clock.NOW
        conn.execute(
            insert(hook_events).values(
                event_id=event_id,
                target=target,
                resource_id=event.resource_id,
                kind=event.kind,
                payload=json.dumps(payload),
                status=HOOK_PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=next_attempt_at,
            )
        )


def _coalesce(conn: Connection, of_resource: tuple[Any, ...], payload: dict[str, Any]) -> bool:
    """Merge a progress payload into the resource's newest row if that is an unsent progress."""
    tail = conn.execute(
        select(hook_events)
        .where(*of_resource, hook_events.c.status == HOOK_PENDING)
        .order_by(hook_events.c.id.desc())
        .limit(1)
    ).first()
    if tail is None or tail.kind != "progress" or tail.attempts != 0 or tail.lease_holder is not None:
        return False
    merged = _coalesced(json.loads(tail.payload), payload)
    result = conn.execute(
        update(hook_events)
        .where(
            hook_events.c.id == tail.id,
            hook_events.c.status == HOOK_PENDING,
            hook_events.c.attempts == 0,
            hook_events.c.lease_holder.is_(None),
        )
        .values(payload=json.dumps(merged))
    )
    return result.rowcount == 1


def claim(
    conn: Connection,
    *,
    holder: str,
    lease_ms: int,
    now: dt.datetime | ColumnElement[dt.datetime] = clock.NOW,
    resource: tuple[str, str] | None = None,
    exclude: Collection[int] = (),
) -> OutboxRow | None:
    """Lease the oldest due head (of ``resource`` = ``(target, resource_id)`` if given), other
    than the rows ``exclude`` (those a worker already attempted in this pass)."""
    head = hook_events
    earlier = hook_events.alias("earlier")
    lease_free = or_(head.c.lease_expires_ms.is_(None), head.c.lease_expires_ms < clock.NOW_MS)
    query = (
        select(head)
        .where(
            head.c.status == HOOK_PENDING,
            head.c.next_attempt_at <= now,
            lease_free,
            ~exists().where(
                earlier.c.target == head.c.target,
                earlier.c.resource_id == head.c.resource_id,
                earlier.c.status == HOOK_PENDING,
                earlier.c.id < head.c.id,
            ),
        )
        .order_by(head.c.id)
        .limit(1)
    )
    if resource is not None:
        query = query.where(head.c.target == resource[0], head.c.resource_id == resource[1])
    if exclude:
        query = query.where(head.c.id.not_in(list(exclude)))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=head, skip_locked=True)
    row = conn.execute(query).first()
    if row is None:
        return None
    taken = conn.execute(
        update(head)
        .where(head.c.id == row.id, head.c.status == HOOK_PENDING, lease_free)
        .values(lease_holder=holder, lease_expires_ms=clock.NOW_MS + lease_ms)
    )
    return _row(row) if taken.rowcount == 1 else None


def _held_by(row: OutboxRow, holder: str) -> tuple[Any, ...]:
    return (
        hook_events.c.id == row.id,
        hook_events.c.status == HOOK_PENDING,
        hook_events.c.lease_holder == holder,
    )


def succeed(conn: Connection, row: OutboxRow, *, holder: str, now: dt.datetime) -> bool:
    """Mark delivered; False if the lease was lost meanwhile (someone else has the row)."""
    result = conn.execute(
        update(hook_events)
        .where(*_held_by(row, holder))
        .values(
            status=HOOK_DELIVERED,
            delivered_at=now,
            attempts=hook_events.c.attempts + 1,
            last_error=None,
            lease_holder=None,
            lease_expires_ms=None,
        )
    )
    return result.rowcount == 1


def fail(
    conn: Connection,
    row: OutboxRow,
    *,
    holder: str,
    error: str,
    retry_at: dt.datetime | ColumnElement[dt.datetime] | None,
) -> bool:
    """Record a failed attempt: retry at ``retry_at``, or give up (``abandoned``) when None."""
    values: dict[str, Any] = {
        "attempts": hook_events.c.attempts + 1,
        "last_error": error[:_MAX_ERROR_LENGTH],
        "lease_holder": None,
        "lease_expires_ms": None,
    }
    if retry_at is None:
        values["status"] = HOOK_ABANDONED
    else:
        values["next_attempt_at"] = retry_at
    result = conn.execute(update(hook_events).where(*_held_by(row, holder)).values(**values))
    return result.rowcount == 1


def release(conn: Connection, row: OutboxRow, *, holder: str) -> None:
    """Give a claimed row back unsent (the worker is stopping)."""
    conn.execute(
        update(hook_events).where(*_held_by(row, holder)).values(lease_holder=None, lease_expires_ms=None)
    )


def has_due(conn: Connection, *, now: dt.datetime | ColumnElement[dt.datetime] = clock.NOW) -> bool:
    """Whether any pending row is due: a read, so idle workers do not take SQLite's write lock."""
    row = conn.execute(
        select(hook_events.c.id)
        .where(hook_events.c.status == HOOK_PENDING, hook_events.c.next_attempt_at <= now)
        .limit(1)
    ).first()
    return row is not None


def prune(conn: Connection, *, before: dt.datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` delivered or abandoned rows created before ``before``."""
    ids = (
        select(hook_events.c.id)
        .where(hook_events.c.status != HOOK_PENDING, hook_events.c.created_at < before)
        .limit(limit)
        .scalar_subquery()
    )
    return conn.execute(delete(hook_events).where(hook_events.c.id.in_(ids))).rowcount
