"""``GET /healthz``: the process's view of its database and storage (see ``health.py``).

The body follows the health-check response format draft (``application/health+json``):
``status`` is ``pass`` or ``fail``, and each component lists its probe time. It is served at the
application root, outside the upload mount, and never cached.

A process that is shutting down (``shutdown.py``) answers 503 with ``"output": "draining"``
whatever its checks say, so a load balancer stops sending it requests.
"""

from __future__ import annotations

import json

from flask import Blueprint
from flask import Response

from ..health import run_checks
from ..runtime.shutdown import DRAIN
from .views import service

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
