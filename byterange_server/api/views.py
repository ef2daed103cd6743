"""The byte-range protocol's views: parse the request, call the service, format the response.

A tus or IETF request reaches a view only for a verb its dialect leaves to the byte-range
meaning (``dialect.py``); the pipeline in ``app.py`` runs the dialect's handler instead.
"""

from __future__ import annotations

import dataclasses

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask import url_for
from werkzeug.exceptions import MethodNotAllowed

from ..errors import MalformedHeaderError
from ..errors import ResourceExistsError
from ..protocol.digests import parse_digest_field
from ..protocol.digests import pick_digest
from ..protocol.media import decoder_for
from ..protocol.numbers import parse_int
from ..protocol.params import parse_content_disposition_filename
from ..protocol.params import parse_prefer
from ..protocol.params import transaction_preference
from ..protocol.parts import PartHeader
from ..protocol.raw import RawDecoder
from ..uploads.values import RequestDigest
from ..uploads.values import ResourceState
from ..uploads.values import WriteOptions
from . import auth
from . import conditions
from .body import request_body
from .context import carry
from .context import ranges_budget as _ranges_budget
from .context import service
from .dialect import discovery_headers
from .reads import serve_get
from .responses import bodiless
from .responses import representation_headers
from .responses import state_headers

bp = Blueprint("byterange", __name__)

RESOURCE_METHODS = "OPTIONS, HEAD, GET, PATCH, PUT, DELETE"
COLLECTION_METHODS = "OPTIONS, POST"


def _state_response(state: ResourceState, status: int, extra: dict[str, str] | None = None) -> Response:
    return bodiless(status, state_headers(state, service().settings), extra)


@bp.post("", strict_slashes=False, provide_automatic_options=False)
def allocate() -> Response:
    """POST /files: allocate an empty resource. 201, 400, 413."""
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise MalformedHeaderError("A POST that allocates a resource has an empty body.")
    length_header = request.headers.get("Upload-Length")
    expected = request.headers.get("Repr-Digest")
    disposition = request.headers.get("Content-Disposition")
    length = parse_int(length_header) if length_header is not None else None
    creator = auth.creator()
    try:
        state = service().allocate(
            length=length,
            content_type=request.headers.get("Content-Type") or None,
            filename=parse_content_disposition_filename(disposition) if disposition else None,
            expected_digest=pick_digest(parse_digest_field(expected)) if expected else None,
            creator=creator,
            ranges_budget=_ranges_budget(),
        )
    except ResourceExistsError:
        # A signed creation URL used again (a retry after a lost response): the same resource,
        # unless this request contradicts it.
        assert creator.resource_id is not None
        state = service().state(creator.resource_id, ranges_budget=_ranges_budget())
        if length is not None and state.length is not None and length != state.length:
            raise
        return _state_response(state, 200, {"Location": auth.resource_location(state.id)})
    return _state_response(state, 201, {"Location": auth.resource_location(state.id)})


@bp.route("", methods=["PUT", "PATCH"], strict_slashes=False, endpoint="collection_write",
          provide_automatic_options=False)
def collection_write() -> Response:
    """Only IETF creation (``Upload-Complete``) uses PUT or PATCH on the collection."""
    raise MethodNotAllowed(valid_methods=[method.strip() for method in COLLECTION_METHODS.split(",")])


@bp.route("", methods=["OPTIONS"], strict_slashes=False)
def collection_options() -> Response:
    return _options_response(COLLECTION_METHODS)


@bp.route("/<resource_id>", methods=["OPTIONS"])
def resource_options(resource_id: str) -> Response:
    return _options_response(RESOURCE_METHODS)


def _options_response(allow: str) -> Response:
    """Discovery: what every dialect advertises, for any URL of the mount."""
    return bodiless(204, {"Allow": allow}, discovery_headers())


def head(resource_id: str) -> Response:
    """HEAD: the committed state. ``Content-Length`` is the committed prefix (byte-range draft)."""
    budget = _ranges_budget()
    state = service().with_digest(service().state(resource_id, ranges_budget=budget), ranges_budget=budget)
    # HEAD answers as GET would: a representation that failed its digest is refused.
    service().check_not_failed(state.record)
    not_modified = conditions.not_modified(state)
    response = _state_response(state, 304 if not_modified else 200)
    if state.complete:
        response.headers.update(representation_headers(state))
    if not not_modified:
        response.headers["Content-Length"] = str(state.offset)
    return response


@bp.get("/<resource_id>", endpoint="resource", provide_automatic_options=False)
def get(resource_id: str) -> Response:
    """GET (and HEAD, which Flask routes here): ranges as RFC 9110 says; holes never served."""
    if request.method == "HEAD":
        return head(resource_id)
    budget = _ranges_budget()
    state = service().with_digest(service().state(resource_id, ranges_budget=budget), ranges_budget=budget)
    return serve_get(service(), state)


@bp.get("/<resource_id>/committed-ranges", provide_automatic_options=False)
def committed_ranges(resource_id: str) -> Response:
    """The whole committed-range list as JSON, paginated: ``?after=<offset>&limit=<n>``; with
    the ranges live writers hold (``in_flight``), for the extent map."""
    after = parse_int(request.args.get("after", "0"))
    limit = min(parse_int(request.args.get("limit", "1000")), 10_000) or 1
    page, more, flying = service().extent_map_page(resource_id, after=after, limit=limit)
    body: dict[str, object] = {
        "ranges": [[extent.start, extent.stop - 1] for extent in page],
        "next": None,
        "in_flight": [[extent.start, extent.stop - 1] for extent in flying],
    }
    response = jsonify(body)
    if more:
        next_url = url_for(
            "byterange.committed_ranges", resource_id=resource_id, after=page[-1].stop, limit=limit
        )
        body["next"] = next_url
        response = jsonify(body)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.patch("/<resource_id>", provide_automatic_options=False)
def patch(resource_id: str) -> Response:
    """PATCH with one of the byte-range media types. 204, 400, 404, 409, 410, 412, 415, 422."""
    settings = service().settings
    decoder = decoder_for(
        request.headers.get("Content-Type"),
        max_header_bytes=settings.max_part_header_bytes,
        max_parts=settings.max_parts,
    )
    return _write(resource_id, decoder)


@bp.put("/<resource_id>", provide_automatic_options=False)
def put(resource_id: str) -> Response:
    """Partial PUT (``Content-Range``), or a whole representation when it has none."""
    content_range = request.headers.get("Content-Range")
    content_length = request.content_length
    if content_range is None:
        if content_length is None:
            raise MalformedHeaderError("A PUT without Content-Range needs a Content-Length.")
        header = PartHeader.whole(content_length)
        media_type = request.headers.get("Content-Type")
        if media_type:
            # A PUT of the whole resource: its Content-Type is the resource's media type (as a
            # part's is, byte-range draft §2.4). A partial PUT's describes only its segment.
            header = dataclasses.replace(header, fields=(("content-type", media_type),))
    else:
        header = PartHeader.from_request_headers(content_range, content_length)
    return _write(resource_id, RawDecoder(header))


def _write(resource_id: str, decoder: object) -> Response:
    svc = service()
    conditions.check_write_preconditions(svc, resource_id)
    options = _write_options()
    # Whatever happens to the write, the answer says which transaction rule it ran under.
    carry({"Preference-Applied": f"transaction={options.applied}"})
    with request_body(options.digest_algorithm, atomic=options.atomic) as body:
        # A DELETE of the resource fences the write: the lease keeper cuts its body at once.
        options = dataclasses.replace(options, on_stale=body.cut)
        state = svc.write(
            resource_id, decoder, body.reader, options, ranges_budget=_ranges_budget()  # type: ignore[arg-type]
        )
    return _state_response(state, 204)


def _write_options() -> WriteOptions:
    try:
        prefer = parse_prefer(request.headers.getlist("Prefer"))
    except MalformedHeaderError:
        prefer = {}  # RFC 7240: preferences are hints; a malformed one is ignored
    digest_header = request.headers.get("Content-Digest")
    picked = pick_digest(parse_digest_field(digest_header)) if digest_header else None
    return WriteOptions(
        transaction=transaction_preference(prefer),
        digest=RequestDigest(*picked) if picked is not None else None,
        **auth.write_scope(),
    )


@bp.delete("/<resource_id>", provide_automatic_options=False)
def delete(resource_id: str) -> Response:
    """DELETE: rows and bytes are removed; live writes to it are cut within a lease-keeper tick."""
    svc = service()
    if request.headers.get("If-Match") is not None:
        conditions.check_write_preconditions(svc, resource_id)
    svc.delete(resource_id)
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response

