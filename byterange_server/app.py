"""The application factory: settings, database, storage and the HTTP layer wired together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from flask import Flask

from . import hooks
from .config import Settings
from .db.engine import Database
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
            "max_resource_size": settings.max_resource_size,
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

    from .api import init_app as init_api
    from .api.observe import init_app as init_observe
    from .api.origin import creation_origin
    from .api.uploader import init_uploader

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
    init_api(app, settings)
    init_observe(app, settings, metrics)
    init_uploader(app, settings)
    # Outside the protocol middlewares (it sees each request whole), inside the proxy one.
    app.wsgi_app = RequestObserver(  # type: ignore[method-assign]
        app.wsgi_app, metrics, request_log=settings.request_log
    )
    if settings.trusted_proxies:
        # Outermost: every layer below sees the client's scheme, host and address.
        app.wsgi_app = ForwardedMiddleware(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    logging.getLogger(__name__).debug("byterange-server configured: %s", settings)
    return app
