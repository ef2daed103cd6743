"""What the HTTP layer knows of the request being handled, in one place.

The service of this app, the resource the request is about (the one in its URL, or the one it
has just created), and the headers its response carries whatever the outcome: the views say them
once, here, and the pipeline finishes every response -- an answer or a problem document -- with
them (:func:`finish`), so no view has to catch an error only to add a header to it.
"""

from __future__ import annotations

from flask import Response
from flask import current_app
from flask import g
from flask import request

from ..config import Settings
from ..uploads.service import UploadService

__all__ = ["carry", "created", "finish", "ranges_budget", "service", "settings", "subject_id"]


def service() -> UploadService:
    return current_app.extensions["byterange"]  # type: ignore[no-any-return]


def settings() -> Settings:
    return service().settings


def ranges_budget() -> int:
    """How much of the committed ranges a response can show (its Committed-Ranges header)."""
    return settings().committed_ranges_header_limit


def subject_id() -> str | None:
    """The resource this request is about: the one its URL names, else the one it created."""
    named = (request.view_args or {}).get("resource_id")
    return named if named is not None else g.get("created_id")


def carry(headers: dict[str, str]) -> None:
    """Headers the response to this request carries from now on, success or error."""
    g.setdefault("carried", {}).update(headers)


def created(resource_id: str, location: str) -> None:
    """This request created ``resource_id``: its response says where, and an error about the
    rest of the request (an upload body that broke off) carries the new resource's state."""
    g.created_id = resource_id
    carry({"Location": location})


def finish(response: Response) -> None:
    """Add the carried headers; what the response already says wins."""
    for name, value in g.get("carried", {}).items():
        response.headers.setdefault(name, value)
