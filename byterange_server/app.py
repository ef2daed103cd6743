"""The application factory: settings, database, storage and the HTTP layer wired together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import Settings
from .db.engine import Database
from .runtime.forwarded import ForwardedMiddleware
from .runtime.metrics import Metrics
from .runtime.metrics import MetricsSink
from .runtime.observe import RequestObserver
from .runtime.requestlog import configure_logging
from .storage import load_backend
from .uploads.expiry import ExpirySweeper
from .uploads.service import UploadService

__all__ = ["EXTENSION_KEY", "HOOKS_KEY", "SWEEPER_KEY", "build_service", "create_app"]

EXTENSION_KEY = "byterange"
#: ``app.extensions[HOOKS_KEY]``: the installed :class:`~byterange_server.hooks.Hooks`, or None.
HOOKS_KEY = "byterange_hooks"
#: ``app.extensions[SWEEPER_KEY]``: the periodic :class:`~byterange_server.uploads.expiry.ExpirySweeper`.
SWEEPER_KEY = "byterange_expiry_sweeper"


def build_service(settings: Settings) -> UploadService:
    """The service without the HTTP layer (the command line's maintenance commands use it)."""
    database = Database(settings.resolved_database_url)
    options: dict[str, Any] = {}
    if settings.storage == "local":
        options = {"root": settings.resolved_storage_dir, "fsync": settings.fsync}
    storage = load_backend(settings.storage, **options)
    return UploadService(settings, database, storage)


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

    service = build_service(settings)
    app.extensions[EXTENSION_KEY] = service
    metrics = Metrics()
    service.events.subscribe(MetricsSink(metrics))

    from . import hooks
    from .api import init_app as init_api
    from .api.observe import init_app as init_observe
    from .api.origin import creation_origin

    # None unless a hook is configured; the delivery thread (one per worker process) stops at exit.
    app.extensions[HOOKS_KEY] = hooks.setup(service, settings, origin=creation_origin)
    if settings.cleanup_interval > 0:
        sweeper = ExpirySweeper(service, settings.cleanup_interval)
        sweeper.start()
        app.extensions[SWEEPER_KEY] = sweeper
    init_api(app, settings)
    init_observe(app, settings, metrics)
    # Outside the protocol middlewares (it sees each request whole), inside the proxy one.
    app.wsgi_app = RequestObserver(  # type: ignore[method-assign]
        app.wsgi_app, metrics, request_log=settings.request_log
    )
    if settings.trusted_proxies:
        # Outermost: every layer below sees the client's scheme, host and address.
        app.wsgi_app = ForwardedMiddleware(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    logging.getLogger(__name__).debug("byterange-server configured: %s", settings)
    return app
