"""tus 1.0.0 operations on the shared resources: creation and append at the offset.

A tus upload *is* a resource: the tus offset is the end of the committed prefix, an append is
one part written through the ordinary write path (reserve with a lease, stream, ``fdatasync``,
commit), so the durability rule, the idempotent overlap check and the lease-based protection
against concurrent writers hold for tus exactly as for byte-range requests. There is no
whole-upload lock: a HEAD reads committed extents and never waits for a PATCH.

This module knows tus semantics but no HTTP: :mod:`byterange_server.api.tus` parses headers
and formats responses.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BytesPastLengthError
from ..errors import ChecksumMismatchError
from ..errors import LengthConflictError
from ..errors import OffsetMismatchError
from ..protocol.parts import PartHeader
from ..protocol.ranges import ContentOffset
from ..protocol.raw import RawDecoder
from .service import UploadService
from .values import ANONYMOUS
from .values import BodySource
from .values import Creator
from .values import RequestDigest
from .values import ResourceState
from .values import WriteOptions


class TusUploads:
    """tus verbs over an :class:`UploadService`."""

    def __init__(self, service: UploadService) -> None:
        self.service = service

    def create(
        self,
        *,
        length: int | None,
        upload_metadata: str | None,
        concat: str | None = None,
        creator: Creator = ANONYMOUS,
    ) -> ResourceState:
        """POST (creation / creation-defer-length): ``length`` None means deferred."""
        return self.service.allocate(
            length=length, upload_metadata=upload_metadata, concat=concat, creator=creator
        )

    def append(
        self,
        resource_id: str,
        body: BodySource,
        *,
        offset: int,
        content_length: int | None,
        declared_length: int | None = None,
        checksum: tuple[str, bytes] | None = None,
        trailer_checksum: Callable[[], tuple[str, bytes]] | None = None,
        max_size: int | None = None,
        principal: str | None = None,
        on_stale: Callable[[], None] | None = None,
    ) -> ResourceState:
        """PATCH: write the body at ``offset``, which must be the current offset.

        :param declared_length: ``Upload-Length`` sent on a PATCH of a deferred-length upload.
        :param checksum: (algorithm, digest) of ``Upload-Checksum``; a mismatch or an
            interruption then keeps nothing.
        :param trailer_checksum: the same, from the trailer section (checksum-trailer), read
            when the body has ended.
        :param on_stale: ends the body at once (from another thread) when a DELETE fences
            this write.
        :raises OffsetMismatchError: (409) when ``offset`` is not the committed prefix's end.
        :raises BytesPastLengthError: (409; tus answers 413) for bytes past the length.
        """
        state = self.service.state(resource_id)
        if declared_length is not None:
            if declared_length < offset:
                raise LengthConflictError(
                    "Upload-Length is smaller than Upload-Offset.",
                    extra={"requested-length": declared_length, "offset": offset},
                )
            if content_length is not None and offset + content_length > declared_length:
                raise BytesPastLengthError(
                    "The chunk ends past Upload-Length; nothing was applied.",
                    extra={"length": declared_length, "last": offset + content_length - 1},
                )
        if content_length == 0 and declared_length is None:
            # Nothing to write or declare: only the offset has to be right
            # (docs/spec-notes.md#e2-zero-length-writes).
            if state.offset != offset:
                raise OffsetMismatchError(
                    "Upload-Offset is not the end of the committed bytes.",
                    extra={"expected-offset": state.offset, "provided-offset": offset},
                )
            return state
        header = PartHeader.from_range(ContentOffset(offset, declared_length), content_length)
        options = WriteOptions(
            digest=_checksum(checksum, "Upload-Checksum") if checksum is not None else None,
            late_digest=_trailer_checksum(trailer_checksum) if trailer_checksum is not None else None,
            expected_offset=offset,
            max_size=max_size,
            principal=principal,
            on_stale=on_stale,
        )
        return self.service.write(resource_id, RawDecoder(header), body, options)


def _checksum(checksum: tuple[str, bytes], source: str) -> RequestDigest:
    """A tus checksum of the request content: a mismatch is tus's own 460."""
    algorithm, expected = checksum
    return RequestDigest(algorithm, expected, mismatch=ChecksumMismatchError, source=source)


def _trailer_checksum(read: Callable[[], tuple[str, bytes]]) -> Callable[[], RequestDigest]:
    """checksum-trailer: the checksum is read from the trailer section once the body has ended."""
    return lambda: _checksum(read(), "The Upload-Checksum trailer")
