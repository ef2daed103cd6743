"""The upload service: allocation, state, completion and deletion, over the parts of the domain.

Invariant
---------
Bytes are written to storage and ``sync()``-ed **before** the extent row that claims them is
committed, and HEAD reports only committed extents. A crash at any point can leave bytes that
no extent claims (harmless: they are overwritten or ignored) but never an extent whose bytes
are missing.

Who does what
-------------
- :mod:`.protocol` turns the body into part events; the domain never sees HTTP framing.
- :mod:`.db.ledger` runs the SQL (reservations with leases, coalesced extents).
- :mod:`.storage` writes and syncs bytes; it decides nothing.
- this module creates resources, reports their state, completes and deletes them;
  :mod:`.writes` applies one write request (reserve, stream, sync, commit), :mod:`.leases`
  renews the leases of streaming writes, :mod:`.concat` holds what is particular to tus final
  uploads. They use the service only through a :class:`~.values.WriteContext`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import TYPE_CHECKING

from ..config import Settings
from ..db import clock
from ..db.engine import Database
from ..db.ledger import extents
from ..db.ledger import pieces
from ..db.ledger import reservations
from ..db.ledger import resources
from ..db.ledger.resources import ResourceRecord
from ..errors import ByterangeError
from ..errors import LimitExceededError
from ..errors import OffsetMismatchError
from ..errors import QuotaExceededError
from ..errors import ReprDigestMismatchError
from ..errors import ResourceExistsError
from ..errors import ResourceNotFoundError
from ..errors import ResourceTooLargeError
from ..extents import Extent
from ..protocol.digests import SUPPORTED_DIGESTS
from ..storage.base import StorageBackend
from ..storage.base import StoredObject
from ..storage.base import generation_key
from ..storage.base import validate_resource_id
from ..storage.composed import Piece
from .assembly import Assembler
from .concat import Concatenation
from .garbage import Collector
from .leases import LeaseKeeper
from .lifecycle import CreationRequest
from .lifecycle import EventBus
from .lifecycle import PreCreate
from .values import ANONYMOUS
from .values import MAX_CONTENT_TYPE_LENGTH
from .values import BodySource
from .values import Creator
from .values import PatchDecoder
from .values import ResourceState
from .values import WriteContext
from .values import WriteOptions
from .values import check_not_failed
from .values import hash_into
from .values import open_bytes
from .writes import WriteSession

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: Longest stored filename (the column size in models.py).
MAX_FILENAME_LENGTH = 1024
#: How long the revoking request waits for the appends it revoked to commit and go (then it
#: answers anyway: see end_stale_appends).
_STALE_WAIT = 5.0
#: The options of a write that asks for nothing in particular.
_PLAIN_WRITE = WriteOptions()


class UploadService:
    """The domain over one database and one storage backend.

    Its ports are given at construction: ``events``, the bus its lifecycle events are
    published on (metrics and the hook outbox subscribe to it); ``pre_create``, asked before any
    resource is created, raising to refuse it (the pre-create hook, see hooks/precreate.py).
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: StorageBackend,
        *,
        events: EventBus,
        pre_create: PreCreate | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.events = events
        self.pre_create = pre_create
        #: The thread that renews streaming writes' leases (it starts with the first of them).
        self.keeper = LeaseKeeper(settings, db)
        #: What writes and concatenation may use of this service.
        self.context = WriteContext(
            settings=settings,
            db=db,
            storage=storage,
            events=events,
            keeper=self.keeper,
            finalize=self._finalize,
        )
        self.concat = Concatenation(self.context)
        self.garbage = Collector(self.context)
        self.assembler = Assembler(self.context)

    # -- allocation and state --------------------------------------------------------------------

    def allocate(
        self,
        *,
        length: int | None = None,
        content_type: str | None = None,
        filename: str | None = None,
        expected_digest: tuple[str, bytes] | None = None,
        upload_metadata: str | None = None,
        concat: str | None = None,
        creator: Creator = ANONYMOUS,
        ranges_budget: int | None = None,
    ) -> ResourceState:
        """Create an empty resource with an unguessable id (128 random bits); returns its state
        (``ranges_budget``: see :meth:`state`).

        ``creator`` says who it belongs to, and for a signed creation URL its derived id and
        lower maximum size.

        ``upload_metadata`` (tus ``Upload-Metadata``, validated, stored whole) and ``concat``
        (``"partial"``) are kept for tus and echoed on its HEAD.

        :raises ResourceTooLargeError: (413) when ``length`` exceeds the maximum size.
        """
        max_size = creator.limit(self.settings.max_resource_size)
        if length is not None and length > max_size:
            raise ResourceTooLargeError(
                "The declared length exceeds the maximum resource size.",
                extra={"length": length, "max-size": max_size},
            )
        for name, value, limit in (
            ("content-type", content_type, MAX_CONTENT_TYPE_LENGTH),
            ("filename", filename, MAX_FILENAME_LENGTH),
        ):
            if value is not None and len(value) > limit:
                raise LimitExceededError(
                    f"The {name} is longer than {limit} characters.",
                    extra={"field": name, "max-length": limit},
                )
        if length == 0 and expected_digest is not None:
            # Complete at once: check the digest before anything exists, leaving no orphan.
            algorithm, expected = expected_digest
            actual = SUPPORTED_DIGESTS[algorithm](b"").digest()
            if not secrets.compare_digest(actual, expected):
                raise ReprDigestMismatchError(
                    "The declared Repr-Digest does not match an empty representation.",
                    extra={"algorithm": algorithm, "expected": base64.b64encode(expected).decode()},
                )
        if self.pre_create is not None:
            self.pre_create(
                CreationRequest(
                    protocol=None,
                    length=length,
                    content_type=content_type,
                    filename=filename,
                    upload_metadata=upload_metadata,
                    concat=concat,
                    owner=creator.owner,
                )
            )
        resource_id, storage_key, derived = self._create_object(creator)
        expires_at = clock.at_from_now(self.settings.expire_after)
        block_size = self.storage.block_size(length)
        try:
            with self.db.write() as conn:
                self._check_quota(conn, creator.owner, length)
                # The unique id decides a replay that raced past _create_object (ResourceExistsError).
                resources.insert_resource(
                    conn,
                    resource_id,
                    length=length,
                    content_type=content_type,
                    filename=filename,
                    expected_digest=expected_digest,
                    expires_at=expires_at,
                    upload_metadata=upload_metadata,
                    concat=concat,
                    owner=creator.owner,
                    storage_key=storage_key if derived else None,
                    block_size=block_size,
                )
                if self.events.active:
                    self.context.publish(
                        conn,
                        "created",
                        resources.load_resource(conn, resource_id),
                        content_type=content_type,
                        filename=filename,
                        upload_metadata=upload_metadata,
                        concat=concat,
                    )
        except BaseException:
            self.storage.delete(storage_key)
            raise
        if length == 0:  # nothing to upload: complete at once
            self._finalize(resource_id)
        return self.state(resource_id, ranges_budget=ranges_budget)

    def _check_quota(self, conn: Connection, owner: str | None, length: int | None) -> None:
        """Refuse a creation that would take ``owner`` past its quota (in the creation's own
        transaction: resources.principal_usage serialises one principal's creations).

        :raises QuotaExceededError: (403) with the limits and the current usage.
        """
        settings = self.settings
        most, most_bytes = settings.max_resources_per_principal, settings.max_bytes_per_principal
        if owner is None or not (most or most_bytes):
            return
        count, used = resources.principal_usage(conn, owner)
        if (most and count >= most) or (most_bytes and used + (length or 0) > most_bytes):
            raise QuotaExceededError(
                "Creating this resource would exceed your quota of open resources or of bytes "
                "declared for them; complete or delete some first.",
                extra={
                    "max-resources": most,
                    "resources": count,
                    "max-bytes": most_bytes,
                    "bytes": used,
                    "length": length,
                },
            )

    def _create_object(self, creator: Creator) -> tuple[str, str, bool]:
        """A new resource's id and its stored object, created before its row: a crash leaves an
        unreferenced object, never a row without its object.

        :returns: ``(resource id, storage key, whether the id was derived)``.
        :raises ResourceExistsError: the derived id of a signed creation URL exists already (a
            replay; the row's unique id decides a replay that races past this check).
        """
        derived = creator.resource_id is not None
        resource_id = creator.resource_id or secrets.token_urlsafe(16)
        if derived and self._id_taken(resource_id):
            raise ResourceExistsError(extra={"resource": resource_id})
        # A derived id is created again by its URL after a DELETE: each creation is a generation
        # with an object of its own, so a writer of an earlier one can never reach the bytes of
        # a later one (see storage/base.py). A random id is created once: its object keeps the
        # bare id, which a release before generations also finds (a rolling upgrade).
        storage_key = generation_key(resource_id, secrets.token_urlsafe(9)) if derived else resource_id
        self.storage.create(storage_key)
        return resource_id, storage_key, derived

    def _id_taken(self, resource_id: str) -> bool:
        with self.db.read() as conn:
            return resources.resource_row_exists(conn, resource_id)

    def owner_of(self, resource_id: str) -> tuple[bool, str | None]:
        """(exists, owner) of a resource, expired or not; (False, None) for a malformed id."""
        try:
            validate_resource_id(resource_id)
        except ByterangeError:
            return False, None
        with self.db.read() as conn:
            return resources.resource_owner(conn, resource_id)

    def state(self, resource_id: str, *, ranges_budget: int | None = None) -> ResourceState:
        """The resource and its first committed extents (one indexed query).

        ``ranges_budget``: the longest ``Committed-Ranges`` value the caller may send (its
        header limit); extents are read while they fit. None: the caller shows no ranges, only
        the offset, and only the first extent is read.

        :raises ResourceNotFoundError: (404); :raises ResourceGoneError: (410).
        """
        validate_resource_id(resource_id)
        snapshot = self._snapshot(resource_id, ranges_budget)
        record = snapshot.resource
        if record.concat == "final" and not record.is_complete:
            # Picks up partials that completed since (also after a crash between a partial's
            # completion and the final's update).
            if self.concat.assemble(resource_id):
                snapshot = self._snapshot(resource_id, ranges_budget)
        elif not record.is_complete and record.length is not None and (
            record.length == 0 or snapshot.extents[:1] == [Extent(0, record.length)]
        ):
            # Covered but not finalized: the completing request died before hashing.
            self._finalize(resource_id)
            snapshot = self._snapshot(resource_id, ranges_budget)
        return ResourceState(snapshot.resource, snapshot.extents, snapshot.truncated)

    def _snapshot(self, resource_id: str, ranges_budget: int | None) -> resources.ResourceSnapshot:
        # One statement, no transaction, for a resource with few extents (a HEAD's fixed cost);
        # a transaction of two for one with more.
        with self.db.single() as conn:
            snapshot = self.context.joined_snapshot(conn, resource_id, ranges_budget)
        if snapshot is not None:
            return snapshot
        with self.db.read() as conn:
            return self.context.snapshot(conn, resource_id, ranges_budget)

    @staticmethod
    def check_offset(state: ResourceState, offset: int) -> None:
        """:raises OffsetMismatchError: (409) unless ``offset`` ends the committed prefix."""
        if state.offset != offset:
            raise OffsetMismatchError(
                "Upload-Offset is not the end of the committed bytes; nothing was applied.",
                extra={"expected-offset": state.offset, "provided-offset": offset},
            )

    def end_stale_appends(self, resource_id: str) -> None:
        """End the in-flight IETF appends of a resource, as a newer HEAD or append asks.

        Their reservations are marked revoked in the database, so this works across worker
        processes and hosts. Each such writer notices within ``REVOCATION_POLL`` seconds (or
        before its next storage write), stops reading its body, ``fdatasync``s and commits the
        prefix it received, and releases its range; this waits up to ``_STALE_WAIT`` seconds
        for that, so the offset reported next is the true one and the next append at it is
        not refused. A writer that cannot be reached (its process is gone) lets its lease run
        out (a revoked lease is never renewed), which also ends the wait; at worst the wait ends at
        its bound and the state reported is what is committed.

        :raises ResourceNotFoundError: (404); :raises ResourceGoneError: (410).
        """
        validate_resource_id(resource_id)
        with self.db.write() as conn:
            resources.load_resource(conn, resource_id, for_update=True)
            revoked = reservations.revoke_writes(conn, resource_id)
        deadline = time.monotonic() + min(_STALE_WAIT, self.settings.lease_seconds)
        while revoked and time.monotonic() < deadline:
            time.sleep(0.02)
            with self.db.read() as conn:
                revoked = reservations.live(conn, revoked)

    def invalidate(self, resource_id: str) -> None:
        """Mark an incomplete upload invalid: IETF (draft -08 on) after content went past its
        length. Every later load of it raises UploadInvalidError (410) until it expires."""
        validate_resource_id(resource_id)
        with self.db.write() as conn:
            resources.invalidate(conn, resource_id)

    def committed_page(self, resource_id: str, *, after: int, limit: int) -> tuple[list[Extent], bool]:
        validate_resource_id(resource_id)
        with self.db.read() as conn:
            resources.load_resource(conn, resource_id)
            return extents.page_extents(conn, resource_id, after=after, limit=limit)

    def extent_map_page(
        self, resource_id: str, *, after: int, limit: int
    ) -> tuple[list[Extent], bool, list[Extent]]:
        """:meth:`committed_page`, and the ranges in flight (live reservations) ending after
        ``after``. In flight is read first: a write that commits in between then shows as both
        (committed wins in a picture), never as a hole."""
        validate_resource_id(resource_id)
        with self.db.read() as conn:
            resources.load_resource(conn, resource_id)
            flying = reservations.in_flight(conn, resource_id, after=after)
            page, more = extents.page_extents(conn, resource_id, after=after, limit=limit)
        return page, more, flying

    def extents_within(self, resource_id: str, start: int, stop: int) -> list[Extent]:
        with self.db.read() as conn:
            return extents.extents_within(conn, resource_id, start, stop)

    def open_object(self, resource_id: str, record: ResourceRecord | None = None) -> StoredObject:
        """The bytes of a resource: its own object, or for a final concatenation a read-only
        view over its partials' objects (nothing was copied into it).

        ``record``, when the caller has loaded it, spares other resources the read transaction
        that looks for concatenation pieces (a GET of a small range pays for every query).
        """
        validate_resource_id(resource_id)
        if record is not None and record.concat != "final":
            return open_bytes(self.storage, self.db, record)
        return self.concat.open(resource_id, record)

    def with_digest(self, state: ResourceState, *, ranges_budget: int | None = None) -> ResourceState:
        """``state``, with the SHA-256 computed first if a complete resource has none yet (read
        again then, with ``ranges_budget``: see :meth:`state`).

        Only a final concatenation is complete without one; one reader hashes it, and the others
        meanwhile get ``state`` as it is, at once (see :meth:`.Concatenation.hash_once`).
        """
        record = state.record
        if not record.is_complete or record.sha256 is not None or record.length is None:
            return state
        if not self.concat.hash_once(record):
            return state  # another reader is hashing it
        return self.state(state.id, ranges_budget=ranges_budget)

    # -- tus concatenation -----------------------------------------------------------------------

    def create_final(
        self,
        source_ids: list[str],
        *,
        upload_metadata: str | None = None,
        upload_concat: str | None = None,
        creator: Creator = ANONYMOUS,
        vouched: frozenset[str] = frozenset(),
    ) -> ResourceState:
        """A tus final upload: the partials in order, joined by reference, not by copying.

        ``upload_concat``: the ``Upload-Concat`` field to echo on its HEAD (stored as given).

        Partials may still be incomplete (concatenation-unfinished): their ranges of the final
        become committed when they complete. Their lengths must be known. The creator must be
        allowed to read each of them (:meth:`Creator.may_read`; ``vouched``: the ids the
        request named by a URL whose signature allows reading them). The final's length counts
        against the creator's quota until its digest is computed (:meth:`with_digest`).

        :raises LimitExceededError: (400) more partials than ``max_concat_parts``, before any
            of them is looked at.
        :raises InvalidConcatError: (400) a source that is unknown, not a partial upload, or
            of unknown length.
        :raises PartialNotReadableError: (403) a source the creator may not read.
        :raises ResourceTooLargeError: (413) when the sum exceeds the maximum size.
        :raises QuotaExceededError: (403) when the sum exceeds what the quota leaves.
        """
        self.concat.check_parts(len(source_ids))
        for source_id in source_ids:
            validate_resource_id(source_id)
        if self.pre_create is not None:
            # Its length is only known once the partials are read; the hook sees None.
            self.pre_create(
                CreationRequest(
                    protocol=None,
                    length=None,
                    content_type=None,
                    filename=None,
                    upload_metadata=upload_metadata,
                    concat="final",
                    owner=creator.owner,
                )
            )
        # A signed creation URL creates exactly one resource, a final too; the final keeps an
        # (empty) object of its own, so every resource has one.
        resource_id, storage_key, derived = self._create_object(creator)
        try:
            with self.db.write() as conn:
                joined = self.concat.sources(conn, source_ids, creator, vouched)
                length = sum(piece.length for piece in joined)
                max_size = creator.limit(self.settings.max_resource_size)
                if length > max_size:
                    raise ResourceTooLargeError(
                        "The concatenated length exceeds the maximum resource size.",
                        extra={"length": length, "max-size": max_size},
                    )
                self._check_quota(conn, creator.owner, length)
                resources.insert_resource(
                    conn,
                    resource_id,
                    length=length,
                    content_type=None,
                    filename=None,
                    expected_digest=None,
                    expires_at=clock.at_from_now(self.settings.expire_after),
                    upload_metadata=upload_metadata,
                    concat="final",
                    owner=creator.owner,
                    storage_key=storage_key if derived else None,
                    upload_concat=upload_concat,
                )
                pieces.insert_pieces(conn, resource_id, joined)
                if self.events.active:
                    self.context.publish(
                        conn,
                        "created",
                        resources.load_resource(conn, resource_id),
                        upload_metadata=upload_metadata,
                        concat="final",
                        sources=list(source_ids),
                    )
        except BaseException:
            self.storage.delete(storage_key)
            raise
        self.concat.assemble(resource_id)
        return self.state(resource_id)

    def check_concat_parts(self, count: int) -> None:
        """:raises LimitExceededError: (400) more pieces than ``max_concat_parts``."""
        self.concat.check_parts(count)

    def pieces(self, resource_id: str) -> list[Piece]:
        with self.db.read() as conn:
            return pieces.load_pieces(conn, resource_id)

    # -- deletion and expiry ---------------------------------------------------------------------

    def delete(self, resource_id: str) -> None:
        """Remove rows, then bytes.

        The resource's reservations go in the same transaction, so its live writers are
        fenced at once: each process's lease keeper sees them gone within a tick, cuts the
        body and the write answers 404 having committed nothing (see leases.LeaseKeeper). A
        writer the keeper has not reached yet writes at most into this generation's object,
        never into a resource created again under the same id (which gets a new storage key).
        """
        validate_resource_id(resource_id)
        with self.db.write() as conn:
            record = resources.load_resource(conn, resource_id, for_update=True)
            gone = self.concat.remove(conn, record)
            recorded = self.garbage.record_removed(conn, gone)
            if self.events.active:
                self.context.publish(conn, "deleted", record)
        self.garbage.collect_now(recorded, [key for _, key in gone])

    def remove_expired(self, *, limit: int = 1000) -> int:
        """Delete expired incomplete resources, rows first, then bytes. Returns the count."""
        removed = 0
        with self.db.read() as conn:
            candidates = resources.expired_resource_ids(conn, limit=limit)
        for resource_id in candidates:
            with self.db.write() as conn:
                # Checked again under the row lock: a write that began before the expiry may
                # still commit (see WriteSession._commit), so a resource with a live writer
                # waits for the next sweep; one that completed meanwhile is not expired any more.
                try:
                    record = resources.load_resource(conn, resource_id, for_update=True, expired_ok=True)
                except ResourceNotFoundError:
                    continue  # deleted meanwhile
                if not record.is_expired() or reservations.has_live_writers(conn, resource_id):
                    continue
                gone = self.concat.remove(conn, record)
                recorded = self.garbage.record_removed(conn, gone)
                if self.events.active:
                    self.context.publish(conn, "expired", record)
            self.garbage.collect_now(recorded, [key for _, key in gone])
            removed += 1
        return removed

    # -- writes ----------------------------------------------------------------------------------

    def write(
        self,
        resource_id: str,
        decoder: PatchDecoder,
        body: BodySource,
        options: WriteOptions = _PLAIN_WRITE,
        *,
        ranges_budget: int | None = None,
    ) -> ResourceState:
        """Apply a patch document (or a partial PUT) to a resource; returns the state after it
        (``ranges_budget``: see :meth:`state`).

        :raises ByterangeError: 400/404/409/410/412/422 as described in docs/protocol.md;
            the state after the error is what a HEAD shows.
        """
        validate_resource_id(resource_id)
        session = WriteSession(self.context, resource_id, options, ranges_budget)
        session.run(decoder, body)
        if session.snapshot is not None:  # read in the commit's transaction: no extra round trip
            snapshot = session.snapshot
            return ResourceState(snapshot.resource, snapshot.extents, snapshot.truncated)
        return self.state(resource_id, ranges_budget=ranges_budget)

    # -- completion ------------------------------------------------------------------------------

    def _finalize(self, resource_id: str, storage_key: str | None = None) -> None:
        """Hash the complete representation and make it immutable.

        ``storage_key``: the generation a write just covered; nothing is done if the resource
        was deleted (and perhaps created again) since.

        :raises ReprDigestMismatchError: (409) when an expected digest was declared and differs.
        """
        with self.db.read() as conn:
            # A write that began before the expiry and covered the last gap completes it.
            record = resources.load_resource(conn, resource_id, expired_ok=True)
        if storage_key is not None and record.object_key != storage_key:
            return
        if record.is_complete:
            check_not_failed(record)
            return
        assert record.length is not None
        expected_hash = None
        if record.expected_digest_algorithm and record.expected_digest_algorithm != "sha-256":
            expected_hash = SUPPORTED_DIGESTS[record.expected_digest_algorithm]()
        # Written in order through this process: hashed as the bytes arrived, nothing to read.
        digest = self.context.digests.finish(resource_id, record.object_key, record.length)
        if digest is None or expected_hash is not None:
            sha256 = hashlib.sha256()
            with open_bytes(self.storage, self.db, record) as stored:
                hash_into(stored, record.length, [h for h in (sha256, expected_hash) if h])
            digest = sha256.digest()
        failed = False
        if record.expected_digest is not None:
            actual = digest if expected_hash is None else expected_hash.digest()
            failed = not secrets.compare_digest(actual, record.expected_digest)
        with self.db.write() as conn:
            key = record.object_key
            marked = resources.mark_complete(conn, resource_id, digest, failed=failed, storage_key=key)
            if marked and self.events.active:
                self.context.publish(conn, "completed", record, failed=failed)
            record = resources.load_resource(conn, resource_id, expired_ok=True)
            finals = pieces.finals_reading(conn, resource_id) if record.concat == "partial" else []
        for final_id in finals:  # concatenation-unfinished: the finals waiting for this one
            self.concat.assemble(final_id)
        if marked and not failed and self.settings.s3_assemble_on_completion:
            self.assembler.assemble_soon(resource_id)
        check_not_failed(record)

    # -- stored bytes after the request ----------------------------------------------------------

    def collect_garbage(self, *, limit: int = 100) -> int:
        """Delete recorded garbage that is due (see garbage.py); returns the objects deleted."""
        return self.garbage.collect_due(limit=limit)

    def assemble_pending(self, *, limit: int = 16) -> int:
        """Object stores: assemble complete resources into one object each (see assembly.py)."""
        return self.assembler.assemble_pending(limit=limit)

    #: :raises ReprDigestMismatchError: (409) for a representation that failed its declared digest.
    check_not_failed = staticmethod(check_not_failed)
