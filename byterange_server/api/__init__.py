"""The HTTP layer: one blueprint mounted at ``Settings.mount`` and the error rendering.

Every error leaves here as ``application/problem+json``: :class:`~byterange_server.errors.
ByterangeError` with its own type, Werkzeug's HTTP errors with theirs, and anything unexpected
as a bare 500 whose body holds no paths, SQL or stack traces (the log has them).
"""

from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from ..config import Settings
from ..errors import ByterangeError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from .responses import problem
from .responses import render_error
from .responses import render_http_exception
from .responses import state_headers
from .views import bp
from .views import service

log = logging.getLogger(__name__)


def init_app(app: Flask, settings: Settings) -> None:
    app.register_blueprint(bp, url_prefix=settings.mount)

    @app.errorhandler(ByterangeError)
    def _byterange_error(error: ByterangeError) -> Response:
        if error.status >= 500:
            log.error("%s: %s", type(error).__name__, error.detail, exc_info=error)
        response = render_error(error, settings)
        _add_state_headers(response, error)
        return response

    @app.errorhandler(HTTPException)
    def _http_exception(exc: HTTPException) -> Response:
        return render_http_exception(exc, settings)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal-error", "Internal server error", None, settings)


def _add_state_headers(response: Response, error: ByterangeError) -> None:
    """Errors about an existing resource carry its state, so a client can resume at once."""
    resource_id = (request.view_args or {}).get("resource_id")
    if resource_id is None or error.status >= 500:
        return
    if isinstance(error, (ResourceNotFoundError, ResourceGoneError)):
        return
    try:
        state = service().state(resource_id)
    except ByterangeError:
        return
    for name, value in state_headers(state, service().settings).items():
        response.headers.setdefault(name, value)
