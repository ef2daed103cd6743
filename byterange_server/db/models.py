"""Tables: one row per resource, its committed extents, and in-flight write reservations.

Rules the database enforces itself (CHECK constraints and keys), so no code path can store a
malformed extent:

- ``extents``: half-open ``[start, stop)`` with ``0 <= start < stop``; keyed by
  ``(resource_id, start)`` so the ranges of one resource come out in order from the primary key.
  The service keeps them coalesced (no two overlap or touch).
- ``reservations``: ranges a live request is writing right now, with a lease
  (``lease_expires_ms``, milliseconds since the epoch) the writer renews while it streams. A
  writer that died stops renewing and its range frees itself.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import false
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .engine import Base

STATUS_INCOMPLETE = "incomplete"
STATUS_COMPLETE = "complete"
#: Complete, but the bytes do not match the digest declared for them.
STATUS_FAILED = "failed"
#: The resources that count against their owner's quota (ledger.principal_usage): incomplete
#: ones, and tus finals whose digest is still to be computed (hashing them is work their owner
#: has yet to cause). Literal SQL, the same text in the partial index and in the query, so
#: SQLite and PostgreSQL both see that the index covers it.
OPEN_RESOURCES = "status = 'incomplete' OR (concat = 'final' AND sha256 IS NULL)"


class Resource(Base):
    __tablename__ = "resources"
    __table_args__ = (
        CheckConstraint("length IS NULL OR length >= 0", name="length_non_negative"),
        CheckConstraint(
            "status IN ('incomplete', 'complete', 'failed')",
            name="status_known",
        ),
        CheckConstraint("concat IS NULL OR concat IN ('partial', 'final')", name="concat_known"),
        Index("ix_resources_status_expires_at", "status", "expires_at"),
        # The quota check of every creation reads only the creator's open resources.
        Index(
            "ix_resources_owner_open",
            "owner",
            sqlite_where=text(OPEN_RESOURCES),
            postgresql_where=text(OPEN_RESOURCES),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Complete length; NULL until declared.
    length: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_INCOMPLETE)
    content_type: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(1024))
    #: Expected digest of the whole representation, as declared by the client.
    expected_digest_algorithm: Mapped[str | None] = mapped_column(String(16))
    expected_digest: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    #: SHA-256 of the complete representation (set at completion).
    sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: tus ``Upload-Metadata``, validated and stored whole (echoed on tus HEAD).
    upload_metadata: Mapped[str | None] = mapped_column(Text)
    #: tus concatenation role: ``partial``, ``final`` or NULL.
    concat: Mapped[str | None] = mapped_column(String(8))
    #: tus ``Upload-Concat`` of a final upload as received (echoed on its HEAD), the query of
    #: each URL dropped (a signature is a credential). NULL for others and older finals.
    upload_concat: Mapped[str | None] = mapped_column(Text)
    #: Set when a partial upload that a final upload still reads from is terminated: it is
    #: gone for clients (404) but its row and bytes stay until no final refers to it.
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The principal that created it (``token:<name>``, or ``signed:<key id>:<resource id>`` for
    #: the grant of a signed URL); only that principal may write, read or delete it (a signed
    #: URL: only the path it covers). NULL when created without authentication.
    owner: Mapped[str | None] = mapped_column(String(255))
    #: Where its bytes are stored when its id can be created more than once (derived from a
    #: signed creation URL): ``<id>.<generation>``, a fresh random generation for each creation,
    #: so a resource deleted and created again never shares bytes with its earlier self. NULL:
    #: the bare id (random ids, created once, and every resource from before revision 0007).
    storage_key: Mapped[str | None] = mapped_column(String(128))
    #: Object stores (storage/s3.py): the block grid its bytes are cut on, chosen at allocation
    #: so the assembled object has at most 10,000 equal parts. NULL for files.
    block_size: Mapped[int | None] = mapped_column(BigInteger)
    #: Object stores: set once its segments were replaced by one assembled object.
    assembled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: IETF resumable uploads: set when content went past the known length; from then on every
    #: interaction is refused (410 ``upload-invalid``) until the resource expires.
    invalid_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Extent(Base):
    __tablename__ = "extents"
    __table_args__ = (
        CheckConstraint("start >= 0", name="start_non_negative"),
        CheckConstraint("stop > start", name="not_empty"),
        # Finding the extent that contains or touches an offset walks this index backwards.
        Index("ix_extents_resource_id_stop", "resource_id", "stop"),
    )

    resource_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stop: Mapped[int] = mapped_column(BigInteger)


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("start >= 0", name="start_non_negative"),
        CheckConstraint("stop > start", name="not_empty"),
        Index("ix_reservations_resource_id_start", "resource_id", "start"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("resources.id", ondelete="CASCADE")
    )
    start: Mapped[int] = mapped_column(BigInteger)
    stop: Mapped[int] = mapped_column(BigInteger)
    lease_expires_ms: Mapped[int] = mapped_column(BigInteger)
    #: An IETF append: a newer request for the same upload may end it (``revoked``).
    revocable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Set by that newer request: the writer stops reading, commits what it has and releases.
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ConcatSource(Base):
    """One piece of a tus final upload: bytes ``[start, start + length)`` of the final are the
    whole of ``source_id`` (a partial upload). The final stores no bytes of its own: reads go
    to the sources, so concatenation copies nothing."""

    __tablename__ = "concat_sources"
    __table_args__ = (
        CheckConstraint("start >= 0", name="start_non_negative"),
        CheckConstraint("length >= 0", name="length_non_negative"),
        Index("ix_concat_sources_source_id", "source_id"),
    )

    final_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # No cascade: a source that a final still reads from must not disappear (see
    # ``terminated_at``); the database refuses it even if the code forgot.
    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("resources.id"))
    start: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)


class WriteSlot(Base):
    """One write request in flight, held for its whole duration (reservations come and go per
    part). Counting live slots enforces the concurrent-write limits across worker processes; the
    lease frees the slot of a writer that died."""

    __tablename__ = "write_slots"
    __table_args__ = (
        Index("ix_write_slots_resource_id", "resource_id"),
        Index("ix_write_slots_principal", "principal"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("resources.id", ondelete="CASCADE")
    )
    principal: Mapped[str | None] = mapped_column(String(255))
    lease_expires_ms: Mapped[int] = mapped_column(BigInteger)


class JobLease(Base):
    """A named periodic job (the expiry sweep) runs in one worker at a time: the worker that
    holds an unexpired lease row."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    lease_expires_ms: Mapped[int] = mapped_column(BigInteger)


class Segment(Base):
    """Object stores only: bytes ``[start, stop)`` of a resource are bytes ``[object_offset,
    object_offset + stop - start)`` of the stored object ``object_key``. Written in the
    transaction that commits the extents those bytes fill, after the store acknowledged them;
    never overlapping, not coalesced (one row per object piece)."""

    __tablename__ = "segments"
    __table_args__ = (
        CheckConstraint("start >= 0", name="start_non_negative"),
        CheckConstraint("stop > start", name="not_empty"),
        CheckConstraint("object_offset >= 0", name="offset_non_negative"),
        Index("ix_segments_resource_id_stop", "resource_id", "stop"),
    )

    resource_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stop: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(Text)
    object_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    #: CRC-32 of the piece as stored (NULL for an assembled object).
    checksum: Mapped[int | None] = mapped_column(BigInteger)


class StorageGarbage(Base):
    """Stored bytes to delete, recorded in the transaction that made them garbage and collected
    by the sweep (uploads/garbage.py). No foreign key: it outlives the resource it names."""

    __tablename__ = "storage_gc"
    __table_args__ = (Index("ix_storage_gc_not_before_ms", "not_before_ms"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    resource_id: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(128))
    #: ``all``: everything under ``scope``; ``unreferenced``: what no segment row names.
    kind: Mapped[str] = mapped_column(String(16))
    #: The part of the key's objects meant (backend-specific, e.g. ``w/<reservation>/``); empty:
    #: all of them.
    scope: Mapped[str] = mapped_column(String(128), default="")
    #: A write's garbage waits until this reservation is gone (committed, released or lapsed).
    reservation_id: Mapped[str | None] = mapped_column(String(32))
    not_before_ms: Mapped[int] = mapped_column(BigInteger)


resources = Resource.__table__
extents = Extent.__table__
segments = Segment.__table__
storage_gc = StorageGarbage.__table__
reservations = Reservation.__table__
concat_sources = ConcatSource.__table__
write_slots = WriteSlot.__table__
job_leases = JobLease.__table__


HOOK_PENDING = "pending"
HOOK_DELIVERED = "delivered"
#: Given up after ``hook_max_attempts`` / ``hook_max_age``; the row says why (``last_error``).
HOOK_ABANDONED = "abandoned"


class HookEvent(Base):
    """The hook outbox (hooks/outbox.py): one row per lifecycle event and delivery target,
    written in the transaction of the change it reports. Rows of one ``(target, resource_id)``
    are delivered strictly in ``id`` order; the delivering worker holds a lease on the oldest
    pending row of that resource. No foreign key: the events of a deleted resource outlive it."""

    __tablename__ = "hook_events"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivered', 'abandoned')",
            name="status_known",
        ),
        # The oldest pending event of a resource, and the tail to coalesce progress into.
        Index("ix_hook_events_target_resource_id", "target", "resource_id", "status", "id"),
        # Due work, and pruning of finished rows.
        Index("ix_hook_events_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    #: Stable per event (the same for every target and retry): the ``Idempotency-Key``.
    event_id: Mapped[str] = mapped_column(String(40))
    #: ``http`` or ``python``.
    target: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    #: The event as JSON (hooks/outbox.py builds and coalesces it).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=HOOK_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The worker delivering this row right now, until ``lease_expires_ms``.
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_expires_ms: Mapped[int | None] = mapped_column(BigInteger)


hook_events = HookEvent.__table__
