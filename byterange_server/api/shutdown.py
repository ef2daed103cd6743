"""The HTTP side of graceful shutdown (the process state and the cutting are in ``shutdown.py``).

- While the process drains, every new request (one that reaches a stopping worker on a kept-alive
  connection) is refused with ``503 shutting-down``, ``Retry-After`` and ``Connection: close``
  (gunicorn drops that field, but closes a stopping worker's connections after the response
  anyway; other servers pass it on).
  ``/healthz`` is not refused: it answers 503 in its own format (``api/health.py``).
- :func:`cuttable` registers a write so the shutdown can cut its body; the interruption it then
  causes is answered as ``503 shutting-down`` instead of ``400 truncated-body``, after the write
  session committed what its rule allows (the received prefix under ``persist``, nothing under
  ``atomic``). The renderer adds the resource's state to it, so a client resumes at once.

Every dialect gets the 503 through the one renderer: tus clients (tus-js-client retries any
status but 4xx other than 409/423), IETF clients (the draft: "5xx or no response → HEAD, then
resume") and our own client (5xx is transient, ``Retry-After`` a floor) all retry it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flask import Flask
from flask import current_app
from flask import request

from ..config import Settings
from ..errors import BodyTooSlowError
from ..errors import MalformedChunkError
from ..errors import RequestTooLargeError
from ..errors import ServerShuttingDownError
from ..errors import TruncatedBodyError
from ..runtime.shutdown import DRAIN
from . import interim
from .limits import GUARD_KEY
from .limits import ThroughputGuard


def init_app(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _refuse_while_draining() -> None:
        if DRAIN.draining and request.blueprint != "health":
            raise ServerShuttingDownError(
                "This server process is shutting down; send the request again.",
                headers=refusal_headers(settings),
            )


def refusal_headers(settings: Settings) -> dict[str, str]:
    return {"Retry-After": str(settings.shutdown_retry_after), "Connection": "close"}


@contextlib.contextmanager
def cuttable(reader: Any, *, atomic: bool) -> Iterator[None]:
    """Around a write reading ``reader`` (a ``CountingReader``): let the shutdown cut it.

    :param atomic: whether the write keeps nothing when interrupted (only for the message).
    """
    cutter = interim.body_cutter(request.environ, reader)
    guard: ThroughputGuard = current_app.extensions[GUARD_KEY]
    with DRAIN.tracking(cutter) as write, guard.watching(reader, cutter):
        try:
            yield
        except TruncatedBodyError as error:
            kept = (
                "as an all-or-nothing request, nothing of it was applied"
                if atomic
                else "the bytes it received are committed"
            )
            settings: Settings = current_app.extensions["byterange"].settings
            if not write.cut_by_shutdown:
                if reader.stop_reason == "too-slow":
                    raise BodyTooSlowError(
                        f"The body arrived slower than {settings.min_body_rate} bytes/s; {kept}.",
                        extra={"min-body-rate": settings.min_body_rate},
                    ) from error
                if reader.stop_reason == "malformed-chunk":
                    raise MalformedChunkError(
                        f"The chunked framing of the body is malformed ({reader.error}); {kept}.",
                        extra={"received": reader.received},
                    ) from error
                if reader.stop_reason == "too-large":
                    raise RequestTooLargeError(
                        f"The body is larger than {settings.max_request_bytes} bytes; {kept}. "
                        "Send the rest in another request.",
                        extra={"max-request-bytes": settings.max_request_bytes},
                    ) from error
                raise
            raise ServerShuttingDownError(
                f"The server is shutting down and ended this write early; {kept}. "
                "Send the rest again.",
                headers=refusal_headers(settings),
            ) from error
