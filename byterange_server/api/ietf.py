"""IETF Resumable Uploads (draft-ietf-httpbis-resumable-upload) on the same URLs
(docs/spec-notes.md#protocol-dispatch).

A request is in the IETF dialect when it carries an ``Upload-Draft-Interop-Version`` this
server speaks (6, 7, 8 or 9; echoed on every response), or ``Upload-Complete`` without any interop
version (the published protocol): :func:`claims`. A version we do not speak is processed as if
the field were absent (docs/spec-notes.md#e23), i.e. as a byte-range request. ``Tus-Resumable``
wins over both (``dialect.py`` asks tus first).

Its handlers (:data:`HANDLERS`) answer creation (POST, PUT or PATCH to the collection with
``Upload-Complete``), offset retrieval (HEAD), append (PATCH with ``application/partial-upload``)
and cancellation (DELETE) instead of the byte-range views. GET keeps its byte-range meaning,
except that from interop 9 it is an offset retrieval too. Where the interop versions disagree,
:func:`rules` gives the request's version's rules (one :class:`InteropRules` per version).

Errors stay in the one exception tree and are rendered in one place; :func:`ietf_answer` gives
the draft's status and registered problem type where it has one, and :func:`ietf_state_headers`
replaces the byte-range state headers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from flask import Response
from flask import g
from flask import request

from ..db.clock import utcnow
from ..errors import ByterangeError
from ..errors import BytesPastMaxSizeError
from ..errors import CompletedUploadError
from ..errors import InconsistentLengthError
from ..errors import LengthConflictError
from ..errors import MalformedHeaderError
from ..errors import OffsetMismatchError
from ..errors import ReprDigestMismatchError
from ..errors import RequestTooLargeError
from ..errors import ResourceTooLargeError
from ..errors import UnsupportedMediaTypeError
from ..protocol.digests import format_digest
from ..protocol.digests import parse_digest_field
from ..protocol.digests import parse_want_digest
from ..protocol.digests import pick_digest
from ..protocol.ietf import PARTIAL_UPLOAD
from ..protocol.ietf import PROBLEM_COMPLETED_UPLOAD
from ..protocol.ietf import PROBLEM_INCONSISTENT_LENGTH
from ..protocol.ietf import PROBLEM_MISMATCHING_OFFSET
from ..protocol.ietf import InteropRules
from ..protocol.ietf import UploadLimit
from ..protocol.ietf import parse_interop_version
from ..protocol.ietf import parse_upload_complete
from ..protocol.ietf import parse_upload_number
from ..protocol.ietf import rules_for
from ..protocol.media import parse_media_type
from ..protocol.params import parse_content_disposition_filename
from ..uploads.ietf import IetfUploads
from ..uploads.values import ResourceState
from . import auth
from . import context
from . import interim
from .body import request_body
from .reads import serve_get
from .responses import ACCEPT_PATCH
from .responses import ErrorAnswer
from .responses import bodiless

_VERSION_FIELD = "Upload-Draft-Interop-Version"


def interop_version() -> int | None:
    """The request's interop version if this server speaks it (cached per request)."""
    if "ietf_interop" not in g:
        value = request.headers.get(_VERSION_FIELD)
        g.ietf_interop = parse_interop_version(value) if value is not None else None
    return g.ietf_interop  # type: ignore[no-any-return]


def rules() -> InteropRules:
    """The rules of the request's interop version (the newest one's without the field)."""
    return rules_for(interop_version())


def claims(headers: Mapping[str, str]) -> bool:
    """Whether a request with these header fields is in the IETF dialect."""
    value = headers.get(_VERSION_FIELD)
    if value is not None:
        return parse_interop_version(value) is not None
    return "Upload-Complete" in headers


def stamp(response: Response) -> None:
    """Draft interop: echo the version the client sent, on every response."""
    version = interop_version()
    if version is not None:
        response.headers.setdefault(_VERSION_FIELD, str(version))


def upload_limit(state: ResourceState | None) -> UploadLimit:
    """Every limit there is (interop 8 requires all to be announced): the maximum size, and
    the time an incomplete upload has left before it expires."""
    settings = context.settings()
    max_age = None
    if state is not None and not state.complete and state.record.expires_at is not None:
        max_age = max(0, int((state.record.expires_at - utcnow()).total_seconds()))
    return UploadLimit(
        max_size=settings.max_resource_size,
        min_size=0,
        max_append_size=settings.max_request_bytes or None,
        max_age=max_age,
    )


def options_headers() -> dict[str, str]:
    """What every OPTIONS response adds: creation is supported here, so ``Upload-Limit``.

    Drafts -10/-11 (interop 8) also required ``Accept-Patch`` to list partial-upload (later
    reverted); it is added for those requests only, so other clients see the byte-range list.
    """
    headers = {"Upload-Limit": upload_limit(None).format(interop_version())}
    if rules().options_accept_patch:
        headers["Accept-Patch"] = f"{ACCEPT_PATCH}, {PARTIAL_UPLOAD}"
    return headers


def ietf_state_headers(state: ResourceState) -> dict[str, str]:
    """HEAD and every creation/append response."""
    headers = {
        "Upload-Offset": str(state.offset),
        "Upload-Complete": "?1" if state.complete else "?0",
        "Upload-Limit": upload_limit(state).format(interop_version()),
        "Cache-Control": "no-store",
    }
    if state.length is not None:
        headers["Upload-Length"] = str(state.length)
    digest = _wanted_repr_digest(state)
    if digest is not None:
        headers["Repr-Digest"] = digest
    return headers


def _wanted_repr_digest(state: ResourceState) -> str | None:
    """``Repr-Digest`` of a complete upload when ``Want-Repr-Digest`` asks for sha-256 (the
    digest every complete resource has); a malformed preference is only a hint, ignored."""
    value = request.headers.get("Want-Repr-Digest")
    record = state.record
    if value is None or not state.complete or record.sha256 is None or record.is_failed:
        return None
    try:
        weights = parse_want_digest(value)
    except MalformedHeaderError:
        return None
    if weights.get("sha-256", 0) <= 0:
        return None
    return format_digest("sha-256", record.sha256)


def ietf_answer(error: ByterangeError) -> ErrorAnswer:
    """The draft's status and problem type for an error of the shared tree (None: ours); a
    rejection by a limit carries ``Upload-Limit`` so the client can adjust."""
    status, type_uri = _status_and_type(error)
    headers = {}
    limits = (ResourceTooLargeError, BytesPastMaxSizeError, RequestTooLargeError)
    if status == 413 or isinstance(error, limits):
        headers["Upload-Limit"] = upload_limit(None).format(interop_version())
    return ErrorAnswer(status, type_uri=type_uri, headers=headers)


def says_incomplete(answer: ErrorAnswer, error: ByterangeError) -> ErrorAnswer:
    """``Upload-Complete: ?0`` on an error answer, where the request's version asks it (-06…-09:
    "any response, successful or not"; the editor's copy: ?0 means the upload protocol's
    semantics apply, also for an invalid operation on a completed upload). Not for the outcome of
    processing a completed representation (a digest that failed at completion), and not where a
    HEAD or GET reports the resource's state: there the field is the state."""
    if not rules().errors_say_incomplete or isinstance(error, ReprDigestMismatchError):
        return answer
    if request.method in ("HEAD", "GET") and "Upload-Complete" in answer.headers:
        return answer
    return dataclasses.replace(answer, headers={**answer.headers, "Upload-Complete": "?0"})


def _status_and_type(error: ByterangeError) -> tuple[int, str | None]:
    if isinstance(error, CompletedUploadError):
        return 400, PROBLEM_COMPLETED_UPLOAD
    if isinstance(error, OffsetMismatchError):
        return 409, PROBLEM_MISMATCHING_OFFSET
    if isinstance(error, (InconsistentLengthError, LengthConflictError)):
        # Includes bytes past the known length: the draft answers 400 for both.
        return 400, PROBLEM_INCONSISTENT_LENGTH
    if isinstance(error, BytesPastMaxSizeError):
        return 413, None
    return error.status, None


# -- the verbs -----------------------------------------------------------------------------------


def _uploads() -> IetfUploads:
    return IetfUploads(context.service())


def _response(state: ResourceState, status: int, extra: dict[str, str] | None = None) -> Response:
    return bodiless(status, ietf_state_headers(state), extra)


def _number(name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return parse_upload_number(value, field=name)
    except MalformedHeaderError:
        if rules().ignores_invalid_fields:
            return None  # -09 on: other values MUST cause the entire field to be ignored
        raise


def _complete() -> bool | None:
    value = request.headers.get("Upload-Complete")
    if value is None:
        return None
    try:
        return parse_upload_complete(value)
    except MalformedHeaderError:
        if rules().ignores_invalid_fields:
            return None  # -09 on: other values MUST cause the entire field to be ignored
        raise


def _refuse_fields(method: str, names: tuple[str, ...]) -> None:
    """Drafts -04/-05: a HEAD or DELETE carrying an upload field is refused with 400."""
    present = [name for name in names if name in request.headers]
    if present:
        raise MalformedHeaderError(
            f"A {method} of an upload must not carry {', '.join(present)} (interop 6).",
            extra={"fields": present},
        )


def _has_body() -> bool:
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def _content_length() -> int | None:
    """The content length, None when the body is chunked (unknown until it ends)."""
    if "Transfer-Encoding" in request.headers:
        return None
    return request.content_length or 0


def _content_digest() -> tuple[str, bytes] | None:
    value = request.headers.get("Content-Digest")
    return pick_digest(parse_digest_field(value)) if value else None


def _append(resource_id: str, *, offset: int, complete: bool, upload_length: int | None) -> ResourceState:
    content_digest = _content_digest()
    algorithm = content_digest[0] if content_digest else None
    version = rules()
    with request_body(algorithm, atomic=content_digest is not None) as body:
        return _uploads().append(
            resource_id,
            body.reader,
            offset=offset,
            complete=complete,
            content_length=_content_length(),
            upload_length=upload_length,
            content_digest=content_digest,
            on_stale=body.cut,
            replay=version.replays_completion,
            invalidate_on_overrun=version.invalidates_on_overrun,
            **auth.write_scope(),
        )


def create(**_: Any) -> Response | None:
    """Creation: POST, PUT or PATCH to the collection with ``Upload-Complete``.
    201 (also when the upload completed in this request), 400, 413."""
    complete = _complete()
    if complete is None:
        return None  # not a creation: the byte-range meaning (a POST allocates)
    content_type = request.headers.get("Content-Type")
    media_type = parse_media_type(content_type)[0] if content_type else None
    disposition = request.headers.get("Content-Disposition")
    expected = request.headers.get("Repr-Digest")
    _content_digest()  # a malformed one is refused before anything exists
    state = _uploads().create(
        complete=complete,
        content_length=_content_length(),
        upload_length=_number("Upload-Length"),
        # The representation's metadata; partial-upload only describes an append body.
        content_type=content_type if media_type not in (None, PARTIAL_UPLOAD) else None,
        filename=parse_content_disposition_filename(disposition) if disposition else None,
        expected_digest=pick_digest(parse_digest_field(expected, field="Repr-Digest")) if expected else None,
        creator=auth.creator(),
    )
    location = auth.resource_location(state.id)
    # The upload exists: even if its body breaks off, the answer says where and how far it got.
    context.created(state.id, location)
    # 104 before the body is read, so an interrupted creation can still be resumed.
    if context.settings().send_104:
        interim.send_104(request.environ, location, interop_version(), upload_limit(state))
    if _has_body():
        state = _append(state.id, offset=0, complete=complete, upload_length=None)
    return _response(state, 201)


def head(resource_id: str) -> Response:
    """Offset retrieval: 204 with the committed offset, after ending a stale append -- if the
    caller may write the upload. A read-only signed URL gets the state and cuts nothing: ending
    an append is a write (draft §"Concurrency" asks it of the client that resumes)."""
    _refuse_fields("HEAD", rules().head_forbidden)
    if auth.may_write():
        context.service().end_stale_appends(resource_id)
    return _response(context.service().state(resource_id), 204)


def get(resource_id: str) -> Response | None:
    """From interop 9, GET is an offset retrieval too (editor's copy, "Offset Retrieval"): an
    incomplete upload without ``Range`` answers as HEAD does; otherwise the byte-range GET,
    with the fields a successful offset retrieval carries. Before 9: the byte-range GET."""
    if not rules().get_retrieves_offset:
        return None
    if "Range" not in request.headers:
        if auth.may_write():
            context.service().end_stale_appends(resource_id)
        state = context.service().state(resource_id)
        if not state.complete:
            return _response(state, 204)
    service = context.service()
    budget = context.ranges_budget()
    state = service.with_digest(service.state(resource_id, ranges_budget=budget), ranges_budget=budget)
    response = serve_get(service, state)
    fields = ietf_state_headers(state)
    for name in ("Upload-Offset", "Upload-Complete", "Upload-Length", "Upload-Limit"):
        if name in fields:
            response.headers[name] = fields[name]
    return response


def append(resource_id: str) -> Response:
    """Append: PATCH with ``application/partial-upload``. 204 (also when complete), 400, 404,
    409 (mismatching offset), 410, 413, 415."""
    content_type = request.headers.get("Content-Type")
    if content_type is None or parse_media_type(content_type)[0] != PARTIAL_UPLOAD:
        raise UnsupportedMediaTypeError(
            f"An upload append must be {PARTIAL_UPLOAD}.", extra={"accept": PARTIAL_UPLOAD}
        )
    offset = _number("Upload-Offset")
    complete = _complete()
    if offset is None or complete is None:
        raise MalformedHeaderError("An append needs Upload-Offset and Upload-Complete.")
    context.service().end_stale_appends(resource_id)
    state = _append(resource_id, offset=offset, complete=complete, upload_length=_number("Upload-Length"))
    return _response(state, 204)


def delete(resource_id: str) -> Response:
    """Cancellation: 204; in-flight appends find their reservation gone and stop."""
    _refuse_fields("DELETE", rules().delete_forbidden)
    context.service().delete(resource_id)
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


#: (endpoint, method) -> what answers it for an IETF request; a handler that returns None leaves
#: the request to the byte-range view (a POST without ``Upload-Complete`` allocates).
HANDLERS: dict[tuple[str, str], Callable[..., Response | None]] = {
    ("byterange.allocate", "POST"): create,
    ("byterange.collection_write", "PUT"): create,
    ("byterange.collection_write", "PATCH"): create,
    ("byterange.resource", "HEAD"): head,
    ("byterange.resource", "GET"): get,
    ("byterange.patch", "PATCH"): append,
    ("byterange.delete", "DELETE"): delete,
}
