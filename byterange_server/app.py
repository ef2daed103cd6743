"""The application factory: settings, database, storage and the HTTP layer wired together.

Every request to the app goes through one pipeline, read top to bottom in :func:`_install_pipeline`:
before the view, the steps in their order (the first that answers ends the request); then the
view, or the handler of the request's dialect; an error of any step or view rendered in one
place, in the request's dialect; and every response finished the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from flask import Flask
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from . import hooks
from .api import auth
from .api import context
from .api import cors
from .api import limits
from .api import observe
from .api import shutdown
from .api.body import GUARD_KEY
from .api.body import ThroughputGuard
from .api.dialect import dialect
from .api.health import health_bp
from .api.origin import creation_origin
from .api.responses import problem
from .api.responses import render_error
from .api.responses import render_http_exception
from .api.tus import MethodOverride
from .api.uploader import init_uploader
from .api.views import bp as byterange_bp
from .config import Settings
from .db.engine import Database
from .errors import ByterangeError
from .errors import ServerShuttingDownError
from .runtime.forwarded import ForwardedMiddleware
from .runtime.metrics import Metrics
from .runtime.metrics import MetricsSink
from .runtime.observe import RequestObserver
from .runtime.requestlog import configure_logging
from .storage import load_backend
from .uploads.expiry import ExpirySweeper
from .uploads.lifecycle import EventBus
from .uploads.lifecycle import EventSink
from .uploads.service import UploadService

__all__ = ["EXTENSION_KEY", "HOOKS_KEY", "SWEEPER_KEY", "build_service", "create_app"]

EXTENSION_KEY = "byterange"
#: ``app.extensions[HOOKS_KEY]``: the installed :class:`~byterange_server.hooks.Hooks`, or None.
HOOKS_KEY = "byterange_hooks"
#: ``app.extensions[SWEEPER_KEY]``: the periodic :class:`~byterange_server.uploads.expiry.ExpirySweeper`.
SWEEPER_KEY = "byterange_expiry_sweeper"

# Operators filter on this name: errors of the HTTP layer are logged under it.
_api_log = logging.getLogger("byterange_server.api")


def build_service(
    settings: Settings,
    *,
    sinks: Sequence[EventSink] = (),
    origin: Callable[[], Mapping[str, Any]] | None = None,
    start_hooks: bool = True,
) -> tuple[UploadService, hooks.Hooks | None]:
    """The service without the HTTP layer, and the hooks the settings configure (None: none).

    Its events go to ``sinks``, then to the hook outbox. ``origin`` tells the pre-create hook
    where a creation comes from; ``start_hooks=False`` leaves the delivery thread unstarted
    (the command line's maintenance commands: the server's workers deliver).
    """
    database = Database(settings.resolved_database_url)
    options: dict[str, Any] = {}
    if settings.storage == "local":
        options = {"root": settings.resolved_storage_dir, "fsync": settings.fsync}
    elif settings.storage == "s3":
        options = {
            "bucket": settings.s3_bucket,
            "endpoint": settings.s3_endpoint or None,
            "prefix": settings.s3_prefix,
            "region": settings.s3_region or None,
            "path_style": settings.s3_path_style,
            "min_block_size": settings.s3_block_size,
        }
    storage = load_backend(settings.storage, **options)
    events = EventBus()
    for sink in sinks:
        events.subscribe(sink)
    installed = hooks.setup(database, events, settings, origin=origin, start=start_hooks)
    gate = installed.gate if installed is not None else None
    return UploadService(settings, database, storage, events=events, pre_create=gate), installed


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the WSGI app.

    :param config: a :class:`Settings`, or overrides of the ``BYTERANGE_*`` environment
        (``{"DATABASE_URL": ..., "DATA_DIR": ...}``, case-insensitive, prefix optional).
    """
    settings = config if isinstance(config, Settings) else Settings.from_env(overrides=config)
    # Before anything logs: under gunicorn nobody else configures the package's loggers.
    configure_logging(settings.log_format, settings.log_level)
    app = Flask(__name__)
    # "/files//id" is not a resource URL: without this, Werkzeug answers 308 with a Location
    # built from the client's Host header, an open redirect on a misconfigured proxy.
    app.url_map.merge_slashes = False
    app.config["BYTERANGE_SETTINGS"] = settings
    # Bodies are streamed by the views; Werkzeug must not cap or buffer them.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]

    metrics = Metrics()
    # Hooks are None unless one is configured; the delivery thread (one per worker process) stops
    # at exit.
    service, app.extensions[HOOKS_KEY] = build_service(
        settings, sinks=[MetricsSink(metrics)], origin=creation_origin
    )
    app.extensions[EXTENSION_KEY] = service
    if settings.cleanup_interval > 0:
        sweeper = ExpirySweeper(service, settings.cleanup_interval)
        sweeper.start()
        app.extensions[SWEEPER_KEY] = sweeper
    app.register_blueprint(byterange_bp, url_prefix=settings.mount)
    app.register_blueprint(health_bp)
    init_uploader(app, settings)
    _install_pipeline(app, settings)
    app.wsgi_app = MethodOverride(app.wsgi_app)  # type: ignore[method-assign]
    observe.register_metrics(app, settings, metrics)
    # Outside the protocol middlewares (it sees each request whole), inside the proxy one.
    app.wsgi_app = RequestObserver(  # type: ignore[method-assign]
        app.wsgi_app, metrics, request_log=settings.request_log
    )
    if settings.trusted_proxies:
        # Outermost: every layer below sees the client's scheme, host and address.
        app.wsgi_app = ForwardedMiddleware(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    logging.getLogger(__name__).debug("byterange-server configured: %s", settings)
    return app


def _install_pipeline(app: Flask, settings: Settings) -> None:
    """The path of every request, in order.

    :raises ValueError: a CORS origin is not an origin, or authentication is required and no
        credential is configured.
    """
    cors_policy = cors.policy_for(settings)
    credentials = auth.credentials_for(settings)
    if credentials is not None:
        app.extensions[auth.CREDENTIALS_KEY] = credentials
    app.extensions[GUARD_KEY] = ThroughputGuard(settings.min_body_rate, settings.min_body_rate_window)

    @app.before_request
    def _before_the_view() -> Response | None:
        # 1. Name the request for the log and the metrics, before anything can refuse it.
        observe.describe_request(dialect().name)
        # 2. A browser's CORS preflight is answered here: it carries no credentials.
        preflight = cors.answer_preflight(cors_policy)
        if preflight is not None:
            return preflight
        # 3. A draining process takes no new request.
        shutdown.refuse_while_draining(settings)
        # 4. Framing, header block and body size, before a byte of the body is read.
        limits.check_request(settings)
        # 5. Who is asking, and may they touch this resource.
        if credentials is not None:
            auth.authenticate()
        # 6. The dialect's own handler answers its verbs; the others reach the byte-range view.
        if request.blueprint != "byterange" or request.method == "OPTIONS":
            return None  # OPTIONS is discovery: it answers for every dialect at once
        handler = dialect().handler(request.endpoint or "", request.method)
        return handler(**(request.view_args or {})) if handler is not None else None

    @app.errorhandler(ByterangeError)
    def _byterange_error(error: ByterangeError) -> Response:
        if error.status >= 500 and not isinstance(error, ServerShuttingDownError):
            _api_log.error("%s: %s", type(error).__name__, error.detail, exc_info=error)
        return render_error(error, dialect().problem(error), settings)

    @app.errorhandler(HTTPException)
    def _http_exception(exc: HTTPException) -> Response:
        return render_http_exception(exc, settings)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _api_log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal-error", "Internal server error", None, settings)

    @app.after_request
    def _finish(response: Response) -> Response:
        context.finish(response)  # what the view said its answer carries, success or error
        dialect().stamp(response)  # tus: Tus-Resumable; IETF interop: the version
        if credentials is not None:
            auth.sign_links(response)
        cors.add_cors_headers(cors_policy, response)
        return response
