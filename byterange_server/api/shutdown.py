"""The HTTP side of graceful shutdown (the process state and the cutting are in ``shutdown.py``).

- While the process drains, every new request (one that reaches a stopping worker on a kept-alive
  connection) is refused with ``503 shutting-down``, ``Retry-After`` and ``Connection: close``
  (gunicorn drops that field, but closes a stopping worker's connections after the response
  anyway; other servers pass it on).
  ``/healthz`` is not refused: it answers 503 in its own format (``api/health.py``).
- ``body.request_body`` registers a write so the shutdown can cut its body; the interruption it
  then causes is answered as ``503 shutting-down`` instead of ``400 truncated-body``, after the write
  session committed what its rule allows (the received prefix under ``persist``, nothing under
  ``atomic``). The renderer adds the resource's state to it, so a client resumes at once.

Every dialect gets the 503 through the one renderer: tus clients (tus-js-client retries any
status but 4xx other than 409/423), IETF clients (the draft: "5xx or no response → HEAD, then
resume") and our own client (5xx is transient, ``Retry-After`` a floor) all retry it.
"""

from __future__ import annotations

from flask import request

from ..config import Settings
from ..errors import ServerShuttingDownError
from ..runtime.shutdown import DRAIN


def refuse_while_draining(settings: Settings) -> None:
    """Every request but ``/healthz``, while the process drains.

    :raises ServerShuttingDownError: (503).
    """
    if DRAIN.draining and request.blueprint != "health":
        raise ServerShuttingDownError(
            "This server process is shutting down; send the request again.",
            headers=refusal_headers(settings),
        )


def refusal_headers(settings: Settings) -> dict[str, str]:
    return {"Retry-After": str(settings.shutdown_retry_after), "Connection": "close"}
