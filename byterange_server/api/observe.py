"""The Flask side of observability: what only the app knows about a request, and ``/metrics``.

``runtime/observe.py`` (WSGI) keeps a :class:`~byterange_server.runtime.observe.RequestRecord` per
request; here :func:`describe_request` (the first step of the request pipeline) names its
protocol, route and resource id, and :func:`note_error` (called where problem documents are
rendered) its problem code and whether it was a conflict or an interruption.

``GET /metrics`` (``Settings.metrics_path``; empty turns it off) answers in the Prometheus text
format, or OpenMetrics when asked, with the totals of all workers. It is meant for a scraper on
the internal network, not the public: when ``Settings.metrics_token`` is set it requires
``Authorization: Bearer <token>`` (compared in constant time), a credential of its own so a
scraper needs no upload credential.
"""

from __future__ import annotations

import hmac

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import request

from ..config import Settings
from ..errors import ByterangeError
from ..errors import InvalidCredentialsError
from ..errors import TruncatedBodyError
from ..runtime.metrics import Metrics
from ..runtime.observe import RECORD_KEY
from ..runtime.observe import RequestRecord

__all__ = ["METRICS_KEY", "describe_request", "note_error", "note_problem", "register_metrics", "request_id"]

METRICS_KEY = "byterange.metrics"


def _record() -> RequestRecord | None:
    if not request:
        return None
    return request.environ.get(RECORD_KEY)  # type: ignore[no-any-return]


def request_id() -> str | None:
    """The id of the request being handled (None outside the observer, e.g. a bare test app)."""
    record = _record()
    return record.request_id if record is not None else None


def note_problem(code: str) -> None:
    record = _record()
    if record is not None:
        record.problem = code


def note_error(error: ByterangeError) -> None:
    record = _record()
    if record is None:
        return
    # The shared tree's status: tus and IETF may send another one for the same error.
    record.conflict = error.status == 409
    record.interrupted = isinstance(error, TruncatedBodyError)


def describe_request(protocol: str) -> None:
    """Name the request's route, resource and protocol (``protocol``: its dialect's name) on its
    record, before anything else runs, so even a request refused at once is told apart."""
    record = _record()
    if record is None:
        return
    if request.url_rule is not None:
        record.route = request.url_rule.rule
    if request.view_args:
        record.resource_id = request.view_args.get("resource_id")
    record.protocol = protocol if request.blueprint == "byterange" else "other"


def register_metrics(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """``GET /metrics``, unless ``Settings.metrics_path`` turns it off."""
    if not settings.metrics_path:
        return
    app.extensions[METRICS_KEY] = metrics
    app.register_blueprint(_metrics_blueprint(settings))


def _metrics_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    path = "/" + settings.metrics_path.strip("/")
    token = settings.metrics_token.encode()

    @bp.route(path, methods=["GET"], provide_automatic_options=False)
    def metrics() -> Response:
        if token and not _bearer_matches(request.headers.get("Authorization"), token):
            raise InvalidCredentialsError(
                "Scraping the metrics needs the metrics token.",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        body, content_type = current_app.extensions[METRICS_KEY].exposition(request.headers.get("Accept"))
        response = Response(body, status=200, content_type=content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp


def _bearer_matches(authorization: str | None, token: bytes) -> bool:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    # compare_digest on bytes of any length: the time does not depend on where they differ.
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token)
