"""The one exception tree of byterange-server.

Every error a client can cause is a :class:`ByterangeError`. Lower layers (protocol, extents,
storage, service) raise these and never build responses; ``api/problems.py`` renders each one as
an RFC 9457 ``application/problem+json`` document in one place.

::

    ByterangeError                        .status .code .title .detail .extra .headers
    ├── ProtocolError (400)               raised by protocol/: bad syntax or framing
    │   ├── MalformedHeaderError (400)
    │   ├── MalformedBodyError (400)
    │   │   └── TruncatedBodyError (400)  body ended inside a part (an interruption)
    │   │       └── MalformedChunkError (400) chunked framing broken mid-body (an interruption)
    │   ├── MissingRangeError (422)       a part with no Content-Range / Content-Offset
    │   ├── UnsupportedRangeUnitError (422)
    │   ├── OverlappingPartsError (422)
    │   ├── UnsupportedMediaTypeError (415)
    │   ├── PreconditionFailedError (412)
    │   ├── UnsupportedVersionError (412)   tus: Tus-Resumable other than 1.0.0
    │   ├── UnsupportedChecksumError (400)  tus: Upload-Checksum algorithm we do not have
    │   ├── InvalidConcatError (400)        tus: Upload-Concat that cannot be honoured
    │   ├── InconsistentLengthError (400)   IETF: length indicators that disagree
    │   │   └── UploadLengthExceededError (400) IETF: content past the known length
    │   ├── HeaderFieldsTooLargeError (431) more header fields or bytes than allowed
    │   └── UnsupportedTransferCodingError (501) a transfer coding other than chunked
    ├── ResourceError                     state conflicts of one resource
    │   ├── ResourceNotFoundError (404)
    │   ├── ResourceGoneError (410)
    │   │   └── UploadInvalidError (410)  IETF: marked invalid by content past its length
    │   ├── LengthConflictError (409)
    │   │   └── BytesPastLengthError (409)  bytes at or past the known length
    │   ├── ContentMismatchError (409)    different bytes over committed bytes
    │   ├── WriteInProgressError (409)    overlaps a live writer; has Retry-After
    │   ├── RangeNotSatisfiableError (416)
    │   ├── IncompleteResourceError (409) GET of an incomplete resource without Range
    │   ├── DigestMismatchError (400)     Content-Digest of a request
    │   ├── ChecksumMismatchError (460)   tus Upload-Checksum of a request
    │   ├── OffsetMismatchError (409)     tus Upload-Offset is not the current offset
    │   ├── FinalUploadWriteError (403)   tus: a final concatenation takes no writes
    │   ├── ReprDigestMismatchError (409) expected digest of the whole representation
    │   ├── MediaTypeConflictError (409)  a media type other than the one declared earlier
    │   ├── CompletedUploadError (400)    IETF -04…-11: an empty append to a completed upload
    │   ├── ResourceExistsError (409)     a derived id (signed creation URL) already taken
    │   ├── ResourceTooLargeError (413)
    │   └── LimitExceededError (400)      a configured limit (parts, header block, ...)
    │       ├── BytesPastMaxSizeError (400) bytes past the maximum size, length unknown
    │       ├── TooManyExtentsError (409)  more separate committed ranges than allowed
    │       ├── TooManyWritesError (429)   concurrent writes per resource or principal
    │       ├── RequestTooLargeError (413) a body above max_request_bytes
    │       ├── QuotaExceededError (403)   a principal's open resources or declared bytes
    │       ├── BodyTooSlowError (408)     a body slower than min_body_rate
    │       └── HeaderTooSlowError (408)   a request head not complete within header_timeout
    ├── StorageError (500)                wraps OSError; 503 when transient
    ├── ServerShuttingDownError (503)     a draining worker; has Retry-After, reports state
    └── AuthError                         who may do what (signed URLs, tokens)
        ├── InvalidCredentialsError (401) malformed, unknown token or key, wrong signature
        │   └── MissingCredentialsError (401) none at all
        ├── SignatureScopeError (403)     a valid signature, but expired or another method
        ├── AmbiguousCredentialsError (400) a token and a signature in one request
        └── NotOwnerError (403)           the resource belongs to another principal
            └── PartialNotReadableError (403) tus: a partial the request may not read
    CreationRejectedError (403)           the pre-create hook said no (hooks/precreate.py)
    CreationHookUnavailableError (503)    the pre-create hook did not answer (fail-closed)

Each class has a stable kebab-case ``code``; the problem ``type`` URI is built from it, so a
client may dispatch on it. ``extra`` carries the figures that explain the error (offsets,
limits) and is merged into the problem document.
"""

from __future__ import annotations

from typing import Any


class ByterangeError(Exception):
    """Base of every error this project raises on purpose.

    :param detail: a sentence for humans about this occurrence.
    :param extra: machine-readable figures added to the problem document.
    :param headers: response headers that belong to this error (``Retry-After``, ...).
    """

    status: int = 500
    code: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, status={self.status})"

    @property
    def reports_state(self) -> bool:
        """Whether the response carries the state of the resource (offset, committed ranges) so
        the client can resume at once: client errors do; server errors do not, unless they
        say otherwise."""
        return self.status < 500


# -- protocol (sans-IO) --------------------------------------------------------------------------


class ProtocolError(ByterangeError):
    status = 400
    code = "malformed-request"
    title = "Malformed request"


class MalformedHeaderError(ProtocolError):
    code = "malformed-header"
    title = "Malformed header field"


class MalformedBodyError(ProtocolError):
    code = "malformed-body"
    title = "Malformed patch document"


class TruncatedBodyError(MalformedBodyError):
    """The body ended before the framing said it would: treated as an interruption."""

    code = "truncated-body"
    title = "Patch document ended early"


class MalformedChunkError(TruncatedBodyError):
    """The chunked framing of the body broke (a bad chunk size line, no CRLF after a chunk's
    data, a bad trailer): the body ends there, as an interruption, so the bytes of the chunks
    before it are kept unless the request is atomic."""

    code = "malformed-chunk"
    title = "Malformed chunked transfer coding"


class MissingRangeError(ProtocolError):
    status = 422
    code = "missing-range"
    title = "Part has no byte range"


class UnsupportedRangeUnitError(ProtocolError):
    status = 422
    code = "unsupported-range-unit"
    title = "Range unit is not bytes"


class OverlappingPartsError(ProtocolError):
    status = 422
    code = "overlapping-parts"
    title = "Parts of one request overlap"


class UnsupportedMediaTypeError(ProtocolError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported patch media type"


class PreconditionFailedError(ProtocolError):
    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class UnsupportedVersionError(ProtocolError):
    status = 412
    code = "unsupported-tus-version"
    title = "Unsupported tus protocol version"


class UnsupportedChecksumError(ProtocolError):
    code = "unsupported-checksum-algorithm"
    title = "Unsupported checksum algorithm"


class InvalidConcatError(ProtocolError):
    code = "invalid-concatenation"
    title = "Invalid concatenation"


class InconsistentLengthError(ProtocolError):
    """IETF resumable uploads: ``Upload-Length``, ``Upload-Complete: ?1`` with the content
    length, and the length already known disagree (or an append after completion)."""

    code = "inconsistent-upload-length"
    title = "Inconsistent upload length"


class UploadLengthExceededError(InconsistentLengthError):
    """IETF: the content would end past the known length. Its own class because from draft -08
    on it also marks the upload invalid (:class:`UploadInvalidError` from then on)."""

    code = "upload-length-exceeded"
    title = "Content past the upload length"


# -- resource state ------------------------------------------------------------------------------


class ResourceError(ByterangeError):
    status = 409
    code = "resource-conflict"
    title = "Conflict with the state of the resource"


class ResourceNotFoundError(ResourceError):
    status = 404
    code = "not-found"
    title = "No such resource"


class ResourceGoneError(ResourceError):
    status = 410
    code = "gone"
    title = "Resource is gone"


class UploadInvalidError(ResourceGoneError):
    """IETF (draft -08 on): the upload was marked invalid when content went past its length;
    every further interaction is rejected until it expires."""

    code = "upload-invalid"
    title = "The upload is invalid"


class LengthConflictError(ResourceError):
    code = "length-conflict"
    title = "Length conflicts with the resource"


class BytesPastLengthError(LengthConflictError):
    """Bytes at or past the known length. Same code as its parent for byte-range clients;
    its own class so tus can answer 413 (tusd's choice; tus itself says nothing)."""


class ContentMismatchError(ResourceError):
    code = "content-mismatch"
    title = "Bytes differ from committed bytes"


class WriteInProgressError(ResourceError):
    code = "write-in-progress"
    title = "Range is being written by another request"


class RangeNotSatisfiableError(ResourceError):
    status = 416
    code = "range-not-satisfiable"
    title = "Range not satisfiable"


class IncompleteResourceError(ResourceError):
    code = "incomplete-resource"
    title = "Resource is not complete"


class DigestMismatchError(ResourceError):
    status = 400
    code = "content-digest-mismatch"
    title = "Content-Digest does not match the request content"


class ChecksumMismatchError(ResourceError):
    status = 460
    code = "checksum-mismatch"
    title = "Checksum mismatch"


class OffsetMismatchError(ResourceError):
    code = "offset-mismatch"
    title = "Upload-Offset is not the current offset"


class FinalUploadWriteError(ResourceError):
    status = 403
    code = "final-upload"
    title = "A final concatenated upload cannot be written to"


class ReprDigestMismatchError(ResourceError):
    code = "repr-digest-mismatch"
    title = "Representation digest does not match"


class MediaTypeConflictError(ResourceError):
    code = "media-type-conflict"
    title = "Media type differs from the one declared"


class CompletedUploadError(ResourceError):
    """IETF -04…-11: an append without content to a completed upload (one with content is an
    :class:`InconsistentLengthError`); the upload is not modified."""

    status = 400
    code = "completed-upload"
    title = "The upload is already complete"


class ResourceExistsError(ResourceError):
    """A resource with the id the caller derived already exists (a signed creation URL creates
    exactly one resource)."""

    code = "resource-exists"
    title = "The resource already exists"


class ResourceTooLargeError(ResourceError):
    status = 413
    code = "too-large"
    title = "Resource would exceed the maximum size"


class LimitExceededError(ResourceError):
    status = 400
    code = "limit-exceeded"
    title = "A configured limit was exceeded"


class BytesPastMaxSizeError(LimitExceededError):
    """Bytes past the maximum size while the length is unknown (tus answers 413)."""


class TooManyExtentsError(LimitExceededError):
    """The write would leave the resource with more separate committed ranges than allowed;
    nothing of it was committed. Filling gaps (or writing adjacent ranges) still works."""

    status = 409
    code = "too-many-extents"
    title = "Too many separate committed ranges"


class TooManyWritesError(LimitExceededError):
    """Too many writes in flight on the resource or for the principal; has Retry-After."""

    status = 429
    code = "too-many-writes"
    title = "Too many concurrent writes"


class RequestTooLargeError(LimitExceededError):
    status = 413
    code = "request-too-large"
    title = "The request body is larger than allowed"


class QuotaExceededError(LimitExceededError):
    """Creating this resource would take its principal past its quota of open resources or of
    bytes declared for them; ``extra`` gives the limits and the current usage."""

    status = 403
    code = "quota-exceeded"
    title = "The principal's quota is exhausted"


class HeaderTooSlowError(LimitExceededError):
    """The request head (request line and header fields) did not arrive within the header
    timeout; answered by the gunicorn worker itself (``worker.py``), which then closes."""

    status = 408
    code = "header-too-slow"
    title = "The request head arrived too slowly"


class BodyTooSlowError(LimitExceededError):
    """The body arrived slower than the minimum rate; what arrived was kept (unless atomic)."""

    status = 408
    code = "body-too-slow"
    title = "The request body arrived too slowly"


class HeaderFieldsTooLargeError(ProtocolError):
    status = 431
    code = "header-fields-too-large"
    title = "Request header fields too large"


class UnsupportedTransferCodingError(ProtocolError):
    """``Transfer-Encoding`` names a coding other than one final ``chunked`` (RFC 9112 §6.1:
    a coding the server does not understand is answered 501). Nothing is stored."""

    status = 501
    code = "unsupported-transfer-coding"
    title = "Unsupported transfer coding"


# -- infrastructure ------------------------------------------------------------------------------


class StorageError(ByterangeError):
    status = 500
    code = "storage-error"
    title = "Storage failure"


class ServerShuttingDownError(ByterangeError):
    """The worker is draining (see ``shutdown.py``): a new request is refused, or an in-flight
    write was cut short after committing what it could. Retrying elsewhere succeeds."""

    status = 503
    code = "shutting-down"
    title = "Server is shutting down"

    @property
    def reports_state(self) -> bool:
        return True


# -- authentication ------------------------------------------------------------------------------


class AuthError(ByterangeError):
    status = 401
    code = "unauthorized"
    title = "Not authorized"


class InvalidCredentialsError(AuthError):
    status = 401
    code = "invalid-credentials"
    title = "Missing or invalid credentials"


class SignatureScopeError(AuthError):
    status = 403
    code = "signature-scope"
    title = "The signed URL does not allow this request"


class MissingCredentialsError(InvalidCredentialsError):
    code = "missing-credentials"
    title = "Credentials required"


class AmbiguousCredentialsError(AuthError):
    status = 400
    code = "ambiguous-credentials"
    title = "More than one kind of credentials"


class NotOwnerError(AuthError):
    status = 403
    code = "not-owner"
    title = "The resource belongs to another principal"


class PartialNotReadableError(NotOwnerError):
    """tus ``Upload-Concat: final`` names a partial upload that this request could not read:
    it belongs to another principal, and its URL carries no signature that allows reading it."""

    code = "partial-not-readable"
    title = "A partial upload named for concatenation may not be read by this request"


# -- hooks ---------------------------------------------------------------------------------------


class CreationRejectedError(ByterangeError):
    """The pre-create hook refused the creation; ``extra["reason"]`` is its reason, if it gave one."""

    status = 403
    code = "creation-rejected"
    title = "The creation hook rejected this upload"


class CreationHookUnavailableError(ByterangeError):
    """The pre-create hook could not be asked and the server fails closed; has Retry-After."""

    status = 503
    code = "creation-hook-unavailable"
    title = "The creation hook is unavailable"
