"""tus concatenation: a final upload is its partials, joined by reference, never copied.

A final is a resource of its own (with an empty object of its own), whose ``concat_sources``
rows say which partial fills which range. Its reads are reads of its partials' objects (a
:class:`~byterange_server.storage.composed.ComposedObject`); its ranges become committed as its
partials complete (:meth:`Concatenation.assemble`), so a final may be created before they are
(concatenation-unfinished).

- **Who may join what**: a creator may concatenate a partial it could read (its own, any with
  an admin token or without authentication, or one a signed URL lets it read), of known length.
- **Its digest, once**: a final is complete without a digest; the first read that needs one
  hashes it, one reader across all workers and hosts (:meth:`Concatenation.hash_once`).
- **Deleting a partial** takes back every other principal's right to its bytes, and keeps
  serving the finals of its own owner (:meth:`Concatenation.remove`).

The service creates a final (:meth:`UploadService.create_final`, beside ``allocate``: both ask
the pre-create port, create the object first, check the quota and insert the row in one
transaction); this module holds what is particular to finals.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

from ..db.ledger import extents
from ..db.ledger import jobs
from ..db.ledger import pieces
from ..db.ledger import reservations
from ..db.ledger import resources
from ..db.ledger.resources import ResourceRecord
from ..db.models import STATUS_COMPLETE
from ..errors import InvalidConcatError
from ..errors import LimitExceededError
from ..errors import PartialNotReadableError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..extents import Extent
from ..storage.base import StoredObject
from ..storage.composed import ComposedObject
from ..storage.composed import Piece
from .values import Creator
from .values import WriteContext
from .values import hash_into
from .values import open_bytes
from .values import segment_loader

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["Concatenation"]

log = logging.getLogger(__name__)

#: Seconds a final's digest lease lives without renewal (the hasher renews it every quarter).
_DIGEST_LEASE = 30.0


class Concatenation:
    """The finals of the service whose context this is."""

    def __init__(self, context: WriteContext) -> None:
        self.context = context

    def check_parts(self, count: int) -> None:
        """:raises LimitExceededError: (400) more pieces than ``max_concat_parts``."""
        limit = self.context.settings.max_concat_parts
        if limit and count > limit:
            raise LimitExceededError(
                "Upload-Concat names more partial uploads than this server allows in one final.",
                extra={"max-concat-parts": limit, "parts": count},
            )

    @staticmethod
    def sources(
        conn: Connection, source_ids: list[str], creator: Creator, vouched: frozenset[str]
    ) -> list[Piece]:
        """The pieces of a final made of ``source_ids`` in order, each partial locked (so it
        cannot be terminated between this check and the final's insert).

        :raises InvalidConcatError: (400) a source that is unknown, not a partial upload, or
            of unknown length.
        :raises PartialNotReadableError: (403) a source the creator may not read.
        """
        joined: list[Piece] = []
        start = 0
        for position, source_id in enumerate(source_ids):
            try:
                source = resources.load_resource(conn, source_id, for_update=True)
            except (ResourceNotFoundError, ResourceGoneError):
                raise InvalidConcatError(
                    "Upload-Concat names an upload that does not exist (or expired).",
                    extra={"upload": source_id},
                ) from None
            if not creator.may_read(source, vouched):
                raise PartialNotReadableError(
                    "Upload-Concat names a partial upload of another principal, by a URL "
                    "whose signature (if any) does not allow reading it.",
                    extra={"upload": source_id},
                )
            if source.concat != "partial":
                raise InvalidConcatError(
                    "Upload-Concat names an upload that is not a partial upload.",
                    extra={"upload": source_id},
                )
            if source.length is None:
                raise InvalidConcatError(
                    "A partial upload's length must be known before it is concatenated.",
                    extra={"upload": source_id},
                )
            joined.append(Piece(position, source_id, start, source.length))
            start += source.length
        return joined

    def assemble(self, final_id: str) -> bool:
        """Commit the ranges of a final whose partials are complete; complete it when covered.

        Re-adding a committed range changes nothing, so this is safe to repeat.

        :returns: whether anything changed.
        """
        with self.context.db.write() as conn:
            try:
                record = resources.load_resource(conn, final_id, for_update=True)
            except (ResourceNotFoundError, ResourceGoneError):
                return False
            if record.is_complete or record.length is None:
                return False
            found = pieces.load_pieces(conn, final_id)
            statuses = pieces.source_statuses(conn, [piece.source_id for piece in found])
            ready = [
                Extent(piece.start, piece.stop)
                for piece in found
                if piece.length and statuses.get(piece.source_id) == STATUS_COMPLETE
            ]
            known = extents.extents_within(conn, final_id, 0, record.length)
            new = [
                extent
                for extent in ready
                if not any(k.start <= extent.start and extent.stop <= k.stop for k in known)
            ]
            if new:
                extents.add_extents(conn, final_id, new)
                if self.context.events.active:
                    self.context.publish(conn, "progress", record, ranges=[[e.start, e.stop] for e in new])
            if extents.is_covered(conn, final_id, record.length):
                # The digest is computed on first read (hash_once), not here.
                if resources.mark_complete(conn, final_id, None, failed=False) and self.context.events.active:
                    self.context.publish(conn, "completed", record, failed=False)
                return True
            return bool(new)

    def open(self, resource_id: str, record: ResourceRecord | None = None) -> StoredObject:
        """The bytes of a resource whose record the caller has not loaded, or of a final: for a
        final a read-only view over its partials' objects (nothing was copied into it), else its
        own object. The record (when not given), the pieces and their objects' keys are read in
        one transaction.
        """
        storage, db = self.context.storage, self.context.db
        with db.read() as conn:
            if record is None:
                record = resources.load_resource(conn, resource_id, expired_ok=True)
            found = pieces.load_pieces(conn, resource_id) if record.concat == "final" else []
            keys = resources.object_keys(conn, [piece.source_id for piece in found])
        if not found:
            return open_bytes(storage, db, record)
        opened: dict[str, StoredObject] = {}
        try:
            for piece in found:
                if piece.source_id not in opened:
                    key = keys.get(piece.source_id, piece.source_id)
                    loader = segment_loader(db, piece.source_id) if storage.uses_segments else None
                    opened[piece.source_id] = storage.open_read(key, loader)
        except BaseException:
            for stored in opened.values():
                stored.close()
            raise
        return ComposedObject(found, [opened[piece.source_id] for piece in found])

    def hash_once(self, record: ResourceRecord) -> bool:
        """Compute and record the SHA-256 of a complete final that has none yet; False when
        another reader is computing it (the caller answers without it, at once).

        Hashing a final during its POST would cost what concatenating by reference saves, so
        the first read that needs ``ETag`` or ``Repr-Digest`` pays for it once, at disk read
        speed. Once, whoever reads: the reader that takes the final's ``digest:<id>`` row of
        ``job_leases`` (a compare-and-set, so one across all workers and hosts) hashes; every
        other reader meanwhile gets the state as it is, without ``ETag`` or ``Repr-Digest``,
        at once (waiting would hold a request thread per reader for as long as the hash takes).
        A hasher renews its lease as it goes; one that dies lets it lapse, and the next reader
        takes over.

        :returns: True once the digest is recorded (by this reader, or one that just finished).
        """
        assert record.length is not None
        db = self.context.db
        job, holder = jobs.digest_job(record.id), secrets.token_hex(16)
        with db.write(durable=False) as conn:
            if not jobs.take_lease(conn, job, holder, seconds=_DIGEST_LEASE):
                return False  # another reader is hashing it
            if resources.load_resource(conn, record.id).sha256 is not None:
                jobs.release_job_lease(conn, job, holder)  # it finished just now
                return True
        try:
            log.info("computing the digest of final upload %s (%d bytes)", record.id, record.length)
            sha256 = hashlib.sha256()
            renewed = time.monotonic()

            def renew() -> None:
                nonlocal renewed
                if time.monotonic() - renewed >= _DIGEST_LEASE / 4:
                    renewed = time.monotonic()
                    with db.write(durable=False) as conn:
                        jobs.take_lease(conn, job, holder, seconds=_DIGEST_LEASE)

            with self.open(record.id) as stored:
                hash_into(stored, record.length, [sha256], renew)
            with db.write() as conn:
                resources.set_sha256(conn, record.id, sha256.digest())
                jobs.release_job_lease(conn, job, holder)
        except BaseException:
            with db.write(durable=False) as conn:
                jobs.release_job_lease(conn, job, holder)
            raise
        return True

    def remove(self, conn: Connection, record: ResourceRecord) -> list[str]:
        """Delete the rows of a resource (or only hide it while a final of its owner reads it),
        and end its live writes either way. Every removal (DELETE, expiry) comes here: any
        resource may be a partial that finals read, or a final.

        A partial's owner who deletes it (or lets it expire) takes back every other principal's
        right to its bytes: the finals of other owners that read it are deleted with it, in
        this transaction, each with a ``deleted`` event (``cause: source-deleted``). A final of
        the same owner keeps reading them, so the partial is only hidden (``terminated_at``)
        until the last such final goes. (Without authentication everyone is the same owner.)

        :returns: ``(resource id, storage key)`` of the objects now unreferenced, to be
            deleted: the resource's own, those of the finals deleted with it, and those of
            terminated partials no final reads now.
        """
        resource_id = record.id
        finals: list[ResourceRecord] = []
        for final_id in pieces.finals_reading(conn, resource_id):
            try:
                final = resources.load_resource(conn, final_id, for_update=True, expired_ok=True)
            except ResourceNotFoundError:
                continue
            if final.owner != record.owner:
                finals.append(final)
        hidden = len(finals) < len(pieces.finals_reading(conn, resource_id))
        sources = [piece.source_id for final in finals for piece in pieces.load_pieces(conn, final.id)]
        if not hidden:
            sources += [piece.source_id for piece in pieces.load_pieces(conn, resource_id)]
        # Read the keys before the rows that hold them go.
        keys = resources.object_keys(conn, [resource_id, *(final.id for final in finals), *sources])
        gone: list[str] = []
        for final in finals:
            resources.delete_resource(conn, final.id)
            jobs.release_job_lease(conn, jobs.digest_job(final.id))
            gone.append(final.id)
            if self.context.events.active:
                self.context.publish(conn, "deleted", final, cause="source-deleted", source=resource_id)
        if hidden:
            # A final of the same owner serves these bytes: gone for clients, the bytes stay.
            resources.mark_terminated(conn, resource_id)
            reservations.end_reservations(conn, resource_id)
        else:
            resources.delete_resource(conn, resource_id)
            if record.concat == "final":
                jobs.release_job_lease(conn, jobs.digest_job(resource_id))
            gone.append(resource_id)
        orphans = pieces.unreferenced_terminated(conn, [other for other in sources if other != resource_id])
        for orphan in orphans:
            resources.delete_resource(conn, orphan)
        return [(rid, keys.get(rid, rid)) for rid in (*gone, *orphans)]
