"""Where a creation comes from, for the pre-create hook (hooks/precreate.py): the protocol
dialect of the current request and the client's address. The service knows neither."""

from __future__ import annotations

from typing import Any

from flask import has_request_context
from flask import request

from .dialect import dialect


def creation_origin() -> dict[str, Any]:
    if not has_request_context():
        return {}
    # remote_addr is the client's once ForwardedMiddleware has applied trusted proxies.
    return {"protocol": dialect().name, "client_address": request.remote_addr}
