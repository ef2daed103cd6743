"""tus 1.0.0 (the tus resumable upload protocol) on the same URLs (docs/spec-notes.md#protocol-dispatch).

A request carrying ``Tus-Resumable`` is a tus request (:func:`claims`; ``dialect.py`` applies the
policy). Its handlers (:data:`HANDLERS`) answer the tus verbs (POST, HEAD, PATCH, DELETE)
instead of the byte-range views; GET, PUT and the committed-ranges document keep their
byte-range meaning. OPTIONS always carries the tus discovery headers as well as the byte-range
ones (tus ignores ``Tus-Resumable`` on OPTIONS).

Errors stay in the one exception tree and are rendered in one place; for a tus request
:func:`tus_answer` picks the tus status code and :func:`tus_state_headers` replaces the
byte-range state headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Response
from flask import request
from flask import url_for
from gunicorn.http.body import ChunkedReader
from werkzeug.datastructures import EnvironHeaders

from ..errors import ByterangeError
from ..errors import BytesPastLengthError
from ..errors import BytesPastMaxSizeError
from ..errors import InvalidConcatError
from ..errors import MalformedHeaderError
from ..errors import UnsupportedMediaTypeError
from ..protocol.digests import CHECKSUM_ALGORITHMS
from ..protocol.media import parse_media_type
from ..protocol.numbers import parse_int
from ..protocol.tus import OFFSET_OCTET_STREAM
from ..protocol.tus import TUS_VERSION
from ..protocol.tus import ConcatFinal
from ..protocol.tus import check_tus_resumable
from ..protocol.tus import format_upload_concat
from ..protocol.tus import parse_defer_length
from ..protocol.tus import parse_upload_checksum
from ..protocol.tus import parse_upload_concat
from ..protocol.tus import parse_upload_metadata
from ..protocol.validators import format_http_date
from ..storage.base import validate_resource_id
from ..uploads.tus import TusUploads
from ..uploads.values import ResourceState
from . import auth
from . import context
from .body import request_body
from .responses import ErrorAnswer
from .responses import bodiless

#: What ``Tus-Extension`` advertises: only what is implemented and tested.
TUS_EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
    "concatenation-unfinished",
)
#: The reason phrase of tus's own status code (Werkzeug knows none for it).
_REASONS = {460: "Checksum Mismatch"}
_METHOD_RE = re.compile(r"[A-Z]{1,16}")


def claims(headers: Mapping[str, str]) -> bool:
    """Whether a request with these header fields is a tus request: any ``Tus-Resumable``."""
    return "Tus-Resumable" in headers


def check_version() -> None:
    """:raises UnsupportedVersionError: (412) a ``Tus-Resumable`` this server does not speak."""
    check_tus_resumable(request.headers["Tus-Resumable"])


def stamp(response: Response) -> None:
    """Every response to a tus request says which version answered."""
    response.headers.setdefault("Tus-Resumable", TUS_VERSION)


def server_reads_trailers() -> bool:
    """Whether this WSGI server hands us request trailers (see :func:`_trailer_source`).

    WSGI has no way to pass trailers to the application. gunicorn parses the trailer section
    of a chunked body into its request object, which the body reader keeps a reference to, so
    under gunicorn they can be reached; under other servers checksum-trailer is not offered.
    """
    if not request.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return False
    return hasattr(ChunkedReader, "parse_trailers")


def _trailer_source() -> Callable[[], list[tuple[str, str]]] | None:
    """A getter for this request's trailers, or None when they cannot be read (not gunicorn,
    or not a chunked body: only gunicorn's ChunkedReader keeps the request it parses into)."""
    if not server_reads_trailers():
        return None
    reader = getattr(request.environ.get("wsgi.input"), "reader", None)
    parsed_into = getattr(reader, "req", None)
    if parsed_into is None or not hasattr(parsed_into, "trailers"):
        return None
    return lambda: list(parsed_into.trailers or [])


def discovery_headers() -> dict[str, str]:
    """The tus headers of every OPTIONS response."""
    extensions = list(TUS_EXTENSIONS)
    if server_reads_trailers():
        extensions.insert(extensions.index("checksum") + 1, "checksum-trailer")
    return {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(extensions),
        "Tus-Max-Size": str(context.service().settings.max_resource_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


def tus_state_headers(state: ResourceState) -> dict[str, str]:
    """HEAD and write responses: offset, length (or deferred), metadata, expiry."""
    record = state.record
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    # tus: a final upload has no offset until the concatenation is done; then it is the length.
    if record.concat != "final" or state.complete:
        headers["Upload-Offset"] = str(state.offset)
    if state.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(state.length)
    if record.upload_metadata:
        headers["Upload-Metadata"] = record.upload_metadata
    if not state.complete and record.expires_at is not None:
        headers["Upload-Expires"] = format_http_date(record.expires_at)
    if record.concat == "partial":
        headers["Upload-Concat"] = "partial"
    elif record.upload_concat is not None:  # a final: the field as received
        headers["Upload-Concat"] = record.upload_concat
    elif record.concat == "final":  # created before the field was stored: rebuilt as paths
        urls = tuple(
            url_for("byterange.resource", resource_id=piece.source_id)
            for piece in context.service().pieces(state.id)
        )
        headers["Upload-Concat"] = format_upload_concat(ConcatFinal(urls))
    return headers


def tus_answer(error: ByterangeError) -> ErrorAnswer:
    """The tus status code of an error of the shared tree, and its reason phrase when Werkzeug
    knows none.

    Most errors keep their status; a length overrun, which tus leaves open, is 413 as in tusd.
    """
    status = error.status
    if isinstance(error, (BytesPastLengthError, BytesPastMaxSizeError)):
        status = 413
    return ErrorAnswer(status, reason=_REASONS.get(status))


class MethodOverride:
    """WSGI middleware: ``X-HTTP-Method-Override`` replaces the method of tus requests.

    tus requires it ("the server MUST treat it as the method"); it applies only when
    ``Tus-Resumable`` is present so that byte-range requests mean exactly what they say.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if override and claims(EnvironHeaders(environ)):
            method = override.strip().upper()
            if _METHOD_RE.fullmatch(method):
                environ["REQUEST_METHOD"] = method
        return self.app(environ, start_response)


# -- the tus verbs -------------------------------------------------------------------------------


def _uploads() -> TusUploads:
    return TusUploads(context.service())


def _response(state: ResourceState, status: int, extra: dict[str, str] | None = None) -> Response:
    return bodiless(status, tus_state_headers(state), extra)


def _header_int(name: str) -> int | None:
    value = request.headers.get(name)
    return None if value is None else parse_int(value.strip(" \t"), field=name)


def _has_body() -> bool:
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def _check_offset_stream() -> None:
    content_type = request.headers.get("Content-Type")
    media_type = parse_media_type(content_type)[0] if content_type else None
    if media_type != OFFSET_OCTET_STREAM:
        raise UnsupportedMediaTypeError(
            f"A tus upload body must be {OFFSET_OCTET_STREAM}.",
            extra={"accept": OFFSET_OCTET_STREAM},
        )


def _checksum() -> tuple[str, bytes] | None:
    value = request.headers.get("Upload-Checksum")
    return parse_upload_checksum(value) if value is not None else None


def _trailer_checksum() -> Callable[[], tuple[str, bytes]] | None:
    """checksum-trailer: a request announces ``Trailer: Upload-Checksum`` and sends the field
    after a chunked body. Refused up front (400) where trailers cannot be read, so a checksum
    is never silently skipped."""
    declared = {
        name.strip(" \t").lower()
        for value in request.headers.getlist("Trailer")
        for name in value.split(",")
    }
    if "upload-checksum" not in declared:
        return None
    if "Upload-Checksum" in request.headers:
        raise MalformedHeaderError("Send Upload-Checksum as a header or as a trailer, not both.")
    source = _trailer_source()
    if source is None:
        raise MalformedHeaderError(
            "An Upload-Checksum trailer can only be read from a chunked body under gunicorn.",
            extra={"field": "Trailer"},
        )

    def read() -> tuple[str, bytes]:
        values = [value for name, value in source() if name.lower() == "upload-checksum"]
        if len(values) != 1:
            raise MalformedHeaderError(
                "Trailer announced Upload-Checksum, but the trailer section did not carry "
                "exactly one; nothing was applied.",
                extra={"field": "Upload-Checksum", "count": len(values)},
            )
        return parse_upload_checksum(values[0])

    return read


def _append(resource_id: str, offset: int, declared_length: int | None) -> ResourceState:
    checksum = _checksum()
    trailer_checksum = _trailer_checksum()
    atomic = checksum is not None or trailer_checksum is not None
    with request_body(checksum[0] if checksum else None, atomic=atomic) as body:
        return _uploads().append(
            resource_id,
            body.reader,
            offset=offset,
            content_length=request.content_length,
            declared_length=declared_length,
            checksum=checksum,
            trailer_checksum=trailer_checksum,
            on_stale=body.cut,
            **auth.write_scope(),
        )


def _source_ids(concat: ConcatFinal) -> tuple[list[str], dict[str, str]]:
    """The ids behind the URLs of ``Upload-Concat: final;...`` (absolute or relative URLs of
    this server's uploads; the host is not checked, as in tusd), and for each id the URL that
    named it with its query (a signed URL proves a right to read it, see auth.readable_sources)."""
    prefix = url_for("byterange.allocate").rstrip("/") + "/"
    ids = []
    urls: dict[str, str] = {}
    for url in concat.urls:
        path = urlsplit(url).path
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            raise InvalidConcatError(
                "Upload-Concat names a URL that is not an upload of this server.",
                extra={"url": url[:200], "expected-prefix": prefix},
            )
        resource_id = validate_resource_id(path[len(prefix) :])
        ids.append(resource_id)
        if "br-" in url or resource_id not in urls:
            urls[resource_id] = url  # a signed spelling of a partial named twice wins
    return ids, urls


def _create_final(concat: ConcatFinal, metadata: str | None) -> Response:
    if "Upload-Length" in request.headers or "Upload-Defer-Length" in request.headers:
        raise MalformedHeaderError("A final upload's length is the sum of its partials: send none.")
    if _has_body():
        raise MalformedHeaderError("A final upload takes no body.")
    context.service().check_concat_parts(len(concat.urls))  # before any URL is parsed or verified
    ids, urls = _source_ids(concat)
    # tus: HEAD echoes Upload-Concat as received, but not a signed URL's query: a signature is
    # a credential (to read, perhaps to write a partial), not for whoever may HEAD the final.
    echoed = format_upload_concat(ConcatFinal(tuple(url.split("?", 1)[0] for url in concat.urls)))
    state = context.service().create_final(
        ids,
        upload_metadata=metadata,
        upload_concat=echoed,
        creator=auth.creator(),
        vouched=auth.readable_sources(urls),
    )
    context.created(state.id, auth.resource_location(state.id))
    return _response(state, 201)


def create() -> Response:
    """POST: creation, creation-defer-length, creation-with-upload, concatenation.
    201, 400, 413, 415."""
    metadata = request.headers.get("Upload-Metadata")
    if metadata is not None:
        parse_upload_metadata(metadata)  # validated, then stored exactly as sent
        metadata = metadata.strip(" \t") or None
    concat_value = request.headers.get("Upload-Concat")
    concat = parse_upload_concat(concat_value) if concat_value is not None else None
    if isinstance(concat, ConcatFinal):
        return _create_final(concat, metadata)
    length = _header_int("Upload-Length")
    defer = request.headers.get("Upload-Defer-Length")
    if defer is not None:
        parse_defer_length(defer)
        if length is not None:
            raise MalformedHeaderError("Send Upload-Length or Upload-Defer-Length, not both.")
    elif length is None:
        raise MalformedHeaderError("A tus POST needs Upload-Length or Upload-Defer-Length: 1.")
    with_upload = _has_body()
    if with_upload:
        _check_offset_stream()
        _checksum()  # a malformed checksum is refused before anything is created
        _trailer_checksum()  # and so is a trailer that cannot be read here
        if length is not None and (request.content_length or 0) > length:
            raise BytesPastLengthError(
                "The body is longer than Upload-Length; nothing was created.",
                extra={"length": length, "content-length": request.content_length},
            )
    state = _uploads().create(
        length=length,
        upload_metadata=metadata,
        concat="partial" if concat else None,
        creator=auth.creator(),
    )
    # The upload exists: even if its body breaks off, the answer says where and how far it got.
    context.created(state.id, auth.resource_location(state.id))
    if with_upload:
        state = _append(state.id, 0, None)
    return _response(state, 201)


def head(resource_id: str) -> Response:
    """HEAD: 200 with the committed offset; never waits for a running PATCH."""
    return _response(context.service().state(resource_id), 200)


def patch(resource_id: str) -> Response:
    """PATCH: append at Upload-Offset. 204, 400, 403 (final), 404, 409, 410, 413, 415, 460."""
    _check_offset_stream()
    offset = _header_int("Upload-Offset")
    if offset is None:
        raise MalformedHeaderError("A tus PATCH needs Upload-Offset.")
    declared_length = _header_int("Upload-Length")
    return _response(_append(resource_id, offset, declared_length), 204)


def delete(resource_id: str) -> Response:
    """DELETE (termination): 204; the upload is gone, later requests get 404."""
    context.service().delete(resource_id)
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


#: (endpoint, method) -> what answers it for a tus request; the rest keep their byte-range meaning.
HANDLERS: dict[tuple[str, str], Callable[..., Response]] = {
    ("byterange.allocate", "POST"): create,
    ("byterange.resource", "HEAD"): head,
    ("byterange.patch", "PATCH"): patch,
    ("byterange.delete", "DELETE"): delete,
}
