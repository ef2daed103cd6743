"""The upload service: allocation, writes, state, completion and deletion.

Invariant
---------
Bytes are written to storage and ``sync()``-ed **before** the extent row that claims them is
committed, and HEAD reports only committed extents. A crash at any point can leave bytes that
no extent claims (harmless: they are overwritten or ignored) but never an extent whose bytes
are missing.

Who does what
-------------
- :mod:`.protocol` turns the body into part events; this module never sees HTTP framing.
- :mod:`.ledger` runs the SQL (reservations with leases, coalesced extents).
- :mod:`.storage` writes and syncs bytes; it decides nothing.

A write request reserves each part's range when the part's fields arrive, streams its bytes
(writing the gaps, comparing bytes that are already committed), then commits everything in one
short transaction. See :class:`_WriteSession` for how interruptions and errors are applied.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Protocol

from ..config import Settings
from ..db import ledger
from ..db.engine import Database
from ..db.ledger import ResourceRecord
from ..db.models import STATUS_COMPLETE
from ..errors import ByterangeError
from ..errors import BytesPastLengthError
from ..errors import BytesPastMaxSizeError
from ..errors import ChecksumMismatchError
from ..errors import ContentMismatchError
from ..errors import DigestMismatchError
from ..errors import FinalUploadWriteError
from ..errors import InvalidConcatError
from ..errors import LengthConflictError
from ..errors import LimitExceededError
from ..errors import MalformedBodyError
from ..errors import OffsetMismatchError
from ..errors import OverlappingPartsError
from ..errors import PartialNotReadableError
from ..errors import QuotaExceededError
from ..errors import ReprDigestMismatchError
from ..errors import ResourceExistsError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..errors import ResourceTooLargeError
from ..errors import StorageError
from ..errors import TooManyExtentsError
from ..errors import TruncatedBodyError
from ..errors import WriteInProgressError
from ..extents import Extent
from ..extents import normalize
from ..extents import prefix_end
from ..hooks.precreate import CreationRequest
from ..protocol.digests import CHECKSUM_ALGORITHMS
from ..protocol.digests import SUPPORTED_DIGESTS
from ..protocol.digests import parse_digest_field
from ..protocol.digests import pick_digest
from ..protocol.events import NEED_DATA
from ..protocol.events import EndOfPatch
from ..protocol.events import PartData
from ..protocol.events import PartEnd
from ..protocol.events import PartStart
from ..protocol.parts import PartHeader
from ..storage.base import StorageBackend
from ..storage.base import StorageObjectMissingError
from ..storage.base import StoredObject
from ..storage.base import generation_key
from ..storage.base import validate_resource_id
from ..storage.composed import ComposedObject
from ..storage.composed import Piece
from .lifecycle import EventBus
from .lifecycle import EventKind
from .lifecycle import ResourceEvent

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

#: Bytes read per step when hashing or comparing stored data.
_READ_CHUNK = 1024 * 1024
#: Longest stored media type and filename (the column sizes in models.py).
MAX_CONTENT_TYPE_LENGTH = 255
MAX_FILENAME_LENGTH = 1024
#: Upper bound on extents read for a HEAD, whatever the header limit.
_SNAPSHOT_LIMIT = 1024
#: How often the lease keeper asks whether its writes were revoked or fenced, and how long the
#: revoking request waits for them to commit and go (then it answers anyway: see
#: end_stale_appends).
_REVOCATION_POLL = 0.25
_STALE_WAIT = 5.0
#: Seconds a final's digest lease lives without renewal (the hasher renews it every quarter).
_DIGEST_LEASE = 30.0


def _digest_job(final_id: str) -> str:
    """The ``job_leases`` row of the one reader that hashes a final (ids are at most 64
    characters, the column too: a longer id is hashed down)."""
    name = f"digest:{final_id}"
    return name if len(name) <= 64 else "digest:" + hashlib.sha256(final_id.encode()).hexdigest()[:48]
#: A request's parts are reserved in batches: those decoded from one body chunk, at most this
#: many, holding at most this many bytes of their data until reserved (see _WriteSession._flush).
_BATCH_PARTS = 256
_BATCH_BYTES = 1024 * 1024


class PatchDecoder(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> object: ...


class BodySource(Protocol):
    """The request body as the service sees it: chunks, and whether it ended early."""

    def __iter__(self) -> Iterator[bytes]: ...

    @property
    def interrupted(self) -> bool: ...

    def digest(self, algorithm: str) -> bytes:
        """Digest of every byte received so far, with an algorithm of SUPPORTED_DIGESTS."""
        ...


@dataclasses.dataclass(frozen=True)
class ResourceState:
    """What HEAD and every write response report."""

    record: ResourceRecord
    #: Committed extents, in order; only the first ones when ``truncated``.
    extents: list[Extent]
    truncated: bool

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def length(self) -> int | None:
        return self.record.length

    @property
    def offset(self) -> int:
        """End of the committed prefix that starts at byte 0."""
        return prefix_end(self.extents)

    @property
    def complete(self) -> bool:
        return self.record.is_complete

    @property
    def etag(self) -> str | None:
        # A representation that failed its declared digest is never served, so it has no
        # validator either.
        if self.record.sha256 is None or not self.complete or self.record.is_failed:
            return None
        return '"' + base64.urlsafe_b64encode(self.record.sha256).decode().rstrip("=") + '"'


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    transaction: str = "persist"
    #: (algorithm, expected digest) of the request content, from Content-Digest.
    content_digest: tuple[str, bytes] | None = None
    #: (algorithm, expected digest) of the request content, from tus ``Upload-Checksum``;
    #: a mismatch is a ChecksumMismatchError (460) instead of a DigestMismatchError.
    checksum: tuple[str, bytes] | None = None
    #: tus append: the committed prefix must end exactly here (``Upload-Offset``), checked
    #: under the resource row lock when the range is reserved.
    expected_offset: int | None = None
    #: tus checksum-trailer: called once the body has ended, returns the (algorithm, digest)
    #: that arrived in the trailer section (or raises a 400 if it did not).
    trailer_checksum: Callable[[], tuple[str, bytes]] | None = None
    #: IETF append: a newer request for the same upload may end this one (draft §"Concurrency");
    #: the session then stops reading and commits what it has.
    revocable: bool = False
    #: Called (from the lease keeper's thread) when the write must stop at once -- revoked, or
    #: fenced by a DELETE of its resource -- so the API layer can cut the body short.
    on_stale: Callable[[], None] | None = None
    #: A lower maximum size for this request (a signed URL's ``max-size``).
    max_size: int | None = None
    #: Who writes (auth.py), for the concurrent-writes-per-principal limit.
    principal: str | None = None

    @property
    def atomic(self) -> bool:
        # A digest cannot be verified for bytes that never arrived: an interrupted or
        # mismatching request that carries one keeps nothing (tus checksum, E11).
        return (
            self.transaction == "atomic"
            or self.content_digest is not None
            or self.checksum is not None
            or self.trailer_checksum is not None
        )

    @property
    def digest_algorithm(self) -> str | None:
        """The algorithm the body must be hashed with, if any."""
        chosen = self.content_digest or self.checksum
        return chosen[0] if chosen else None

    @property
    def applied(self) -> str:
        """The transaction mode that applies (``Preference-Applied``): a Content-Digest makes
        a request all-or-nothing whatever it preferred."""
        return "atomic" if self.atomic else "persist"


@dataclasses.dataclass(frozen=True)
class Creator:
    """Who creates a resource, as the HTTP layer authenticated them (auth.py)."""

    #: The principal the resource will belong to; None without authentication.
    owner: str | None = None
    #: An id the caller derived (a signed creation URL creates exactly one resource); None for
    #: a fresh random one.
    resource_id: str | None = None
    #: A maximum size below the configured one (a signed URL's ``max-size``).
    max_size: int | None = None
    #: An admin token: it may concatenate any principal's partial uploads.
    admin: bool = False

    def limit(self, configured: int) -> int:
        return configured if self.max_size is None else min(configured, self.max_size)

    def may_read(self, source: ResourceRecord, vouched: frozenset[str]) -> bool:
        """Whether this creator may read ``source`` (a partial it concatenates), as a GET of it
        would be judged: anyone without authentication; its owner or an admin; or a request
        that named it by a URL whose signature allows reading it (``vouched``)."""
        return self.owner is None or self.admin or source.owner == self.owner or source.id in vouched


#: No authentication: nobody owns what is created.
ANONYMOUS = Creator()


class UploadService:
    def __init__(self, settings: Settings, db: Database, storage: StorageBackend) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        #: Lifecycle events (events.py): hooks and metrics subscribe here.
        self.events = EventBus()
        #: Asked before any resource is created; raises to refuse (hooks/precreate.py).
        self.pre_create: Callable[[CreationRequest], None] | None = None
        self._keeper: _LeaseKeeper | None = None
        self._keeper_lock = threading.Lock()

    @property
    def keeper(self) -> _LeaseKeeper:
        """The thread that renews streaming writes' leases (started with the first of them)."""
        with self._keeper_lock:
            if self._keeper is None:
                self._keeper = _LeaseKeeper(self.settings, self.db)
            return self._keeper

    def _publish(
        self, conn: Connection, kind: EventKind, record: ResourceRecord, **data: object
    ) -> None:
        self.events.publish(
            conn,
            ResourceEvent(
                kind=kind,
                resource_id=record.id,
                at=ledger.utcnow(),
                owner=record.owner,
                length=record.length,
                data=data,
            ),
        )

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
    ) -> ResourceState:
        """Create an empty resource with an unguessable id (128 random bits).

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
        expires_at = ledger.utcnow() + dt.timedelta(seconds=self.settings.expire_after)
        try:
            with self.db.write() as conn:
                self._check_quota(conn, creator.owner, length)
                # The unique id decides a replay that raced past _create_object (ResourceExistsError).
                ledger.insert_resource(
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
                )
                if self.events.active:
                    self._publish(
                        conn,
                        "created",
                        ledger.load_resource(conn, resource_id),
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
        return self.state(resource_id)

    def _check_quota(self, conn: Connection, owner: str | None, length: int | None) -> None:
        """Refuse a creation that would take ``owner`` past its quota (in the creation's own
        transaction: ledger.principal_usage serialises one principal's creations).

        :raises QuotaExceededError: (403) with the limits and the current usage.
        """
        settings = self.settings
        most, most_bytes = settings.max_resources_per_principal, settings.max_bytes_per_principal
        if owner is None or not (most or most_bytes):
            return
        count, used = ledger.principal_usage(conn, owner)
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
            return ledger.resource_row_exists(conn, resource_id)

    def owner_of(self, resource_id: str) -> tuple[bool, str | None]:
        """(exists, owner) of a resource, expired or not; (False, None) for a malformed id."""
        try:
            validate_resource_id(resource_id)
        except ByterangeError:
            return False, None
        with self.db.read() as conn:
            return ledger.resource_owner(conn, resource_id)

    def state(self, resource_id: str) -> ResourceState:
        """The resource and its first committed extents (one indexed query).

        :raises ResourceNotFoundError: (404); :raises ResourceGoneError: (410).
        """
        validate_resource_id(resource_id)
        snapshot = self._snapshot(resource_id)
        record = snapshot.resource
        if record.concat == "final" and not record.is_complete:
            # Picks up partials that completed since (also after a crash between a partial's
            # completion and the final's update).
            if self._assemble(resource_id):
                snapshot = self._snapshot(resource_id)
        elif not record.is_complete and record.length is not None and (
            record.length == 0 or snapshot.extents[:1] == [Extent(0, record.length)]
        ):
            # Covered but not finalized: the completing request died before hashing.
            self._finalize(resource_id)
            snapshot = self._snapshot(resource_id)
        return ResourceState(snapshot.resource, snapshot.extents, snapshot.truncated)

    def _snapshot(self, resource_id: str) -> ledger.ResourceSnapshot:
        with self.db.read() as conn:
            return ledger.load_snapshot(
                conn, resource_id, limit=_SNAPSHOT_LIMIT, fits=self._header_room()
            )

    def _header_room(self) -> Callable[[Extent], bool]:
        """A predicate that accepts extents while their ``Committed-Ranges`` value
        (``bytes=a-b,c-d``, see format_ranges) still fits in the configured limit: past it the
        header is left out, so reading further extents for it would be wasted."""
        room = self.settings.committed_ranges_header_limit - len("bytes=") + 1

        def fits(extent: Extent) -> bool:
            nonlocal room
            room -= len(str(extent.start)) + len(str(extent.stop - 1)) + 2  # "a-b,"
            return room >= 0

        return fits

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
        processes and hosts. Each such writer notices within ``_REVOCATION_POLL`` seconds (or
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
            ledger.load_resource(conn, resource_id, for_update=True)
            revoked = ledger.revoke_writes(conn, resource_id)
        deadline = time.monotonic() + min(_STALE_WAIT, self.settings.lease_seconds)
        while revoked and time.monotonic() < deadline:
            time.sleep(0.02)
            with self.db.read() as conn:
                revoked = ledger.live(conn, revoked)

    def committed_page(self, resource_id: str, *, after: int, limit: int) -> tuple[list[Extent], bool]:
        validate_resource_id(resource_id)
        with self.db.read() as conn:
            ledger.load_resource(conn, resource_id)
            return ledger.page_extents(conn, resource_id, after=after, limit=limit)

    def extents_within(self, resource_id: str, start: int, stop: int) -> list[Extent]:
        with self.db.read() as conn:
            return ledger.extents_within(conn, resource_id, start, stop)

    def open_object(self, resource_id: str, record: ResourceRecord | None = None) -> StoredObject:
        """The bytes of a resource: its own object, or for a final concatenation a read-only
        view over its partials' objects (nothing was copied into it).

        ``record``, when the caller has loaded it, spares other resources the read transaction
        that looks for concatenation pieces (a GET of a small range pays for every query).
        """
        validate_resource_id(resource_id)
        if record is not None and record.concat != "final":
            return self.storage.open(record.object_key)
        with self.db.read() as conn:
            if record is None:
                record = ledger.load_resource(conn, resource_id, expired_ok=True)
            pieces = ledger.load_pieces(conn, resource_id) if record.concat == "final" else []
            keys = ledger.object_keys(conn, [piece.source_id for piece in pieces])
        if not pieces:
            return self.storage.open(record.object_key)
        opened: dict[str, StoredObject] = {}
        try:
            for piece in pieces:
                if piece.source_id not in opened:
                    opened[piece.source_id] = self.storage.open(keys.get(piece.source_id, piece.source_id))
        except BaseException:
            for stored in opened.values():
                stored.close()
            raise
        return ComposedObject(pieces, [opened[piece.source_id] for piece in pieces])

    def with_digest(self, state: ResourceState) -> ResourceState:
        """``state``, with the SHA-256 computed first if a complete resource has none yet.

        Only a final concatenation is complete without one: hashing it during its POST would
        cost what concatenating by reference saves, so the first read that needs ``ETag`` or
        ``Repr-Digest`` pays for it once, at disk read speed.

        Once, whoever reads: the reader that takes the final's ``digest:<id>`` row of
        ``job_leases`` (a compare-and-set, so one across all workers and hosts) hashes; every
        other reader meanwhile gets ``state`` as it is, without ``ETag`` or ``Repr-Digest``,
        at once (waiting would hold a request thread per reader for as long as the hash takes).
        A hasher renews its lease as it goes; one that dies lets it lapse, and the next reader
        takes over.
        """
        record = state.record
        if not record.is_complete or record.sha256 is not None or record.length is None:
            return state
        from .expiry import take_lease  # expiry.py imports this module

        job, holder = _digest_job(state.id), secrets.token_hex(16)
        with self.db.write(durable=False) as conn:
            if not take_lease(conn, job, holder, seconds=_DIGEST_LEASE):
                return state  # another reader is hashing it
            if ledger.load_resource(conn, state.id).sha256 is not None:
                ledger.release_job_lease(conn, job, holder)  # it finished just now
                return self.state(state.id)
        try:
            log.info("computing the digest of final upload %s (%d bytes)", state.id, record.length)
            sha256 = hashlib.sha256()
            renewed = time.monotonic()

            def renew() -> None:
                nonlocal renewed
                if time.monotonic() - renewed >= _DIGEST_LEASE / 4:
                    renewed = time.monotonic()
                    with self.db.write(durable=False) as conn:
                        take_lease(conn, job, holder, seconds=_DIGEST_LEASE)

            with self.open_object(state.id) as stored:
                self._hash_into(stored, record.length, [sha256], renew)
            with self.db.write() as conn:
                ledger.set_sha256(conn, state.id, sha256.digest())
                ledger.release_job_lease(conn, job, holder)
        except BaseException:
            with self.db.write(durable=False) as conn:
                ledger.release_job_lease(conn, job, holder)
            raise
        return self.state(state.id)

    @staticmethod
    def _hash_into(
        stored: StoredObject, length: int, hashes: list[object], step: Callable[[], None] | None = None
    ) -> None:
        position = 0
        while position < length:
            chunk = stored.read_at(position, min(_READ_CHUNK, length - position))
            if not chunk:
                raise StorageError("The stored object is shorter than its committed extents.")
            for digest in hashes:
                digest.update(chunk)  # type: ignore[attr-defined]
            position += len(chunk)
            if step is not None:
                step()

    # -- tus concatenation -----------------------------------------------------------------------

    def create_final(
        self,
        source_ids: list[str],
        *,
        upload_metadata: str | None = None,
        creator: Creator = ANONYMOUS,
        vouched: frozenset[str] = frozenset(),
    ) -> ResourceState:
        """A tus final upload: the partials in order, joined by reference, not by copying.

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
        self.check_concat_parts(len(source_ids))
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
                pieces: list[Piece] = []
                start = 0
                for position, source_id in enumerate(source_ids):
                    try:
                        # Locked, so a partial cannot be terminated between check and insert.
                        source = ledger.load_resource(conn, source_id, for_update=True)
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
                    pieces.append(Piece(position, source_id, start, source.length))
                    start += source.length
                max_size = creator.limit(self.settings.max_resource_size)
                if start > max_size:
                    raise ResourceTooLargeError(
                        "The concatenated length exceeds the maximum resource size.",
                        extra={"length": start, "max-size": max_size},
                    )
                self._check_quota(conn, creator.owner, start)
                ledger.insert_resource(
                    conn,
                    resource_id,
                    length=start,
                    content_type=None,
                    filename=None,
                    expected_digest=None,
                    expires_at=ledger.utcnow() + dt.timedelta(seconds=self.settings.expire_after),
                    upload_metadata=upload_metadata,
                    concat="final",
                    owner=creator.owner,
                    storage_key=storage_key if derived else None,
                )
                ledger.insert_pieces(conn, resource_id, pieces)
                if self.events.active:
                    self._publish(
                        conn,
                        "created",
                        ledger.load_resource(conn, resource_id),
                        upload_metadata=upload_metadata,
                        concat="final",
                        sources=list(source_ids),
                    )
        except BaseException:
            self.storage.delete(storage_key)
            raise
        self._assemble(resource_id)
        return self.state(resource_id)

    def check_concat_parts(self, count: int) -> None:
        """:raises LimitExceededError: (400) more pieces than ``max_concat_parts``."""
        limit = self.settings.max_concat_parts
        if limit and count > limit:
            raise LimitExceededError(
                "Upload-Concat names more partial uploads than this server allows in one final.",
                extra={"max-concat-parts": limit, "parts": count},
            )

    def pieces(self, resource_id: str) -> list[Piece]:
        with self.db.read() as conn:
            return ledger.load_pieces(conn, resource_id)

    def _assemble(self, final_id: str) -> bool:
        """Commit the ranges of a final whose partials are complete; complete it when covered.

        Re-adding a committed range changes nothing, so this is safe to repeat.

        :returns: whether anything changed.
        """
        with self.db.write() as conn:
            try:
                record = ledger.load_resource(conn, final_id, for_update=True)
            except (ResourceNotFoundError, ResourceGoneError):
                return False
            if record.is_complete or record.length is None:
                return False
            pieces = ledger.load_pieces(conn, final_id)
            statuses = ledger.source_statuses(conn, [piece.source_id for piece in pieces])
            ready = [
                Extent(piece.start, piece.stop)
                for piece in pieces
                if piece.length and statuses.get(piece.source_id) == STATUS_COMPLETE
            ]
            known = ledger.extents_within(conn, final_id, 0, record.length)
            new = [
                extent
                for extent in ready
                if not any(k.start <= extent.start and extent.stop <= k.stop for k in known)
            ]
            if new:
                ledger.add_extents(conn, final_id, new)
                if self.events.active:
                    self._publish(conn, "progress", record, ranges=[[e.start, e.stop] for e in new])
            if ledger.is_covered(conn, final_id, record.length):
                # The digest is computed on first read (with_digest), not here.
                if ledger.mark_complete(conn, final_id, None, failed=False) and self.events.active:
                    self._publish(conn, "completed", record, failed=False)
                return True
            return bool(new)

    # -- deletion and expiry ---------------------------------------------------------------------

    def delete(self, resource_id: str) -> None:
        """Remove rows, then bytes.

        The resource's reservations go in the same transaction, so its live writers are
        fenced at once: each process's lease keeper sees them gone within a tick, cuts the
        body and the write answers 404 having committed nothing (see _LeaseKeeper). A writer
        the keeper has not reached yet writes at most into this generation's object, never
        into a resource created again under the same id (which gets a new storage key).
        """
        validate_resource_id(resource_id)
        with self.db.write() as conn:
            record = ledger.load_resource(conn, resource_id, for_update=True)
            gone = self._remove(conn, record)
            if self.events.active:
                self._publish(conn, "deleted", record)
        for key in gone:
            self.storage.delete(key)

    def _remove(self, conn: Connection, record: ResourceRecord) -> list[str]:
        """Delete the rows of a resource (or only hide it while a final of its owner reads it),
        and end its live writes either way.

        A partial's owner who deletes it (or lets it expire) takes back every other principal's
        right to its bytes: the finals of other owners that read it are deleted with it, in
        this transaction, each with a ``deleted`` event (``cause: source-deleted``). A final of
        the same owner keeps reading them, so the partial is only hidden (``terminated_at``)
        until the last such final goes. (Without authentication everyone is the same owner.)

        :returns: the storage keys of the objects now unreferenced, to be deleted: the
            resource's own, those of the finals deleted with it, and those of terminated
            partials no final reads now.
        """
        resource_id = record.id
        finals: list[ResourceRecord] = []
        for final_id in ledger.finals_reading(conn, resource_id):
            try:
                final = ledger.load_resource(conn, final_id, for_update=True, expired_ok=True)
            except ResourceNotFoundError:
                continue
            if final.owner != record.owner:
                finals.append(final)
        hidden = len(finals) < len(ledger.finals_reading(conn, resource_id))
        sources = [piece.source_id for final in finals for piece in ledger.load_pieces(conn, final.id)]
        if not hidden:
            sources += [piece.source_id for piece in ledger.load_pieces(conn, resource_id)]
        # Read the keys before the rows that hold them go.
        keys = ledger.object_keys(conn, [resource_id, *(final.id for final in finals), *sources])
        gone: list[str] = []
        for final in finals:
            ledger.delete_resource(conn, final.id)
            ledger.release_job_lease(conn, _digest_job(final.id))
            gone.append(final.id)
            if self.events.active:
                self._publish(conn, "deleted", final, cause="source-deleted", source=resource_id)
        if hidden:
            # A final of the same owner serves these bytes: gone for clients, the bytes stay.
            ledger.mark_terminated(conn, resource_id)
            ledger.end_reservations(conn, resource_id)
        else:
            ledger.delete_resource(conn, resource_id)
            if record.concat == "final":
                ledger.release_job_lease(conn, _digest_job(resource_id))
            gone.append(resource_id)
        orphans = ledger.unreferenced_terminated(conn, [other for other in sources if other != resource_id])
        for orphan in orphans:
            ledger.delete_resource(conn, orphan)
        return [keys.get(rid, rid) for rid in (*gone, *orphans)]

    def remove_expired(self, *, limit: int = 1000) -> int:
        """Delete expired incomplete resources, rows first, then bytes. Returns the count."""
        removed = 0
        with self.db.read() as conn:
            candidates = ledger.expired_resource_ids(conn, now=ledger.utcnow(), limit=limit)
        for resource_id in candidates:
            with self.db.write() as conn:
                # Checked again under the row lock: a write that began before the expiry may
                # still commit (see _commit), so a resource with a live writer waits for the
                # next sweep; one that completed meanwhile is not expired any more.
                try:
                    record = ledger.load_resource(conn, resource_id, for_update=True, expired_ok=True)
                except ResourceNotFoundError:
                    continue  # deleted meanwhile
                if not record.is_expired(ledger.utcnow()) or ledger.has_live_writers(conn, resource_id):
                    continue
                gone = self._remove(conn, record)
                if self.events.active:
                    self._publish(conn, "expired", record)
            for key in gone:
                self.storage.delete(key)
            removed += 1
        return removed

    # -- writes ----------------------------------------------------------------------------------

    def write(
        self,
        resource_id: str,
        decoder: PatchDecoder,
        body: BodySource,
        options: WriteOptions = WriteOptions(),
    ) -> ResourceState:
        """Apply a patch document (or a partial PUT) to a resource; returns the state after it.

        :raises ByterangeError: 400/404/409/410/412/422 as described in docs/protocol.md;
            the state after the error is what a HEAD shows.
        """
        validate_resource_id(resource_id)
        session = _WriteSession(self, resource_id, options)
        session.run(decoder, body)
        if session.snapshot is not None:  # read in the commit's transaction: no extra round trip
            snapshot = session.snapshot
            return ResourceState(snapshot.resource, snapshot.extents, snapshot.truncated)
        return self.state(resource_id)

    # -- completion ------------------------------------------------------------------------------

    def _finalize(self, resource_id: str, storage_key: str | None = None) -> None:
        """Hash the complete representation and make it immutable.

        ``storage_key``: the generation a write just covered; nothing is done if the resource
        was deleted (and perhaps created again) since.

        :raises ReprDigestMismatchError: (409) when an expected digest was declared and differs.
        """
        with self.db.read() as conn:
            # A write that began before the expiry and covered the last gap completes it.
            record = ledger.load_resource(conn, resource_id, expired_ok=True)
        if storage_key is not None and record.object_key != storage_key:
            return
        if record.is_complete:
            self.check_not_failed(record)
            return
        assert record.length is not None
        sha256 = hashlib.sha256()
        expected_hash = None
        if record.expected_digest_algorithm and record.expected_digest_algorithm != "sha-256":
            expected_hash = SUPPORTED_DIGESTS[record.expected_digest_algorithm]()
        with self.storage.open(record.object_key) as stored:
            self._hash_into(stored, record.length, [h for h in (sha256, expected_hash) if h])
        digest = sha256.digest()
        failed = False
        if record.expected_digest is not None:
            actual = digest if expected_hash is None else expected_hash.digest()
            failed = not secrets.compare_digest(actual, record.expected_digest)
        with self.db.write() as conn:
            key = record.object_key
            marked = ledger.mark_complete(conn, resource_id, digest, failed=failed, storage_key=key)
            if marked and self.events.active:
                self._publish(conn, "completed", record, failed=failed)
            record = ledger.load_resource(conn, resource_id, expired_ok=True)
            finals = ledger.finals_reading(conn, resource_id) if record.concat == "partial" else []
        for final_id in finals:  # concatenation-unfinished: the finals waiting for this one
            self._assemble(final_id)
        self.check_not_failed(record)

    def check_not_failed(self, record: ResourceRecord) -> None:
        if not record.is_failed:
            return
        algorithm = record.expected_digest_algorithm or "sha-256"
        raise ReprDigestMismatchError(
            "The complete representation does not match the digest declared for it.",
            extra={
                "algorithm": algorithm,
                "expected": base64.b64encode(record.expected_digest or b"").decode(),
                "sha-256": base64.b64encode(record.sha256 or b"").decode(),
            },
        )


@dataclasses.dataclass
class _Part:
    header: PartHeader
    start: int
    #: Exclusive end of the reserved range (the declared end, or a bound when it is unknown).
    limit: int
    #: Declared exclusive end, None when the part did not say.
    stop: int | None
    #: None until the part's batch is reserved (see _WriteSession._flush).
    reservation_id: str | None = None
    #: Committed extents inside [start, limit): bytes there are compared, not written.
    committed: list[Extent] = dataclasses.field(default_factory=list)
    #: Bytes applied to storage (written into gaps, or compared with committed bytes).
    received: int = 0
    #: Bytes decoded before the part was reserved: views of the received chunks (immutable,
    #: see protocol/events.py), applied in order once it is.
    queued: list[memoryview] = dataclasses.field(default_factory=list)
    queued_bytes: int = 0

    @property
    def seen(self) -> int:
        """Bytes of this part taken from the body so far, applied or queued."""
        return self.received + self.queued_bytes

    @property
    def written_extent(self) -> Extent | None:
        if self.received == 0:
            return None
        return Extent(self.start, self.start + self.received)


class _LeaseKeeper:
    """One thread per service renews the leases of the writes whose bodies are streaming, and
    tells each of them, within a tick, that its reservations were ended: by a DELETE of the
    resource (fenced: the write stops and answers 404) or, for an IETF append, by a newer
    request for the upload (revoked: it commits what it has).

    A body read blocks until a whole chunk arrives, so the request thread cannot renew on time
    for a slow client; this thread does, every ``renew_interval``, for each registered write.
    It stops renewing a write once no body chunk has arrived for ``write_idle_seconds``: a
    stalled connection then loses its range after one more lease, and another writer may take
    it over (the stalled request finds out before it writes again, see
    ``_WriteSession._write``).

    Every tick it asks the database about all its writes at once: one statement reading the
    first reservation of each (:func:`ledger.reservation_flags`); a write's reservations are
    all deleted with its resource and all revoked together, so the first one tells. A write
    whose reservation is gone is fenced: ``on_stale`` cuts its body, and it writes nothing
    more.

    One thread for all writes, not one per request: registering is a dict insert, and a write
    that ends within a tick is never looked at (starting and joining a thread per request was
    7% of a 64 KiB write's time). The price: a renewal that waits on the database delays the
    others' by as long. That costs liveness, never safety: a write whose lease ran out renews
    before its next storage write, or finds its range taken and stops (``_WriteSession._write``),
    and a write the keeper has not yet fenced can only reach the storage object of the resource
    generation it reserved in, never the next one's.
    """

    #: The thread ends after this long with nothing to keep; the next write starts another.
    IDLE_EXIT = 60.0

    def __init__(self, settings: Settings, db: Database) -> None:
        renew_interval = min(settings.lease_seconds / 3, 5.0)
        self.tick = min(renew_interval, _REVOCATION_POLL)
        self.db = db
        self._lock = threading.Lock()
        self._sessions: dict[int, _WriteSession] = {}
        self._thread: threading.Thread | None = None

    def add(self, session: _WriteSession) -> None:
        with self._lock:
            self._sessions[id(session)] = session
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="byterange-leases", daemon=True)
                self._thread.start()

    def remove(self, session: _WriteSession) -> None:
        """After this returns the thread does nothing more for ``session`` (it waits for a
        renewal in progress, as a request must not end while its lease is being renewed)."""
        with session.keeper_lock:
            session.kept = False
        with self._lock:
            self._sessions.pop(id(session), None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(self.tick)
            with self._lock:
                sessions = list(self._sessions.values())
                if not sessions:
                    if time.monotonic() - idle_since > self.IDLE_EXIT:
                        self._thread = None
                        return
                    continue
            idle_since = time.monotonic()
            self._poll(sessions)
            for session in sessions:
                with session.keeper_lock:
                    if session.kept:
                        session.keep(self.tick)

    def _poll(self, sessions: list[_WriteSession]) -> None:
        """Fence the writes whose reservations were ended, and stop the revoked appends."""
        watched = {session.sentinel: session for session in sessions if session.sentinel is not None}
        if not watched:
            return
        try:
            with self.db.read() as conn:
                flags = ledger.reservation_flags(conn, list(watched))
        except Exception:  # the next tick asks again; _write and _commit check for themselves
            log.warning("could not poll the reservations of %d writes", len(watched), exc_info=True)
            return
        for reservation_id, session in watched.items():
            revoked = flags.get(reservation_id)
            if revoked is None:
                with session.keeper_lock:
                    if session.kept:
                        session.fence()
            elif revoked and session.options.revocable:
                with session.keeper_lock:
                    if session.kept:
                        session.revoke()


class _Interruption(Exception):
    """The body stopped short of what a part declared; carries the error to report."""

    def __init__(self, error: ByterangeError) -> None:
        self.error = error


class _WriteSession:
    """One write request, from reservation to commit.

    Outcomes:

    - everything arrived and checks out → commit all parts, 2xx;
    - the body was interrupted (client gone, framing ended early, a part shorter or longer
      than its range) → under ``persist`` commit the received prefix of every part, under
      ``atomic`` (or with Content-Digest) commit nothing; then report the interruption (400);
    - anything else (malformed fields, overlapping parts, different bytes over committed ones,
      length conflicts, a digest mismatch) → commit nothing.
    """

    def __init__(self, service: UploadService, resource_id: str, options: WriteOptions) -> None:
        self.service = service
        self.settings = service.settings
        self.db = service.db
        self.resource_id = resource_id
        self.options = options
        self.parts: list[_Part] = []
        #: How many of ``parts`` (a prefix) are reserved; the others wait for _flush.
        self.reserved = 0
        #: Bytes queued in the unreserved parts.
        self.queued_bytes = 0
        #: The storage key of the resource generation this request reserved in (from the row
        #: its first reservation locked); it writes there and nowhere else.
        self.storage_key: str | None = None
        #: The first reservation, which the keeper polls for all of them (see _LeaseKeeper).
        self.sentinel: str | None = None
        #: Starts and stops of the ended parts, sorted by start (see _overlapping_part).
        self.part_starts: list[int] = []
        self.part_stops: list[int] = []
        self.current: _Part | None = None
        self.declared_length: int | None = None
        self.declared_repr_digest: tuple[str, bytes] | None = None
        #: What to raise if bytes arrive for a part that may carry none.
        self.no_bytes_error: ByterangeError | None = None
        self.record: ResourceRecord | None = None
        self.stored: StoredObject | None = None
        #: The write slot (concurrency limits) held from the first reservation to the commit.
        self.slot_id: str | None = None
        self.max_size = self.settings.max_resource_size
        if options.max_size is not None:
            self.max_size = min(self.max_size, options.max_size)
        lease = self.settings.lease_seconds
        self.renew_interval = min(lease / 3, 5.0)
        # Our own clock's view of when the leases run out, kept on the safe side by a margin:
        # no byte is written to storage at or after it without renewing first (see _write).
        self.lease_margin = min(1.0, lease / 4)
        self.lease_deadline = 0.0
        self.last_renewal = time.monotonic()
        # Renewals come from a keeper thread (body reads block until a whole chunk arrives, so
        # the request thread cannot renew on time for a slow client) and from this thread.
        self.lease_lock = threading.Lock()
        self.last_progress = time.monotonic()
        #: Whether the service's keeper thread looks after this request (see _LeaseKeeper);
        #: ``keeper_lock`` is held while it does, ``keeper_error`` is what it ran into.
        self.kept = False
        self.registered = False
        self.keeper_lock = threading.Lock()
        self.keeper_error: ByterangeError | None = None
        #: Set once the commit released the reservations (nothing left to clean up).
        self.parts_released = False
        #: Set when a newer request revoked this (IETF) append: stop, commit the prefix.
        self.revoked = False
        #: Set by the keeper when this request's reservations were ended (its resource was
        #: deleted): stop, write and commit nothing (see _fenced_error).
        self.fenced = False
        #: Set just before the commit transaction, which releases the reservations: from then
        #: on a missing reservation is our own doing, not a fence.
        self.committing = False
        #: The state after the commit, read in its transaction (None: read it afresh).
        self.snapshot: ledger.ResourceSnapshot | None = None

    # The request as a whole ------------------------------------------------------------------

    def run(self, decoder: PatchDecoder, body: BodySource) -> None:
        with self.db.read() as conn:
            self.record = ledger.load_resource(conn, self.resource_id)
            if self.record.concat == "final":
                raise FinalUploadWriteError(
                    "A final concatenated upload is read-only: its bytes are its partials'."
                )
            if self.options.expected_offset is not None:
                # Early, so a stale offset is refused before any body is read; _reserve
                # checks again under the row lock.
                self._check_offset(ledger.prefix_stop(conn, self.resource_id))
        try:
            try:
                self._pump(decoder, body)
            except _Interruption as interruption:
                if not self.options.atomic:
                    try:
                        self._flush()  # what was decoded before the interruption counts too
                    except _Interruption:
                        pass  # revoked while applying it: commit what was applied
                    self._commit(prefixes_only=True)
                raise interruption.error from None
            if self.options.content_digest is not None:
                self._verify_content_digest(body)
            if self.options.checksum is not None:
                self._verify_checksum(body)
            if self.options.trailer_checksum is not None:
                self._verify_trailer_checksum()
            self._commit(prefixes_only=False)
        finally:
            if self.registered:
                self.service.keeper.remove(self)
            self._release_leftovers()
            if self.stored is not None:
                self.stored.close()

    def _pump(self, decoder: PatchDecoder, body: BodySource) -> None:
        for chunk in body:
            self.last_progress = time.monotonic()
            if self.fenced:
                raise self._fenced_error()
            if self.keeper_error is not None:
                raise self.keeper_error  # the resource was deleted, or the lease taken over
            decoder.receive_data(chunk)
            self._drain(decoder)
            # Whatever the chunk held is reserved before the next read: a part's range is
            # taken as soon as its fields arrive, however long its bytes take.
            self._flush()
            if self.revoked:
                # Revoked: keep what already arrived (written under a lease still ours, see
                # _write), read nothing more.
                break
        if self.fenced:
            raise self._fenced_error()  # the keeper cut the body: not an interruption
        if self.revoked:
            raise _Interruption(self._stale_error())
        interrupted = body.interrupted
        decoder.receive_data(b"")
        try:
            self._drain(decoder)
        except TruncatedBodyError as exc:
            raise _Interruption(exc) from None
        if interrupted:
            raise _Interruption(TruncatedBodyError("The request body ended before its declared length."))
        self._flush()

    def _drain(self, decoder: PatchDecoder) -> None:
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, PartData):
                self._on_data(event.data)
            elif isinstance(event, PartStart):
                self._on_part_start(event)
            elif isinstance(event, PartEnd):
                self._on_part_end()
            elif isinstance(event, EndOfPatch):
                if not self.parts and self.declared_length is None:
                    raise MalformedBodyError("The patch document has no parts.")
                return

    # Parts -----------------------------------------------------------------------------------

    def _on_part_start(self, event: PartStart) -> None:
        if len(self.parts) >= self.settings.max_parts:
            raise LimitExceededError(
                "Too many parts in one request.", extra={"max-parts": self.settings.max_parts}
            )
        header = event.header
        self.no_bytes_error = None
        self._note_repr_digest(event)
        max_size = self.max_size
        if header.length is not None:
            if header.length > max_size:
                # The byte-range draft asks for 400, not 413, for an over-large allocation.
                raise LimitExceededError(
                    "The declared length exceeds the maximum resource size.",
                    extra={"length": header.length, "max-size": max_size},
                )
            self._declare_length(header.length)
        if header.start is None:  # "bytes */L": sets the length, carries no bytes
            self.current = None
            self.no_bytes_error = MalformedBodyError(
                "A part that only sets the length must have no body."
            )
            return
        known_length = self._known_length()
        bound = known_length if known_length is not None else max_size
        if header.stop is not None and header.stop > bound:
            if known_length is not None:
                raise BytesPastLengthError(
                    "The range ends past the length of the resource.",
                    extra={"length": known_length, "last": header.stop - 1},
                )
            raise BytesPastMaxSizeError(
                "The range ends past the maximum resource size.",
                extra={"max-size": max_size, "last": header.stop - 1},
            )
        if header.start >= bound and not (header.stop is None and header.start == bound):
            raise BytesPastLengthError(
                "The range starts at or past the length of the resource.",
                extra={"length": bound, "first": header.start},
            )
        limit = header.stop if header.stop is not None else bound
        earlier = self._overlapping_part(header.start, limit)
        if earlier is not None:
            raise OverlappingPartsError(
                "Two parts of this request overlap.",
                extra={"first": header.start, "other-first": earlier},
            )
        if limit == header.start:  # a Content-Offset part at the very end: it may only be empty
            self.current = None
            self.no_bytes_error = self._past_end_error(header.start, known_length)
            return
        # Reserved with the others decoded from the same chunk (see _flush), or at once when
        # the batch is full.
        part = _Part(header, header.start, limit, header.stop)
        self.parts.append(part)
        self.current = part
        if len(self.parts) - self.reserved >= _BATCH_PARTS:
            self._flush()

    def _overlapping_part(self, start: int, limit: int) -> int | None:
        """The start of an earlier part whose range meets ``[start, limit)``, or None.

        Earlier parts are kept sorted by start (bisect), so a request of N parts costs
        O(N log N), not O(N²). They never overlap each other and an empty one never lies inside
        another, so only the parts with the greatest start below ``limit`` can reach past
        ``start``.
        """
        for part in self.parts[len(self.part_starts) :]:  # ended since: index them
            stop = part.stop if part.stop is not None else part.start + part.seen
            index = bisect.bisect_right(self.part_starts, part.start)
            self.part_starts.insert(index, part.start)
            self.part_stops.insert(index, stop)
        index = bisect.bisect_left(self.part_starts, limit) - 1
        if index < 0:
            return None
        nearest = self.part_starts[index]
        while index >= 0 and self.part_starts[index] == nearest:
            if start < self.part_stops[index]:
                return nearest
            index -= 1
        return None

    def _on_data(self, data: memoryview) -> None:
        part = self.current
        if part is None:
            raise self.no_bytes_error or MalformedBodyError("Data outside of a part.")
        room = part.limit - (part.start + part.seen)
        if len(data) > room:
            if part.stop is None:
                # No declared end (Content-Offset): the bytes ran past the length or the size limit.
                raise self._past_end_error(part.limit, self._known_length())
            if room:
                self._take(part, data[:room])
            raise _Interruption(
                MalformedBodyError(
                    "A part body is longer than its range.",
                    extra={"first": part.start, "range-length": part.limit - part.start},
                )
            )
        self._take(part, data)

    def _take(self, part: _Part, data: memoryview) -> None:
        """Apply ``data`` now if its part is reserved, else queue it for its batch."""
        if part.reservation_id is not None:
            self._apply(part, data)
            return
        part.queued.append(data)
        part.queued_bytes += len(data)
        self.queued_bytes += len(data)
        if self.queued_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        """Reserve the parts decoded since the last batch, in one transaction, then apply the
        bytes they queued, in order. Many tiny parts then cost a transaction per batch, not one
        each; and no byte reaches storage before its part's range is reserved."""
        pending = self.parts[self.reserved :]
        if not pending:
            return
        with self.lease_lock:
            ids, committed = self._reserve_batch(pending)
            for part, reservation_id, within in zip(pending, ids, committed, strict=True):
                part.reservation_id = reservation_id
                part.committed = within
            self.reserved = len(self.parts)
        if not self.registered:
            self.registered = self.kept = True
            self.service.keeper.add(self)
        self.queued_bytes = 0
        for part in pending:
            queued, part.queued, part.queued_bytes = part.queued, [], 0
            for data in queued:
                self._apply(part, data)

    def _on_part_end(self) -> None:
        part = self.current
        self.current = None
        if part is None:
            return
        if part.stop is not None and part.start + part.seen < part.stop:
            raise _Interruption(
                TruncatedBodyError(
                    "A part body is shorter than its range.",
                    extra={
                        "first": part.start,
                        "range-length": part.stop - part.start,
                        "received": part.seen,
                    },
                )
            )

    def _apply(self, part: _Part, data: memoryview) -> None:
        """Write ``data`` at the part's position: gaps are written, committed bytes compared."""
        if self.stored is None:
            assert self.storage_key is not None  # set by the first reservation
            try:
                self.stored = self.service.storage.open(self.storage_key)
            except StorageObjectMissingError:
                # Deleted since we reserved (the row went first): never an object of another
                # generation, so a later creation under this id cannot be touched.
                raise self._fenced_error() from None
        position = part.start + part.received
        stop = position + len(data)
        cursor = position
        for extent in part.committed:
            if extent.stop <= cursor:
                continue
            if extent.start >= stop:
                break
            if extent.start > cursor:
                self._write(data, position, cursor, extent.start)
                cursor = extent.start
            overlap_stop = min(extent.stop, stop)
            self._compare(data, position, cursor, overlap_stop)
            cursor = overlap_stop
        if cursor < stop:
            self._write(data, position, cursor, stop)
        part.received += len(data)

    def _write(self, data: memoryview, base: int, start: int, stop: int) -> None:
        assert self.stored is not None
        if self.fenced:
            raise self._fenced_error()
        # A writer whose lease ran out (a stalled client, a paused process) may have been
        # replaced by another request that already committed these bytes: never write
        # without a lease we know is still ours.
        if time.monotonic() >= self.lease_deadline:
            self._renew()
            if self.revoked:
                raise _Interruption(self._stale_error())
        self.stored.write_at(start, data[start - base : stop - base])

    def _compare(self, data: memoryview, base: int, start: int, stop: int) -> None:
        assert self.stored is not None
        position = start
        while position < stop:
            size = min(_READ_CHUNK, stop - position)
            stored = self.stored.read_at(position, size)
            if stored != data[position - base : position - base + size]:
                raise ContentMismatchError(
                    "These bytes differ from bytes already committed; nothing was applied.",
                    extra={"first": start, "last": stop - 1},
                )
            position += size

    # Lengths and digests ---------------------------------------------------------------------

    def _past_end_error(self, position: int, known_length: int | None) -> ByterangeError:
        if known_length is not None:
            return BytesPastLengthError(
                "Bytes were sent at or past the length of the resource; nothing was applied.",
                extra={"length": known_length, "first": position},
            )
        return BytesPastMaxSizeError(
            "Bytes were sent past the maximum resource size; nothing was applied.",
            extra={"max-size": self.max_size, "first": position},
        )

    def _known_length(self) -> int | None:
        assert self.record is not None
        return self.record.length if self.record.length is not None else self.declared_length

    def _declare_length(self, length: int) -> None:
        known = self._known_length()
        if known is not None and known != length:
            raise LengthConflictError(
                "The declared length differs from the length of the resource.",
                extra={"length": known, "requested-length": length},
            )
        self.declared_length = length

    def _note_repr_digest(self, event: PartStart) -> None:
        # A Repr-Digest in a part describes the whole resulting document (byte-range draft).
        values = event.header.get_all("repr-digest")
        if not values:
            return
        picked = pick_digest(parse_digest_field(", ".join(values)))
        if picked is None:
            return
        assert self.record is not None
        if self.record.expected_digest is not None and (
            self.record.expected_digest_algorithm,
            self.record.expected_digest,
        ) != picked:
            raise ReprDigestMismatchError(
                "The Repr-Digest differs from the one declared earlier for this resource."
            )
        self.declared_repr_digest = picked

    def _check_offset(self, current: int) -> None:
        expected = self.options.expected_offset
        if expected is not None and expected != current:
            raise OffsetMismatchError(
                "Upload-Offset is not the end of the committed bytes; nothing was applied.",
                extra={"expected-offset": current, "provided-offset": expected},
            )

    def _verify_checksum(self, body: BodySource) -> None:
        assert self.options.checksum is not None
        algorithm, expected = self.options.checksum
        if not secrets.compare_digest(body.digest(algorithm), expected):
            raise ChecksumMismatchError(
                "Upload-Checksum does not match the request content; nothing was applied.",
                extra={"algorithm": algorithm},
            )

    def _verify_trailer_checksum(self) -> None:
        """The algorithm is only known after the body, so the bytes were not hashed on the way
        in: they are read back from storage (still in the page cache) before anything is
        committed."""
        assert self.options.trailer_checksum is not None
        algorithm, expected = self.options.trailer_checksum()
        digest = CHECKSUM_ALGORITHMS[algorithm]()
        for part in self.parts:
            if part.received and self.stored is not None:
                self._hash_range(part.start, part.start + part.received, digest)
        if not secrets.compare_digest(digest.digest(), expected):
            raise ChecksumMismatchError(
                "The Upload-Checksum trailer does not match the request content; nothing was applied.",
                extra={"algorithm": algorithm},
            )

    def _hash_range(self, start: int, stop: int, digest: object) -> None:
        assert self.stored is not None
        position = start
        while position < stop:
            chunk = self.stored.read_at(position, min(_READ_CHUNK, stop - position))
            if not chunk:
                raise StorageError("The stored object is shorter than the bytes just written.")
            digest.update(chunk)  # type: ignore[attr-defined]
            position += len(chunk)

    def _verify_content_digest(self, body: BodySource) -> None:
        assert self.options.content_digest is not None
        algorithm, expected = self.options.content_digest
        actual = body.digest(algorithm)
        if not secrets.compare_digest(actual, expected):
            raise DigestMismatchError(
                "Content-Digest does not match the request content; nothing was applied.",
                extra={"algorithm": algorithm},
            )

    # Transactions ----------------------------------------------------------------------------

    def _reserve_batch(self, pending: list[_Part]) -> tuple[list[str], list[list[Extent]]]:
        """Reserve the ranges of ``pending`` (one transaction): their reservation ids and the
        committed extents inside each; renews the earlier parts' leases when due."""
        began = time.monotonic()
        earlier = [part.reservation_id for part in self.parts[: self.reserved]]
        ranges = [(part.start, part.limit) for part in pending]
        # Not durable (no fsync on SQLite): a reservation means nothing after a crash.
        with self.db.write(durable=False) as conn:
            record = ledger.load_resource(conn, self.resource_id, for_update=True)
            if self.storage_key is not None and record.object_key != self.storage_key:
                raise self._gone_error()  # deleted and created again since our first batch
            self.record = record
            if record.length is not None:
                for _, limit in ranges:
                    if limit > record.length:
                        raise BytesPastLengthError(
                            "The range ends past the length of the resource.",
                            extra={"length": record.length, "last": limit - 1},
                        )
            if not earlier:
                self._check_offset(ledger.prefix_stop(conn, self.resource_id))
                if self.settings.max_writes_per_resource or self.settings.max_writes_per_principal:
                    # Taken with the first reservation, in its transaction: no extra round trip.
                    self.slot_id = ledger.take_write_slot(
                        conn,
                        self.resource_id,
                        self.options.principal,
                        lease_seconds=self.settings.lease_seconds,
                        max_per_resource=self.settings.max_writes_per_resource,
                        max_per_principal=self.settings.max_writes_per_principal,
                    )
            ids = ledger.reserve_many(
                conn,
                self.resource_id,
                ranges,
                lease_seconds=self.settings.lease_seconds,
                revocable=self.options.revocable,
            )
            committed = ledger.extents_within_many(conn, self.resource_id, ranges)
            # One lease clock for the whole request: the earlier parts' leases are renewed
            # with this batch's when due (every batch would make a many-part request quadratic).
            renew = not earlier or began - self.last_renewal >= self.renew_interval
            lease = self.settings.lease_seconds
            if earlier and renew and not ledger.renew(conn, earlier, lease_seconds=lease):
                raise self._lease_lost()
        if renew:  # otherwise the earlier leases, renewed before, still end first
            self._leases_renewed(began)
        self.storage_key = record.object_key
        if self.sentinel is None:
            self.sentinel = ids[0]
        return ids, committed

    def _leases_renewed(self, began: float) -> None:
        self.last_renewal = began
        self.lease_deadline = began + self.settings.lease_seconds - self.lease_margin

    @staticmethod
    def _lease_lost() -> WriteInProgressError:
        return WriteInProgressError(
            "This request lost its reservation (its lease ran out); nothing was applied.",
            headers={"Retry-After": "1"},
        )

    @staticmethod
    def _gone_error() -> ResourceNotFoundError:
        # 404, not 409 with Retry-After: sending these bytes again would write them into
        # whatever resource now has this id, if any.
        return ResourceNotFoundError(
            "The resource was deleted while this request was writing to it; nothing of this "
            "request was applied."
        )

    def _fenced_error(self) -> ByterangeError:
        """Why the keeper found this request's reservations gone: its resource was deleted
        (404, also when created again since), or its lapsed lease was taken over (409)."""
        try:
            with self.db.read() as conn:
                record = ledger.load_resource(conn, self.resource_id, expired_ok=True)
        except ResourceNotFoundError:
            return self._gone_error()
        if record.object_key != self.storage_key:
            return self._gone_error()
        return self._lease_lost()

    def _renew(self) -> None:
        """Extend the leases; sets ``revoked`` instead when a newer request revoked them."""
        with self.lease_lock:
            began = time.monotonic()
            ids = [part.reservation_id for part in self.parts[: self.reserved]]
            with self.db.write(durable=False) as conn:
                record = ledger.load_resource(conn, self.resource_id)  # 404 once deleted
                if record.object_key != self.storage_key:
                    raise self._gone_error()
                alive = ledger.renew(conn, ids, lease_seconds=self.settings.lease_seconds)
                ledger.renew_write_slot(conn, self.slot_id, lease_seconds=self.settings.lease_seconds)
                if not alive and self.options.revocable and ledger.any_revoked(conn, ids):
                    self.revoked = True
                    return
            if not alive:
                raise self._lease_lost()
            self._leases_renewed(began)

    def keep(self, tick: float) -> None:
        """(Keeper thread, every ``tick``, under ``keeper_lock``) Renew the leases when due;
        stop being kept on an error or a revocation."""
        try:
            now = time.monotonic()
            if now - self.last_progress > self.settings.write_idle_seconds:
                return
            if now - self.last_renewal < self.renew_interval - tick / 2:
                return
            self._renew()
            if self.revoked:
                self.stale()
                self.kept = False
        except ByterangeError as error:
            self.keeper_error = error
            self.kept = False
            if isinstance(error, ResourceNotFoundError):
                self.stale()  # deleted: as fenced, the body is of no use any more
        except Exception:  # a thread's exception would vanish; log it and stop renewing
            log.exception("renewing the leases of %s failed", self.resource_id)
            self.kept = False

    def revoke(self) -> None:
        """(Keeper thread, under ``keeper_lock``) A newer request revoked this append: stop
        reading the body; the request commits what it has."""
        self.revoked = True
        self.kept = False
        self.stale()

    def fence(self) -> None:
        """(Keeper thread, under ``keeper_lock``) This request's reservations were ended (its
        resource deleted): stop reading the body; it writes and commits nothing more."""
        if self.committing:
            return  # the commit released them
        self.fenced = True
        self.kept = False
        self.stale()

    def stale(self) -> None:
        """Stop reading: the request thread may be blocked in a read of a stalled body."""
        if self.options.on_stale is not None:
            try:
                self.options.on_stale()
            except Exception:  # the request still ends at its next chunk or lease check
                log.exception("could not cut the body of a stopped write to %s", self.resource_id)

    @staticmethod
    def _stale_error() -> TruncatedBodyError:
        return TruncatedBodyError(
            "A newer request for this upload ended this append; the bytes received until then "
            "are committed."
        )

    def _commit(self, *, prefixes_only: bool) -> None:
        new = [extent for part in self.parts if (extent := part.written_extent) is not None]
        if prefixes_only and not new:
            return
        if new and self.stored is not None:
            self.stored.sync()  # durable before any row claims these bytes
        ids = [part.reservation_id for part in self.parts[: self.reserved]]
        with self.keeper_lock:
            self.committing = True
        with self.db.write() as conn:
            # A write that began before the resource expired may commit: its live reservations
            # keep the expiry sweep away (see remove_expired).
            record = ledger.load_resource(conn, self.resource_id, for_update=True, expired_ok=True)
            if self.storage_key is not None and record.object_key != self.storage_key:
                raise self._gone_error()  # its bytes went to the deleted generation
            if not ledger.reservations_alive(conn, ids):
                raise self._lease_lost()
            if self.declared_length is not None and not prefixes_only:
                record = ledger.set_length(conn, record, self.declared_length)
            elif self.declared_length is not None:
                # An interrupted request still fixes a length it declared, if it can.
                try:
                    with conn.begin_nested():
                        record = ledger.set_length(conn, record, self.declared_length)
                except LengthConflictError:
                    pass
            if record.length is not None:
                for extent in new:
                    if extent.stop > record.length:
                        raise BytesPastLengthError(
                            "Bytes were sent past the length of the resource.",
                            extra={"length": record.length, "last": extent.stop - 1},
                        )
            if self.declared_repr_digest is not None and record.expected_digest is None:
                ledger.set_expected_digest(conn, self.resource_id, *self.declared_repr_digest)
            merged = ledger.add_extents(conn, self.resource_id, new)
            limit = self.settings.max_extents
            # Counting is a scan of the resource's extents: skip it when every new extent
            # joined an existing one (then the count cannot have grown), as appends do.
            added = normalize(new)
            fresh = set(added)  # a set: a request of many separate parts is not quadratic here
            may_grow = any(extent in fresh for extent in merged)
            if new and limit and may_grow and ledger.extent_count(conn, self.resource_id) > limit:
                # Rolled back with the rest of this transaction: nothing of the request commits.
                raise TooManyExtentsError(
                    "This write would leave too many separate committed ranges; fill the gaps "
                    "between them (or write adjacent ranges) instead.",
                    extra={"max-extents": limit},
                )
            events = self.service.events
            if new and events.active:
                # The offset costs a query; only a recorded event (a hook payload) needs it.
                offset = ledger.prefix_stop(conn, self.resource_id) if events.recorded else None
                # Coalesced: 10,000 adjacent one-byte parts are one newly committed range.
                self.service._publish(
                    conn, "progress", record, ranges=[[e.start, e.stop] for e in added], offset=offset
                )
            ledger.release(conn, ids)
            ledger.release_write_slot(conn, self.slot_id)
            self.slot_id = None
            ledger.touch(conn, self.resource_id)
            covered = record.length is not None and ledger.is_covered(
                conn, self.resource_id, record.length
            )
            if not covered or record.is_complete:
                # The response's state, read under the same lock (a completing write reads it
                # after the digest instead).
                try:
                    self.snapshot = ledger.load_snapshot(
                        conn, self.resource_id, limit=_SNAPSHOT_LIMIT, fits=self.service._header_room()
                    )
                except ResourceGoneError:
                    self.snapshot = None  # expired meanwhile: state() reports it as it always did
        self.parts_released = True
        if covered and not record.is_complete:
            self.service._finalize(self.resource_id, self.storage_key)
        elif record.is_failed:
            self.service.check_not_failed(record)

    def _release_leftovers(self) -> None:
        if (self.parts_released or not self.reserved) and self.slot_id is None:
            return
        try:
            with self.db.write(durable=False) as conn:
                if not self.parts_released:
                    ledger.release(conn, [part.reservation_id for part in self.parts[: self.reserved]])
                ledger.release_write_slot(conn, self.slot_id)
                self.slot_id = None
        except ByterangeError:
            # The lease will expire on its own; the original error is what the client needs.
            log.warning("could not release reservations of %s", self.resource_id, exc_info=True)
