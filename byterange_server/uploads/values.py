"""The values the parts of the upload domain share, and the context a write works in.

Requests reach the domain as values: :class:`WriteOptions` (with a :class:`RequestDigest` the
client declared), :class:`Creator`, a :class:`BodySource` and a :class:`PatchDecoder`; the
answer is a :class:`ResourceState`. :class:`WriteContext` is what the write session
(writes.py) and concatenation (concat.py) may use of the service: they import this module and
nothing else of the domain, so nothing imports back up (service.py builds them).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from ..config import Settings
from ..db import clock
from ..db.engine import Database
from ..db.ledger import resources
from ..db.ledger import segments
from ..db.ledger.resources import ResourceRecord
from ..errors import ByterangeError
from ..errors import DigestMismatchError
from ..errors import ReprDigestMismatchError
from ..errors import StorageError
from ..extents import Extent
from ..extents import prefix_end
from ..storage.base import Segment
from ..storage.base import SegmentLoader
from ..storage.base import StorageBackend
from ..storage.base import StoredObject
from .lifecycle import EventBus
from .lifecycle import EventKind
from .lifecycle import ResourceEvent
from .running import RunningDigests

if TYPE_CHECKING:
    from sqlalchemy import Connection

#: Bytes read per step when hashing or comparing stored data.
READ_CHUNK = 1024 * 1024
#: Upper bound on extents read for a HEAD, whatever the header limit.
SNAPSHOT_LIMIT = 1024
#: Longest stored media type (the column size in models.py).
MAX_CONTENT_TYPE_LENGTH = 255


class PatchDecoder(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> object: ...


class BodySource(Protocol):
    """The request body as the service sees it: chunks, and whether it ended early."""

    def __iter__(self) -> Iterator[bytes]: ...

    @property
    def interrupted(self) -> bool: ...

    def digest(self, algorithm: str) -> bytes:
        """Digest of every byte received so far, with the algorithm of the request's digest."""
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
class RequestDigest:
    """A digest of the request content that the client declared: nothing of the request commits
    unless the bytes it sent match it."""

    algorithm: str
    expected: bytes
    #: What a mismatch raises: tus answers ``Upload-Checksum`` with its own 460
    #: (ChecksumMismatchError); Content-Digest mismatches are DigestMismatchError (400).
    mismatch: type[ByterangeError] = DigestMismatchError
    #: What the problem's detail calls the digest.
    source: str = "Content-Digest"


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    transaction: str = "persist"
    #: The digest of the request content, declared before the body (Content-Digest, tus
    #: ``Upload-Checksum``): the body is hashed as it streams in.
    digest: RequestDigest | None = None
    #: tus append: the committed prefix must end exactly here (``Upload-Offset``), checked
    #: under the resource row lock when the range is reserved.
    expected_offset: int | None = None
    #: A digest declared after the body (tus checksum-trailer): called once the body has ended,
    #: returns the digest that arrived in the trailer section (or raises a 400 if it did not).
    late_digest: Callable[[], RequestDigest] | None = None
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
        # A digest cannot be verified for bytes that never arrived: an interrupted or mismatching
        # request that carries one keeps nothing (the tus checksum extension; see
        # docs/spec-notes.md#e11-the-client-disconnects-mid-body).
        return self.transaction == "atomic" or self.digest is not None or self.late_digest is not None

    @property
    def digest_algorithm(self) -> str | None:
        """The algorithm the body must be hashed with, if any."""
        return self.digest.algorithm if self.digest is not None else None

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


class Keeper(Protocol):
    """The thread that renews the leases of streaming writes (leases.LeaseKeeper)."""

    def add(self, write: Any) -> None: ...

    def remove(self, write: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class WriteContext:
    """What the write session and concatenation may use of the service, and nothing more."""

    settings: Settings
    db: Database
    storage: StorageBackend
    #: The lifecycle event bus (see :meth:`publish`).
    events: EventBus
    #: Renews the leases of the writes whose bodies are streaming.
    keeper: Keeper
    #: Hash a resource a write just covered and complete it: ``finalize(resource_id,
    #: storage_key)`` (UploadService._finalize; nothing happens if that generation is gone).
    finalize: Callable[[str, str | None], None]
    #: This process's running SHA-256s of committed prefixes (writes in order are hashed as
    #: they stream; see running.py).
    digests: RunningDigests = dataclasses.field(default_factory=RunningDigests)

    def publish(self, conn: Connection, kind: EventKind, record: ResourceRecord, **data: object) -> None:
        """A lifecycle event about ``record``, inside the transaction of ``conn``."""
        self.events.publish(
            conn,
            ResourceEvent(
                kind=kind,
                resource_id=record.id,
                at=clock.utcnow(),
                owner=record.owner,
                length=record.length,
                data=data,
            ),
        )

    @staticmethod
    def snapshot(conn: Connection, resource_id: str, ranges_budget: int | None) -> resources.ResourceSnapshot:
        """The resource and as many of its first extents as ``ranges_budget`` shows (see
        UploadService.state): at least the first, which gives the offset."""
        if ranges_budget is None:
            return resources.load_snapshot(conn, resource_id, limit=1)
        return resources.load_snapshot(
            conn, resource_id, limit=SNAPSHOT_LIMIT, fits=ranges_fit(ranges_budget)
        )

    @staticmethod
    def joined_snapshot(
        conn: Connection, resource_id: str, ranges_budget: int | None
    ) -> resources.ResourceSnapshot | None:
        """:meth:`snapshot` in one statement, or None when it takes more (see
        resources.load_snapshot_joined)."""
        if ranges_budget is None:
            return resources.load_snapshot_joined(conn, resource_id, limit=1)
        return resources.load_snapshot_joined(
            conn, resource_id, limit=SNAPSHOT_LIMIT, fits=ranges_fit(ranges_budget)
        )


def ranges_fit(budget: int) -> Callable[[Extent], bool]:
    """A predicate that accepts extents while their ``Committed-Ranges`` value
    (``bytes=a-b,c-d``, see format_ranges) still fits in ``budget`` characters: past it the
    header is left out, so reading further extents for it would be wasted."""
    room = budget - len("bytes=") + 1

    def fits(extent: Extent) -> bool:
        nonlocal room
        room -= len(str(extent.start)) + len(str(extent.stop - 1)) + 2  # "a-b,"
        return room >= 0

    return fits


def check_not_failed(record: ResourceRecord) -> None:
    """:raises ReprDigestMismatchError: (409) if the complete representation failed the digest
    declared for it (it is never served)."""
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


def segment_loader(db: Database, resource_id: str) -> SegmentLoader:
    """Reads ``resource_id``'s segments from SQL when an object-store reader asks for them."""

    def load(at: int) -> list[Segment]:
        with db.read() as conn:
            return segments.segments_from(conn, resource_id, at)

    return load


def open_bytes(storage: StorageBackend, db: Database, record: ResourceRecord) -> StoredObject:
    """A read handle on the committed bytes of ``record`` (not a final: see concat.py)."""
    if storage.uses_segments:
        return storage.open_read(record.object_key, segment_loader(db, record.id))
    return storage.open_read(record.object_key)


def hash_into(
    stored: StoredObject, length: int, hashes: list[object], step: Callable[[], None] | None = None
) -> None:
    """Feed the first ``length`` bytes of ``stored`` to each of ``hashes``; ``step`` runs after
    each chunk (a hasher renews its lease there)."""
    position = 0
    while position < length:
        chunk = stored.read_at(position, min(READ_CHUNK, length - position))
        if not chunk:
            raise StorageError("The stored object is shorter than its committed extents.")
        for digest in hashes:
            digest.update(chunk)  # type: ignore[attr-defined]
        position += len(chunk)
        if step is not None:
            step()
