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
from ..errors import ServerShuttingDownError
from ..errors import UnsupportedVersionError
from .auth import init_auth
from .cors import init_cors
from .health import health_bp
from .ietf import error_headers as ietf_error_headers
from .ietf import ietf_problem
from .ietf import ietf_state_headers
from .ietf import interop_version
from .ietf import is_ietf_request
from .limits import init_limits
from .responses import problem
from .responses import render_error
from .responses import render_http_exception
from .responses import state_headers
from .shutdown import init_app as init_draining
from .tus import MethodOverride
from .tus import is_tus_request
from .tus import tus_error_status
from .tus import tus_state_headers
from .views import bp
from .views import service

log = logging.getLogger(__name__)


def init_app(app: Flask, settings: Settings) -> None:
    app.register_blueprint(bp, url_prefix=settings.mount)
    app.register_blueprint(health_bp)
    init_cors(app, settings)
    init_draining(app, settings)
    init_limits(app, settings)
    init_auth(app, settings)  # after CORS: a preflight carries no credentials
    app.wsgi_app = MethodOverride(app.wsgi_app)  # type: ignore[method-assign]

    @app.after_request
    def _tus_resumable(response: Response) -> Response:
        # tus: every response to a tus request says which version answered.
        if is_tus_request():
            response.headers.setdefault("Tus-Resumable", "1.0.0")
        elif interop_version() is not None:
            # IETF draft interop: echo the version the client sent, on every response.
            response.headers.setdefault("Upload-Draft-Interop-Version", str(interop_version()))
        return response

    @app.errorhandler(ByterangeError)
    def _byterange_error(error: ByterangeError) -> Response:
        if error.status >= 500 and not isinstance(error, ServerShuttingDownError):
            log.error("%s: %s", type(error).__name__, error.detail, exc_info=error)
        if is_tus_request():
            status, line = tus_error_status(error)
            response = render_error(error, settings, status=status)
            response.status = line
        elif is_ietf_request():
            status, type_uri = ietf_problem(error)
            response = render_error(error, settings, status=status, type_uri=type_uri)
            for name, value in ietf_error_headers(error).items():
                response.headers.setdefault(name, value)
        else:
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
    if resource_id is None or not error.reports_state:
        return
    if isinstance(error, (ResourceNotFoundError, ResourceGoneError, UnsupportedVersionError)):
        return  # no such resource, or (tus 412) a request that must not be processed at all
    try:
        state = service().state(resource_id, ranges_budget=service().settings.committed_ranges_header_limit)
    except ByterangeError:
        return
    if is_tus_request():
        headers = tus_state_headers(state)
    elif is_ietf_request():
        headers = ietf_state_headers(state)
    else:
        headers = state_headers(state, service().settings)
    for name, value in headers.items():
        response.headers.setdefault(name, value)
