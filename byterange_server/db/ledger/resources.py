"""The ``resources`` rows: creation, lookup, the state snapshot, length, completion, deletion
and the quota count.

Reading a resource never locks it; a write transaction that changes it first locks its row with
``load_resource(for_update=True)`` (see the package docstring).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import Connection
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import Insert

from ...errors import LengthConflictError
from ...errors import ResourceExistsError
from ...errors import ResourceGoneError
from ...errors import ResourceNotFoundError
from ...errors import UploadInvalidError
from ...extents import Extent
from .. import clock
from ..models import OPEN_RESOURCES
from ..models import STATUS_COMPLETE
from ..models import STATUS_FAILED
from ..models import STATUS_INCOMPLETE
from ..models import concat_sources
from ..models import extents
from ..models import reservations
from ..models import resources
from ..models import segments
from .extents import committed_stop
from .extents import first_extents

# Statements of the write path, built once: building a statement each call (expression objects,
# then its cache key) cost more CPU than running it on SQLite. Values are bound per execution.
# Each read of a row also reads the database's clock, which decides whether it has expired.
_RESOURCE_BY_ID = select(resources, clock.NOW.label("read_at")).where(resources.c.id == bindparam("id"))
_RESOURCE_BY_ID_FOR_UPDATE = _RESOURCE_BY_ID.with_for_update()
#: The row and its first extents in one statement (see load_snapshot_joined).
_SNAPSHOT_JOINED = (
    select(
        resources,
        clock.NOW.label("read_at"),
        extents.c.start.label("extent_start"),
        extents.c.stop.label("extent_stop"),
    )
    .select_from(resources.outerjoin(extents, extents.c.resource_id == resources.c.id))
    .where(resources.c.id == bindparam("id"))
    .order_by(extents.c.start)
    .limit(bindparam("limit"))
)
#: At most this many extents come with the row in one statement: each joined row repeats the
#: resource's columns, so a resource with more is read by load_snapshot instead.
JOINED_EXTENTS = 8
_TOUCH = update(resources).where(resources.c.id == bindparam("rid")).values(updated_at=bindparam("at"))


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
    #: A final's ``Upload-Concat`` as received (see models.Resource.upload_concat), or None.
    upload_concat: str | None = None
    #: Set once a partial that a final still reads from was terminated (gone for clients).
    terminated_at: dt.datetime | None = None
    #: The principal that created it; None when created without authentication.
    owner: str | None = None
    #: The ``storage_key`` column: None for rows that store their bytes under their id.
    storage_key: str | None = None
    #: Object stores: the block grid of its objects (see models.Resource.block_size).
    block_size: int | None = None
    #: Object stores: when its segments were replaced by one assembled object.
    assembled_at: dt.datetime | None = None
    #: IETF: when content past the known length marked it invalid (see :func:`invalidate`).
    invalid_at: dt.datetime | None = None
    #: The database's clock when the row was read (None for rows read without it).
    read_at: dt.datetime | None = None

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

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Whether it expired by ``now``, by default the database's clock when it was read."""
        if now is None:
            if self.read_at is None:
                raise ValueError("is_expired needs the time: this record was read without the clock")
            now = self.read_at
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
        created_at=clock.aware(mapping["created_at"]),  # type: ignore[arg-type]
        updated_at=clock.aware(mapping["updated_at"]),  # type: ignore[arg-type]
        expires_at=clock.aware(mapping["expires_at"]),
        completed_at=clock.aware(mapping["completed_at"]),
        upload_metadata=mapping["upload_metadata"],
        concat=mapping["concat"],
        upload_concat=mapping["upload_concat"],
        terminated_at=clock.aware(mapping["terminated_at"]),
        owner=mapping["owner"],
        storage_key=mapping["storage_key"],
        block_size=mapping["block_size"],
        assembled_at=clock.aware(mapping["assembled_at"]),
        invalid_at=clock.aware(mapping["invalid_at"]),
        read_at=clock.aware(mapping["read_at"]) if "read_at" in mapping else None,
    )


def insert_resource(
    conn: Connection,
    resource_id: str,
    *,
    length: int | None,
    content_type: str | None,
    filename: str | None,
    expected_digest: tuple[str, bytes] | None,
    expires_at: dt.datetime | ColumnElement[dt.datetime] | None,
    upload_metadata: str | None = None,
    concat: str | None = None,
    owner: str | None = None,
    storage_key: str | None = None,
    block_size: int | None = None,
    upload_concat: str | None = None,
) -> None:
    """Insert the row; ``storage_key`` names the object already created for it (None: the id),
    ``block_size`` the block grid of an object store's pieces (None for files).

    :raises ResourceExistsError: a row with this id exists (a replayed signed creation URL:
        two replays can both pass an earlier check, the unique id decides).
    """
    now = clock.utcnow()
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
            upload_concat=upload_concat,
            owner=owner,
            storage_key=storage_key,
            block_size=block_size,
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
    return _usable(conn.execute(query, {"id": resource_id}).first(), resource_id, expired_ok=expired_ok)


def _usable(row: Any, resource_id: str, *, expired_ok: bool = False) -> ResourceRecord:
    """The record of ``row`` if a request may use it: every read of a resource goes through here."""
    if row is None or row.terminated_at is not None:
        raise ResourceNotFoundError(extra={"resource": resource_id})
    record = _record(row)
    if expired_ok:
        return record
    if record.invalid_at is not None:
        raise UploadInvalidError(
            "Content went past the upload length; the upload is invalid.", extra={"length": record.length}
        )
    if record.is_expired():
        raise ResourceGoneError("The incomplete resource expired.")
    return record


def invalidate(conn: Connection, resource_id: str) -> None:
    """Mark an incomplete resource invalid (IETF: content past its length); it keeps its
    expiry time, so the sweep removes it as any other abandoned upload."""
    conn.execute(
        update(resources)
        .where(resources.c.id == resource_id, resources.c.status == STATUS_INCOMPLETE)
        .values(invalid_at=clock.utcnow())
    )


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
    found, truncated = first_extents(conn, resource_id, limit=limit, fits=fits)
    return ResourceSnapshot(record, found, truncated=truncated)


def load_snapshot_joined(
    conn: Connection,
    resource_id: str,
    *,
    limit: int,
    fits: Callable[[Extent], bool] | None = None,
) -> ResourceSnapshot | None:
    """What :func:`load_snapshot` returns, in one statement (the row joined with its first
    extents), so it needs no transaction around it; None when the resource has more extents
    than one statement brings (:data:`JOINED_EXTENTS`) and the caller may show them: then
    :func:`load_snapshot` reads them.

    :raises ResourceNotFoundError: (404); :raises ResourceGoneError, UploadInvalidError: (410).
    """
    asked = min(limit + 1, JOINED_EXTENTS)
    rows = conn.execute(_SNAPSHOT_JOINED, {"id": resource_id, "limit": asked}).all()
    record = _usable(rows[0] if rows else None, resource_id)
    found: list[Extent] = []
    for row in rows:
        if row.extent_start is None:
            break  # no extents (the outer join's one row)
        extent = Extent(row.extent_start, row.extent_stop)
        if len(found) == limit:
            return ResourceSnapshot(record, found, truncated=True)
        found.append(extent)
        if fits is not None and not fits(extent):
            return ResourceSnapshot(record, found, truncated=True)
    if len(rows) == asked and asked < limit + 1 and rows[-1].extent_start is not None:
        return None  # there may be more than this statement brought
    return ResourceSnapshot(record, found, truncated=False)


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
        .values(length=length, updated_at=clock.utcnow())
    )
    return dataclasses.replace(record, length=length)


def touch(conn: Connection, resource_id: str) -> None:
    conn.execute(_TOUCH, {"rid": resource_id, "at": clock.utcnow()})


def mark_complete(
    conn: Connection, resource_id: str, sha256: bytes | None, *, failed: bool, storage_key: str | None = None
) -> bool:
    """Record the digest and the final status; False if another request did it first.

    ``sha256`` is None for a final concatenation, whose digest is computed on first read.
    ``storage_key``: only if the row is still that generation (the one that was hashed).
    """
    now = clock.utcnow()
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


def set_content_type(conn: Connection, resource_id: str, content_type: str) -> None:
    """The media type of a resource that had none yet (declared by a write's part)."""
    conn.execute(
        update(resources)
        .where(resources.c.id == resource_id, resources.c.content_type.is_(None))
        .values(content_type=content_type)
    )


def set_sha256(conn: Connection, resource_id: str, sha256: bytes) -> None:
    """The digest of a complete resource that had none yet (a final concatenation)."""
    conn.execute(
        update(resources)
        .where(resources.c.id == resource_id, resources.c.sha256.is_(None))
        .values(sha256=sha256)
    )


def mark_terminated(conn: Connection, resource_id: str) -> None:
    conn.execute(
        update(resources).where(resources.c.id == resource_id).values(terminated_at=clock.utcnow())
    )


def delete_resource(conn: Connection, resource_id: str) -> bool:
    # Extents and reservations go with it (ON DELETE CASCADE); deleting them explicitly too
    # keeps SQLite correct even on a connection where foreign keys were not enabled.
    conn.execute(delete(concat_sources).where(concat_sources.c.final_id == resource_id))
    conn.execute(delete(reservations).where(reservations.c.resource_id == resource_id))
    conn.execute(delete(extents).where(extents.c.resource_id == resource_id))
    conn.execute(delete(segments).where(segments.c.resource_id == resource_id))
    result = conn.execute(delete(resources).where(resources.c.id == resource_id))
    return result.rowcount == 1


def expired_resource_ids(
    conn: Connection, *, now: dt.datetime | ColumnElement[dt.datetime] = clock.NOW, limit: int
) -> list[str]:
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


def mark_assembled(conn: Connection, resource_id: str) -> None:
    conn.execute(update(resources).where(resources.c.id == resource_id).values(assembled_at=clock.utcnow()))


def awaiting_assembly(conn: Connection, *, limit: int) -> list[str]:
    """Complete resources of an object store whose pieces are not assembled yet (finals are
    read through their partials and never assembled)."""
    rows = conn.execute(
        select(resources.c.id)
        .where(
            resources.c.status != STATUS_INCOMPLETE,
            resources.c.block_size.is_not(None),
            resources.c.assembled_at.is_(None),
            resources.c.length > 0,
            or_(resources.c.concat.is_(None), resources.c.concat != "final"),
        )
        .limit(limit)
    ).all()
    return [row.id for row in rows]
