"""``GET /healthz``: can this process reach its database and use its storage right now?

A load balancer or orchestrator asks it on every instance; an instance whose database or storage
fails answers 503 and is taken out of rotation instead of failing uploads. Each check is a real
round trip: ``SELECT 1`` on the database, and create-write-sync-delete of a probe object in the
storage (a read-only mount or a full disk fails it; file permission bits alone would not tell).

The body follows the health-check response format draft (``application/health+json``):
``status`` is ``pass`` or ``fail``, and each component lists its probe time. It is served at the
application root, outside the upload mount, and never cached.

A process that is shutting down (``runtime/shutdown.py``) answers 503 with ``"output":
"draining"`` whatever its checks say, so a load balancer stops sending it requests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint
from flask import Response

from ..errors import ByterangeError
from ..runtime.shutdown import DRAIN
from ..uploads.service import UploadService
from .context import service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One component's result: ``ok``, how long the probe took, and a reason when it failed."""

    name: str
    ok: bool
    milliseconds: float
    output: str | None = None


def _timed(name: str, probe: Callable[[], None]) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except (ByterangeError, OSError) as exc:
        # The reason is logged; the response says only which component failed (no paths or SQL).
        log.warning("health check %s failed: %r", name, exc)
        return Check(name, False, (time.perf_counter() - started) * 1000, f"{name} unavailable")
    return Check(name, True, (time.perf_counter() - started) * 1000)


def run_checks(service: UploadService) -> list[Check]:
    """Check the database and the storage of ``service``; both run even if the first fails."""
    return [_timed("database", service.db.ping), _timed("storage", service.storage.check)]


health_bp = Blueprint("health", __name__)

HEALTH_JSON = "application/health+json"


@health_bp.route("/healthz", methods=["GET", "HEAD"], provide_automatic_options=False)
def healthz() -> Response:
    checks = run_checks(service())
    draining = DRAIN.draining
    healthy = all(check.ok for check in checks) and not draining
    body = {
        "status": "pass" if healthy else "fail",
        **({"output": "draining"} if draining else {}),
        "checks": {
            check.name: [
                {
                    "status": "pass" if check.ok else "fail",
                    "observedValue": round(check.milliseconds, 3),
                    "observedUnit": "ms",
                    **({"output": check.output} if check.output else {}),
                }
            ]
            for check in checks
        },
    }
    response = Response(json.dumps(body) + "\n", status=200 if healthy else 503, content_type=HEALTH_JSON)
    response.headers["Cache-Control"] = "no-store"
    if not healthy:
        response.headers["Retry-After"] = "5"
    return response
