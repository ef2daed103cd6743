"""IETF Resumable Uploads on the shared resources: creation, append, completion.

As for tus (:mod:`byterange_server.uploads.tus`), an upload *is* a resource, its offset is the end of
the committed prefix, and an append is one ``Content-Offset`` part through the ordinary write
path (reserve with a lease, stream, ``fdatasync``, commit), so durability, the idempotent
overlap check and the lease protection hold unchanged. What is specific to the draft is the
length bookkeeping (:func:`~byterange_server.protocol.ietf.resolve_length`), completion by
``Upload-Complete: ?1`` rather than by covering a declared length, and a stale append being
ended by a newer request (:meth:`IetfUploads.end_stale_appends`).

No HTTP here: :mod:`byterange_server.api.ietf` parses headers and formats responses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..errors import BytesPastLengthError
from ..errors import CompletedUploadError
from ..errors import InconsistentLengthError
from ..errors import UploadLengthExceededError
from ..protocol.ietf import resolve_length
from ..protocol.parts import PartHeader
from ..protocol.ranges import ContentOffset
from ..protocol.ranges import ContentRange
from ..protocol.raw import RawDecoder
from .service import UploadService
from .values import ANONYMOUS
from .values import BodySource
from .values import Creator
from .values import RequestDigest
from .values import ResourceState
from .values import WriteOptions


class IetfUploads:
    """The draft's verbs over an :class:`UploadService`."""

    def __init__(self, service: UploadService) -> None:
        self.service = service

    def create(
        self,
        *,
        complete: bool,
        content_length: int | None,
        upload_length: int | None,
        content_type: str | None = None,
        filename: str | None = None,
        expected_digest: tuple[str, bytes] | None = None,
        creator: Creator = ANONYMOUS,
    ) -> ResourceState:
        """The upload resource of a creation request, before its content is appended.

        :raises InconsistentLengthError: (400) length indicators that disagree; nothing created.
        :raises ResourceTooLargeError: (413) a length above the maximum size.
        """
        length = resolve_length(
            offset=0, complete=complete, content_length=content_length, upload_length=upload_length
        )
        return self.service.allocate(
            length=length,
            content_type=content_type,
            filename=filename,
            expected_digest=expected_digest,
            creator=creator,
        )

    def append(
        self,
        resource_id: str,
        body: BodySource,
        *,
        offset: int,
        complete: bool,
        content_length: int | None,
        upload_length: int | None = None,
        content_digest: tuple[str, bytes] | None = None,
        on_stale: Callable[[], None] | None = None,
        max_size: int | None = None,
        principal: str | None = None,
        replay: bool = True,
        invalidate_on_overrun: bool = False,
    ) -> ResourceState:
        """Append the body at ``offset``; with ``complete`` the upload ends with it.

        :param replay: an empty completing append at the end of a completed upload gets its
            final state again (the editor's copy allows it); False: it is refused, as drafts
            -04…-11 require.
        :param invalidate_on_overrun: content past the known length also marks the upload
            invalid (drafts -08 on), so every later request to it is refused.

        :param content_length: None for a body of unknown length (chunked).
        :param on_stale: called (from another thread) if a newer request for this upload
            ends this one while its body streams; it should stop the body (cut the read side
            of the connection). What arrived until then is committed.
        :raises OffsetMismatchError: (409) ``offset`` is not the end of the committed prefix.
        :raises InconsistentLengthError: (400) lengths that disagree, content past the length,
            or a non-empty append to a complete upload;
            :class:`UploadLengthExceededError` for content past the length.
        :raises CompletedUploadError: (400) an empty append to a complete upload, without ``replay``.
        """
        state = self.service.state(resource_id)
        if state.complete:
            extra = {"length": state.length, "offset": offset}
            if not content_length and content_length is not None:
                # The client may have missed the final response: replay it for an empty
                # completing append at the end, where the draft allows it.
                if replay and complete and offset == state.length:
                    return state
                raise CompletedUploadError("The upload is already complete.", extra=extra)
            raise InconsistentLengthError("The upload is already complete.", extra=extra)
        try:
            return self._append(
                state, body, offset=offset, complete=complete, content_length=content_length,
                upload_length=upload_length, content_digest=content_digest, on_stale=on_stale,
                max_size=max_size, principal=principal,
            )
        except (UploadLengthExceededError, BytesPastLengthError):
            if invalidate_on_overrun:
                self.service.invalidate(resource_id)
            raise

    def _append(
        self,
        state: ResourceState,
        body: BodySource,
        *,
        offset: int,
        complete: bool,
        content_length: int | None,
        upload_length: int | None,
        content_digest: tuple[str, bytes] | None,
        on_stale: Callable[[], None] | None,
        max_size: int | None,
        principal: str | None,
    ) -> ResourceState:
        resource_id = state.id
        self.service.check_offset(state, offset)
        length = resolve_length(
            offset=offset,
            complete=complete,
            content_length=content_length,
            upload_length=upload_length,
            known_length=state.length,
        )
        options = WriteOptions(
            digest=RequestDigest(*content_digest) if content_digest is not None else None,
            expected_offset=offset,
            on_stale=on_stale,
            revocable=True,
            max_size=max_size,
            principal=principal,
        )
        if content_length == 0:
            if length is None and not complete:
                return state  # an empty ?0 append: nothing to write or declare
            if length is None:
                length = offset
            return self._set_length(resource_id, offset, length, options)
        header = PartHeader.from_range(ContentOffset(offset, length), content_length)
        state = self.service.write(resource_id, RawDecoder(header), body, options)
        if complete and state.length is None:
            # A chunked completing append: its length is known only now that it has ended.
            state = self._set_length(resource_id, state.offset, state.offset, WriteOptions())
        return state

    def _set_length(self, resource_id: str, offset: int, length: int, options: WriteOptions) -> ResourceState:
        if length != offset:
            # An empty ?1 append completes at its offset; a longer declared length cannot
            # be reached without more content.
            raise InconsistentLengthError(
                "Upload-Complete: ?1 ends the upload here, but its length is larger.",
                extra={"length": length, "offset": offset},
            )
        header = PartHeader.from_range(ContentRange.unsatisfied(length))
        return self.service.write(resource_id, RawDecoder(header), _EmptyBody(), options)


class _EmptyBody:
    """The body of a request that only declares a length."""

    interrupted = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    def digest(self, algorithm: str) -> bytes:
        return hashlib.new(algorithm.replace("-", ""), b"").digest()
