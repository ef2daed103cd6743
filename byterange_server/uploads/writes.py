"""One write request, from reservation to commit: the write path every PATCH, partial PUT, tus
and IETF append takes.

A write request reserves each part's range when the part's fields arrive, streams its bytes
(writing the gaps, comparing bytes that are already committed), then commits everything in one
short transaction. The durability invariant holds here: the bytes are flushed (``fdatasync`` for files, every
object acknowledged by an object store) before the transaction that commits the extents
claiming them and, on an object store, the segments that map them (see
:meth:`WriteSession._commit`). See
:class:`WriteSession` for how interruptions and errors are applied; the lease keeper
(leases.py) renews the leases while the body streams.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import secrets
import threading
import time
from typing import Any

from ..db.ledger import extents
from ..db.ledger import garbage
from ..db.ledger import reservations
from ..db.ledger import resources
from ..db.ledger import segments
from ..db.ledger.resources import ResourceRecord
from ..errors import ByterangeError
from ..errors import BytesPastLengthError
from ..errors import BytesPastMaxSizeError
from ..errors import ContentMismatchError
from ..errors import FinalUploadWriteError
from ..errors import LengthConflictError
from ..errors import LimitExceededError
from ..errors import MalformedBodyError
from ..errors import MalformedHeaderError
from ..errors import MediaTypeConflictError
from ..errors import OffsetMismatchError
from ..errors import OverlappingPartsError
from ..errors import ReprDigestMismatchError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..errors import StorageError
from ..errors import TooManyExtentsError
from ..errors import TruncatedBodyError
from ..errors import WriteInProgressError
from ..extents import Extent
from ..extents import normalize
from ..protocol.digests import CHECKSUM_ALGORITHMS
from ..protocol.digests import SUPPORTED_DIGESTS
from ..protocol.digests import parse_digest_field
from ..protocol.digests import pick_digest
from ..protocol.events import NEED_DATA
from ..protocol.events import EndOfPatch
from ..protocol.events import PartData
from ..protocol.events import PartEnd
from ..protocol.events import PartStart
from ..protocol.media import parse_media_type
from ..protocol.parts import PartHeader
from ..storage.base import BlockWriter
from ..storage.base import Segment
from ..storage.base import StorageObjectMissingError
from ..storage.base import StoredObject
from ..storage.base import fixed_segments
from .values import MAX_CONTENT_TYPE_LENGTH
from .values import READ_CHUNK
from .values import BodySource
from .values import PatchDecoder
from .values import RequestDigest
from .values import WriteContext
from .values import WriteOptions
from .values import check_not_failed

__all__ = ["WriteSession"]

log = logging.getLogger(__name__)

#: Every algorithm a request's digest may name (RFC 9530 names and tus checksum names).
_HASHES = {**SUPPORTED_DIGESTS, **CHECKSUM_ALGORITHMS}
#: A request's parts are reserved in batches: those decoded from one body chunk, at most this
#: many, holding at most this many bytes of their data until reserved (see WriteSession._flush).
_BATCH_PARTS = 256
_BATCH_BYTES = 1024 * 1024


@dataclasses.dataclass
class _Part:
    header: PartHeader
    start: int
    #: Exclusive end of the reserved range (the declared end, or a bound when it is unknown).
    limit: int
    #: Declared exclusive end, None when the part did not say.
    stop: int | None
    #: None until the part's batch is reserved (see WriteSession._flush).
    reservation_id: str | None = None
    #: Committed extents inside [start, limit): bytes there are compared, not written.
    committed: list[Extent] = dataclasses.field(default_factory=list)
    #: Bytes applied to storage (written into gaps, or compared with committed bytes).
    received: int = 0
    #: Bytes decoded before the part was reserved: views of the received chunks (immutable,
    #: see protocol/events.py), applied in order once it is.
    queued: list[memoryview] = dataclasses.field(default_factory=list)
    queued_bytes: int = 0
    #: Object stores: the segments of ``committed``, and a reader over them for compares.
    segments: list[Segment] = dataclasses.field(default_factory=list)
    reader: StoredObject | None = None

    @property
    def seen(self) -> int:
        """Bytes of this part taken from the body so far, applied or queued."""
        return self.received + self.queued_bytes

    @property
    def written_extent(self) -> Extent | None:
        if self.received == 0:
            return None
        return Extent(self.start, self.start + self.received)


class _Interruption(Exception):
    """The body stopped short of what a part declared; carries the error to report."""

    def __init__(self, error: ByterangeError) -> None:
        self.error = error


class WriteSession:
    """One write request, from reservation to commit.

    Outcomes:

    - everything arrived and checks out → commit all parts, 2xx;
    - the body was interrupted (client gone, framing ended early, a part shorter or longer
      than its range) → under ``persist`` commit the received prefix of every part, under
      ``atomic`` (or with Content-Digest) commit nothing; then report the interruption (400);
    - anything else (malformed fields, overlapping parts, different bytes over committed ones,
      length conflicts, a digest mismatch) → commit nothing.
    """

    def __init__(
        self,
        context: WriteContext,
        resource_id: str,
        options: WriteOptions,
        ranges_budget: int | None = None,
    ) -> None:
        self.context = context
        self.settings = context.settings
        self.db = context.db
        self.resource_id = resource_id
        self.options = options
        #: How much of the committed ranges the response shows (see UploadService.state).
        self.ranges_budget = ranges_budget
        self.parts: list[_Part] = []
        #: How many of ``parts`` (a prefix) are reserved; the others wait for _flush.
        self.reserved = 0
        #: Bytes queued in the unreserved parts.
        self.queued_bytes = 0
        #: The storage key of the resource generation this request reserved in (from the row
        #: its first reservation locked); it writes there and nowhere else.
        self.storage_key: str | None = None
        #: The first reservation, which the keeper polls for all of them (see leases.LeaseKeeper).
        self.sentinel: str | None = None
        #: Starts and stops of the ended parts, sorted by start (see _overlapping_part).
        self.part_starts: list[int] = []
        self.part_stops: list[int] = []
        self.current: _Part | None = None
        self.declared_length: int | None = None
        self.declared_repr_digest: tuple[str, bytes] | None = None
        #: The media type a part's Content-Type declared (see _note_media_type).
        self.declared_media_type: str | None = None
        #: Parts that can carry no byte (an empty Content-Offset part at its end): not reserved.
        self.empty_parts = 0
        #: What to raise if bytes arrive for a part that may carry none.
        self.no_bytes_error: ByterangeError | None = None
        self.record: ResourceRecord | None = None
        #: Where this request's bytes go (see storage/base.py), from its first byte on.
        self.writer: BlockWriter | None = None
        #: Files: the object committed bytes are compared with.
        self.reader: StoredObject | None = None
        #: Object stores: segments stored (flushed) and not committed yet.
        self.new_segments: list[Segment] = []
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
        #: Whether the service's keeper thread looks after this request (see leases.LeaseKeeper);
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
        self.snapshot: resources.ResourceSnapshot | None = None
        #: A copy of the running SHA-256 of the committed prefix, fed with this request's bytes
        #: that continue it, up to ``running_stop`` (see running.py); None when this process
        #: has none for where the request's first bytes go.
        self.running: Any | None = None
        self.running_start = self.running_stop = -1

    # The request as a whole ------------------------------------------------------------------

    def run(self, decoder: PatchDecoder, body: BodySource) -> None:
        # One statement needs no transaction; the tus offset check reads a second.
        early = self.db.read() if self.options.expected_offset is not None else self.db.single()
        with early as conn:
            self.record = resources.load_resource(conn, self.resource_id)
            if self.record.concat == "final":
                raise FinalUploadWriteError(
                    "A final concatenated upload is read-only: its bytes are its partials'."
                )
            if self.options.expected_offset is not None:
                # Early, so a stale offset is refused before any body is read; _reserve
                # checks again under the row lock.
                self._check_offset(extents.prefix_stop(conn, self.resource_id))
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
            if self.options.digest is not None:
                self._verify_digest(self.options.digest, body.digest(self.options.digest.algorithm))
            if self.options.late_digest is not None:
                late = self.options.late_digest()
                self._verify_digest(late, self._hash_received(late.algorithm))
            self._commit(prefixes_only=False)
        finally:
            if self.registered:
                self.context.keeper.remove(self)
            # Before the release: an object store's writer waits here for a store in flight,
            # so nothing of this request lands after its reservation is gone.
            self._close_storage()
            self._release_leftovers()

    def _close_storage(self) -> None:
        handles: list[BlockWriter | StoredObject | None] = [self.writer, self.reader]
        handles += [part.reader for part in self.parts]
        for handle in handles:
            if handle is None:
                continue
            try:
                handle.close()
            except Exception:  # the request's own outcome is what the client needs
                log.warning("could not close storage of %s", self.resource_id, exc_info=True)

    def _pump(self, decoder: PatchDecoder, body: BodySource) -> None:
        # A part the request's own header fields place (tus, IETF, partial PUT: a raw decoder
        # yields it before any data) is reserved before the first read: a request that has
        # sent no byte yet then holds a reservation a newer HEAD can revoke and a DELETE can end
        # (resumable uploads §"Concurrency"), and cannot commit later behind a reported offset.
        self._drain(decoder)
        self._flush()
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
        if self.keeper_error is not None:
            raise self.keeper_error  # as in the loop: also when it ended before any chunk
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
                if not self.parts and self.declared_length is None and not self.empty_parts:
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
        self._note_media_type(event)
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
            self.empty_parts += 1  # a part all the same: a no-op, not a patch without parts
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
            ids, committed, found = self._reserve_batch(pending)
            for part, reservation_id, within, pieces in zip(pending, ids, committed, found, strict=True):
                part.reservation_id = reservation_id
                part.committed = within
                part.segments = pieces
            self.reserved = len(self.parts)
        if not self.registered:
            self.registered = self.kept = True
            self.context.keeper.add(self)
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
        if self.writer is None:
            assert self.storage_key is not None and self.sentinel is not None  # set by the first reservation
            assert self.record is not None
            try:
                self.writer = self.context.storage.begin_write(
                    self.storage_key, self.sentinel, self.record.block_size
                )
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
            self._compare(data, position, cursor, overlap_stop, part)
            cursor = overlap_stop
        if cursor < stop:
            self._write(data, position, cursor, stop)
        if self.running_stop < 0:  # the request's first bytes: do they continue a running digest?
            self.running = self.context.digests.take(self.resource_id, self.storage_key, position)
            self.running_start = self.running_stop = position
        if self.running is not None and position == self.running_stop:
            # Written or compared equal: these are the bytes the commit will claim here.
            self.running.update(data)
            self.running_stop = stop
        part.received += len(data)

    def _write(self, data: memoryview, base: int, start: int, stop: int) -> None:
        assert self.writer is not None
        if self.fenced:
            raise self._fenced_error()
        # A writer whose lease ran out (a stalled client, a paused process) may have been
        # replaced by another request that already committed these bytes: never write
        # without a lease we know is still ours.
        if time.monotonic() >= self.lease_deadline:
            self._renew()
            if self.revoked:
                raise _Interruption(self._stale_error())
        self.writer.write_at(start, data[start - base : stop - base])

    def _committed_reader(self, part: _Part) -> StoredObject:
        """What the committed bytes inside ``part`` are read from (opened on first use)."""
        storage = self.context.storage
        assert self.storage_key is not None
        if not storage.uses_segments:
            if self.reader is None:
                self.reader = storage.open_read(self.storage_key)
            return self.reader
        if part.reader is None:
            part.reader = storage.open_read(self.storage_key, fixed_segments(part.segments))
        return part.reader

    def _compare(self, data: memoryview, base: int, start: int, stop: int, part: _Part) -> None:
        reader = self._committed_reader(part)
        position = start
        while position < stop:
            size = min(READ_CHUNK, stop - position)
            stored = reader.read_at(position, size)
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

    def _note_media_type(self, event: PartStart) -> None:
        """A part's Content-Type has the effect it has on a PUT of the whole resource
        (byte-range draft §2.4): it is the resource's media type. Like the length, it is
        declared once (at creation or by a part) and then fixed; GET serves it."""
        values = event.header.get_all("content-type")
        if not values:
            return
        if len(values) > 1:
            raise MalformedHeaderError("A part has more than one Content-Type field.")
        value = values[0].strip(" \t")
        parse_media_type(value)  # 400 when it is not a media type
        if len(value) > MAX_CONTENT_TYPE_LENGTH:
            raise LimitExceededError(
                f"The content-type is longer than {MAX_CONTENT_TYPE_LENGTH} characters.",
                extra={"field": "content-type", "max-length": MAX_CONTENT_TYPE_LENGTH},
            )
        assert self.record is not None
        for known in (self.declared_media_type, _media_type_of(self.record)):
            _check_media_type(known, value)
        self.declared_media_type = value

    def _check_offset(self, current: int) -> None:
        expected = self.options.expected_offset
        if expected is not None and expected != current:
            raise OffsetMismatchError(
                "Upload-Offset is not the end of the committed bytes; nothing was applied.",
                extra={"expected-offset": current, "provided-offset": expected},
            )

    def _verify_digest(self, digest: RequestDigest, actual: bytes) -> None:
        """:raises ByterangeError: ``digest.mismatch`` unless ``actual`` is the digest declared."""
        if not secrets.compare_digest(actual, digest.expected):
            raise digest.mismatch(
                f"{digest.source} does not match the request content; nothing was applied.",
                extra={"algorithm": digest.algorithm},
            )

    def _hash_received(self, algorithm: str) -> bytes:
        """The digest of the bytes this request sent, for a digest known only after the body:
        they were not hashed on the way in, so they are read back from storage (still in the
        page cache) before anything is committed."""
        digest = _HASHES[algorithm]()
        if self.writer is not None:
            self.new_segments += self.writer.flush()  # an object store reads back what it stored
        storage = self.context.storage
        assert self.storage_key is not None
        for part in self.parts:
            if not part.received:
                continue
            if storage.uses_segments:
                loader = fixed_segments([*part.segments, *self.new_segments])
                with storage.open_read(self.storage_key, loader) as reader:
                    self._hash_range(reader, part.start, part.start + part.received, digest)
            else:
                self._hash_range(self._committed_reader(part), part.start, part.start + part.received, digest)
        return digest.digest()

    @staticmethod
    def _hash_range(reader: StoredObject, start: int, stop: int, digest: object) -> None:
        position = start
        while position < stop:
            chunk = reader.read_at(position, min(READ_CHUNK, stop - position))
            if not chunk:
                raise StorageError("The stored object is shorter than the bytes just written.")
            digest.update(chunk)  # type: ignore[attr-defined]
            position += len(chunk)

    # Transactions ----------------------------------------------------------------------------

    def _reserve_batch(
        self, pending: list[_Part]
    ) -> tuple[list[str], list[list[Extent]], list[list[Segment]]]:
        """Reserve the ranges of ``pending`` (one transaction): their reservation ids, the
        committed extents inside each and (object stores) their segments; renews the earlier
        parts' leases when due.

        On an object store the first batch also records this request's objects as garbage
        until its commit says otherwise: a writer killed between a store and its commit leaks
        nothing (the sweep collects what no segment names once the reservation is gone)."""
        storage = self.context.storage
        began = time.monotonic()
        earlier = [part.reservation_id for part in self.parts[: self.reserved]]
        ranges = [(part.start, part.limit) for part in pending]
        # Not durable (no fsync on SQLite): a reservation means nothing after a crash.
        with self.db.write(durable=False) as conn:
            record = resources.load_resource(conn, self.resource_id, for_update=True)
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
                if self.options.expected_offset is not None:
                    self._check_offset(extents.prefix_stop(conn, self.resource_id))
                if self.settings.max_writes_per_resource or self.settings.max_writes_per_principal:
                    # Taken with the first reservation, in its transaction: no extra round trip.
                    self.slot_id = reservations.take_write_slot(
                        conn,
                        self.resource_id,
                        self.options.principal,
                        lease_seconds=self.settings.lease_seconds,
                        max_per_resource=self.settings.max_writes_per_resource,
                        max_per_principal=self.settings.max_writes_per_principal,
                    )
            ids = reservations.reserve_many(
                conn,
                self.resource_id,
                ranges,
                lease_seconds=self.settings.lease_seconds,
                revocable=self.options.revocable,
            )
            committed = extents.extents_within_many(conn, self.resource_id, ranges)
            found: list[list[Segment]] = [[] for _ in ranges]
            if storage.uses_segments:
                for index, ((start, limit), within) in enumerate(zip(ranges, committed, strict=True)):
                    if within:
                        found[index] = segments.load_segments(conn, self.resource_id, start, limit)
                if not earlier:
                    garbage.record(
                        conn,
                        self.resource_id,
                        record.object_key,
                        garbage.UNREFERENCED,
                        scope=storage.write_scope(ids[0]),
                        reservation_id=ids[0],
                    )
            # One lease clock for the whole request: the earlier parts' leases are renewed
            # with this batch's when due (every batch would make a many-part request quadratic).
            renew = not earlier or began - self.last_renewal >= self.renew_interval
            lease = self.settings.lease_seconds
            if earlier and renew and not reservations.renew(conn, earlier, lease_seconds=lease):
                raise self._lease_lost()
        if renew:  # otherwise the earlier leases, renewed before, still end first
            self._leases_renewed(began)
        self.storage_key = record.object_key
        if self.sentinel is None:
            self.sentinel = ids[0]
        return ids, committed, found

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
                record = resources.load_resource(conn, self.resource_id, expired_ok=True)
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
                # Renew first, then look at the resource: a DELETE that commits between the two
                # statements (each sees the latest commit under READ COMMITTED) is then seen as
                # the 404 it is, not as a lease lost to another writer.
                alive = reservations.renew(conn, ids, lease_seconds=self.settings.lease_seconds)
                record = resources.load_resource(conn, self.resource_id)  # 404 once deleted
                if record.object_key != self.storage_key:
                    raise self._gone_error()
                reservations.renew_write_slot(conn, self.slot_id, lease_seconds=self.settings.lease_seconds)
                if not alive and self.options.revocable and reservations.any_revoked(conn, ids):
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
        if new and self.writer is not None:
            self.new_segments += self.writer.flush()  # durable before any row claims these bytes
        # Only what the extents claim: bytes stored past a part's received prefix (an error
        # between two gaps of one chunk) stay garbage, collected with the rest of the scope.
        claimed, whole = _clip(self.new_segments, normalize(new))
        ids = [part.reservation_id for part in self.parts[: self.reserved]]
        with self.keeper_lock:
            self.committing = True
        with self.db.write() as conn:
            # A write that began before the resource expired may commit: its live reservations
            # keep the expiry sweep away (see remove_expired).
            record = resources.load_resource(conn, self.resource_id, for_update=True, expired_ok=True)
            if self.storage_key is not None and record.object_key != self.storage_key:
                raise self._gone_error()  # its bytes went to the deleted generation
            # Released at once (rolled back with the rest if anything below fails): the one
            # statement also tells whether each reservation was still ours.
            if not reservations.release_alive(conn, ids):
                raise self._lease_lost()
            if self.declared_length is not None and not prefixes_only:
                record = resources.set_length(conn, record, self.declared_length)
            elif self.declared_length is not None:
                # An interrupted request still fixes a length it declared, if it can.
                try:
                    with conn.begin_nested():
                        record = resources.set_length(conn, record, self.declared_length)
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
                resources.set_expected_digest(conn, self.resource_id, *self.declared_repr_digest)
            if self.declared_media_type is not None:
                # Checked again under the row lock: another request may have declared one since.
                _check_media_type(_media_type_of(record), self.declared_media_type)
                resources.set_content_type(conn, self.resource_id, self.declared_media_type)
            merged = extents.add_extents(conn, self.resource_id, new)
            if claimed:
                segments.insert_segments(conn, self.resource_id, claimed)
            if whole and self.sentinel is not None and self.context.storage.uses_segments:
                garbage.drop_for_reservation(conn, self.sentinel)  # every stored piece is claimed
            limit = self.settings.max_extents
            # Counting is a scan of the resource's extents: skip it when every new extent
            # joined an existing one (then the count cannot have grown), as appends do.
            added = normalize(new)
            fresh = set(added)  # a set: a request of many separate parts is not quadratic here
            may_grow = any(extent in fresh for extent in merged)
            if new and limit and may_grow and extents.extent_count(conn, self.resource_id) > limit:
                # Rolled back with the rest of this transaction: nothing of the request commits.
                raise TooManyExtentsError(
                    "This write would leave too many separate committed ranges; fill the gaps "
                    "between them (or write adjacent ranges) instead.",
                    extra={"max-extents": limit},
                )
            events = self.context.events
            if new and events.active:
                # The offset costs a query; only a recorded event (a hook payload) needs it.
                offset = extents.prefix_stop(conn, self.resource_id) if events.recorded else None
                # Coalesced: 10,000 adjacent one-byte parts are one newly committed range.
                self.context.publish(
                    conn, "progress", record, ranges=[[e.start, e.stop] for e in added], offset=offset
                )
            reservations.release_write_slot(conn, self.slot_id)
            self.slot_id = None
            resources.touch(conn, self.resource_id)
            # The response's state, read under the same lock, in one statement when it can be;
            # its first extent also tells whether the write covered the resource.
            try:
                snapshot = self.context.joined_snapshot(conn, self.resource_id, self.ranges_budget)
            except ResourceGoneError:
                snapshot = None  # expired meanwhile: state() reports it as it always did
            if snapshot is not None and record.length is not None:
                first = snapshot.extents[:1]
                covered = record.length == 0 or first == [Extent(0, record.length)]
            else:
                covered = record.length is not None and extents.is_covered(
                    conn, self.resource_id, record.length
                )
            if covered and not record.is_complete:
                snapshot = None  # a completing write reads it after the digest instead
            elif snapshot is None:
                try:
                    snapshot = self.context.snapshot(conn, self.resource_id, self.ranges_budget)
                except ResourceGoneError:
                    pass
            self.snapshot = snapshot
        self.parts_released = True
        if self.running is not None and self.running_stop > self.running_start and not record.is_complete:
            # Committed: [0, running_stop) is what the running digest has seen.
            self.context.digests.put(self.resource_id, self.storage_key, self.running, self.running_stop)
        if covered and not record.is_complete:
            self.context.finalize(self.resource_id, self.storage_key)
        elif record.is_failed:
            check_not_failed(record)

    def _release_leftovers(self) -> None:
        if (self.parts_released or not self.reserved) and self.slot_id is None:
            return
        try:
            with self.db.write(durable=False) as conn:
                if not self.parts_released:
                    reservations.release(conn, [part.reservation_id for part in self.parts[: self.reserved]])
                reservations.release_write_slot(conn, self.slot_id)
                self.slot_id = None
        except ByterangeError:
            # The lease will expire on its own; the original error is what the client needs.
            log.warning("could not release reservations of %s", self.resource_id, exc_info=True)


def _media_type_of(record: ResourceRecord) -> str | None:
    """The media type a resource is declared (or, complete without one, served) as."""
    if record.content_type is None and record.is_complete:
        return "application/octet-stream"
    return record.content_type


def _check_media_type(known: str | None, declared: str) -> None:
    """:raises MediaTypeConflictError: (409) ``declared`` is not the media type ``known``
    (type, subtype and parameters compared as RFC 9110 §8.3.1 says, not as spelled)."""
    if known is None:
        return
    try:
        same = parse_media_type(known) == parse_media_type(declared)
    except MalformedHeaderError:  # stored as a creation sent it: compare as spelled
        same = known.strip(" \t") == declared
    if not same:
        raise MediaTypeConflictError(
            "The part's Content-Type differs from the media type declared for this resource; "
            "nothing was applied.",
            extra={"content-type": known, "requested-content-type": declared},
        )


def _clip(found: list[Segment], claimed: list[Extent]) -> tuple[list[Segment], bool]:
    """The parts of ``found`` inside the (normalized) ``claimed`` extents, and whether that is
    all of them."""
    starts = [extent.start for extent in claimed]
    kept: list[Segment] = []
    whole = True
    for segment in found:
        index = bisect.bisect_right(starts, segment.start) - 1
        index = max(index, 0)
        covered = 0
        while index < len(claimed) and claimed[index].start < segment.stop:
            extent = claimed[index]
            start, stop = max(extent.start, segment.start), min(extent.stop, segment.stop)
            if start < stop:
                covered += stop - start
                kept.append(
                    dataclasses.replace(
                        segment,
                        start=start,
                        stop=stop,
                        object_offset=segment.object_offset + start - segment.start,
                        checksum=segment.checksum if (start, stop) == (segment.start, segment.stop) else None,
                    )
                )
            index += 1
        whole = whole and covered == segment.length
    return kept, whole
