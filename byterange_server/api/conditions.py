"""Conditional requests (RFC 9110 §13): If-None-Match, If-Match, If-Range."""

from __future__ import annotations

from datetime import datetime

from flask import request

from ..errors import PreconditionFailedError
from ..errors import ResourceNotFoundError
from ..protocol.validators import ETag
from ..protocol.validators import parse_etag_list
from ..protocol.validators import parse_if_range
from ..protocol.validators import strong_match
from ..protocol.validators import weak_match
from ..uploads.service import UploadService
from ..uploads.values import ResourceState


def _current_etag(state: ResourceState) -> ETag | None:
    return ETag.parse(state.etag) if state.etag else None


def not_modified(state: ResourceState) -> bool:
    """GET/HEAD with If-None-Match that matches (weak comparison) → 304."""
    header = request.headers.get("If-None-Match")
    if header is None or not state.complete:
        return False  # an incomplete resource has no representation to match yet
    tags = parse_etag_list(header)
    if tags == "*":
        return True
    current = _current_etag(state)
    return current is not None and any(weak_match(tag, current) for tag in tags)


def check_write_preconditions(service: UploadService, resource_id: str) -> None:
    """If-Match / If-None-Match on PATCH, PUT and DELETE.

    Only the creating request should send ``If-None-Match: *``; on an existing resource it fails
    with 412 as RFC 9110 requires (the byte-range draft's example repeats it by mistake).

    :raises PreconditionFailedError: (412).
    """
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    if if_match is None and if_none_match is None:
        return
    try:
        state = service.state(resource_id)
    except ResourceNotFoundError:
        if if_match is not None:
            raise PreconditionFailedError("If-Match: the resource does not exist.") from None
        raise
    current = _current_etag(state)
    if if_match is not None:
        tags = parse_etag_list(if_match)
        if tags != "*" and not (current and any(strong_match(tag, current) for tag in tags)):
            raise PreconditionFailedError("If-Match does not match the resource.")
    if if_none_match is not None:
        tags = parse_etag_list(if_none_match)
        if tags == "*" or (current and any(weak_match(tag, current) for tag in tags)):
            raise PreconditionFailedError("If-None-Match: the resource already exists.")


def range_applies(state: ResourceState) -> bool:
    """If-Range: serve the Range only when the validator still matches (strong comparison)."""
    header = request.headers.get("If-Range")
    if header is None:
        return True
    validator = parse_if_range(header)
    current = _current_etag(state)
    if isinstance(validator, ETag):
        return current is not None and strong_match(validator, current)
    completed = state.record.completed_at
    if not isinstance(validator, datetime) or completed is None:
        return False  # an unparsable If-Range means "send the whole representation"
    # A date validator is strong here: a complete resource never changes again.
    return int(validator.timestamp()) == int(completed.timestamp())
