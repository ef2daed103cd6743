"""Turning service results into response headers and problem documents, in one place."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Response
from flask import request
from flask import url_for
from werkzeug.exceptions import HTTPException

from ..config import Settings
from ..errors import ByterangeError
from ..protocol.digests import format_digest
from ..protocol.media import PATCH_MEDIA_TYPES
from ..protocol.params import format_content_disposition
from ..protocol.ranges import format_ranges
from ..protocol.validators import format_http_date
from ..uploads.values import ResourceState
from .observe import note_error
from .observe import note_problem
from .observe import request_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
ACCEPT_PATCH = ", ".join(PATCH_MEDIA_TYPES)


def state_headers(state: ResourceState, settings: Settings) -> dict[str, str]:
    """The state of a resource, as sent on HEAD and on every write response."""
    headers = {
        "Upload-Offset": str(state.offset),
        "Upload-Complete": "?1" if state.complete else "?0",
    }
    if state.length is not None:
        headers["Upload-Length"] = str(state.length)
    ranges = None if state.truncated else format_ranges(state.extents)
    if ranges is not None and len(ranges) <= settings.committed_ranges_header_limit:
        headers["Committed-Ranges"] = ranges
    headers["Link"] = (
        f'<{url_for("byterange.committed_ranges", resource_id=state.id)}>; rel="committed-ranges"'
    )
    if not state.complete:
        headers["Cache-Control"] = "no-store"
    return headers


def representation_headers(state: ResourceState) -> dict[str, str]:
    """Validators and metadata of a complete resource (GET, HEAD)."""
    headers: dict[str, str] = {"Accept-Ranges": "bytes"}
    record = state.record
    if state.etag is not None:
        headers["ETag"] = state.etag
    if record.sha256 is not None and state.complete and not record.is_failed:
        headers["Repr-Digest"] = format_digest("sha-256", record.sha256)
    if record.completed_at is not None:
        headers["Last-Modified"] = format_http_date(record.completed_at)
    if record.filename:
        headers["Content-Disposition"] = format_content_disposition(record.filename)
    headers["Content-Type"] = record.content_type or "application/octet-stream"
    return headers


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    settings: Settings | None,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    type_uri: str | None = None,
) -> Response:
    base = settings.problem_base_uri if settings else Settings.problem_base_uri
    body: dict[str, Any] = {"type": type_uri or base + code, "title": title, "status": status}
    if detail and detail != title:
        body["detail"] = detail
    if request:
        body["instance"] = request.path
        if (rid := request_id()) is not None:
            # The same id as the X-Request-Id header and the log lines of this request.
            body["request-id"] = rid
        note_problem(code)
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    response = Response(
        json.dumps(body, separators=(",", ":")) + "\n",
        status=status,
        content_type=PROBLEM_JSON,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_error(
    error: ByterangeError,
    settings: Settings,
    *,
    status: int | None = None,
    type_uri: str | None = None,
) -> Response:
    """The problem document of ``error``; ``status`` and ``type_uri`` override its own (another
    protocol's dialect: tus status codes, the IETF draft's registered problem types)."""
    note_error(error)
    return problem(
        status or error.status,
        error.code,
        error.title,
        error.detail,
        settings,
        extra=error.extra,
        headers=error.headers,
        type_uri=type_uri,
    )


def render_http_exception(exc: HTTPException, settings: Settings) -> Response:
    """Werkzeug's own errors (unknown URL, wrong method) as problem documents too."""
    code = (exc.name or "error").lower().replace(" ", "-")
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return problem(exc.code or 500, code, exc.name or "Error", exc.description, settings, headers=headers)


def bodiless(status: int, *header_sets: Mapping[str, str] | None) -> Response:
    """A response without a body (no ``Content-Type``), with the headers of each set in order."""
    response = Response(status=status)
    del response.headers["Content-Type"]
    for headers in header_sets:
        for name, value in (headers or {}).items():
            response.headers[name] = value
    return response
