"""CORS through Flask: preflights answered before routing, headers added to every other response.

The policy itself (which origin earns which headers) is sans-IO, in ``protocol/cors.py``;
here it is built from the settings and applied.
"""

from __future__ import annotations

from flask import Response
from flask import g
from flask import request

from ..config import Settings
from ..protocol.cors import DEFAULT_ALLOW_HEADERS
from ..protocol.cors import DEFAULT_EXPOSE_HEADERS
from ..protocol.cors import DEFAULT_METHODS
from ..protocol.cors import CorsPolicy
from ..protocol.cors import merge_vary

__all__ = ["add_cors_headers", "answer_preflight", "policy_for"]


def policy_for(settings: Settings) -> CorsPolicy:
    """:raises ValueError: an entry of ``cors_origins`` is not an origin."""

    def listed(value: str) -> tuple[str, ...]:
        return tuple(item for item in value.replace(",", " ").split() if item)

    return CorsPolicy.from_setting(
        settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age,
        methods=tuple(m.upper() for m in listed(settings.cors_methods)) or DEFAULT_METHODS,
        allow_headers=DEFAULT_ALLOW_HEADERS + listed(settings.cors_allow_headers),
        expose_headers=DEFAULT_EXPOSE_HEADERS + listed(settings.cors_expose_headers),
    )


def answer_preflight(policy: CorsPolicy) -> Response | None:
    """A browser preflight's answer, before routing (None: not a preflight, or CORS is off)."""
    origin = request.headers.get("Origin")
    asked_method = request.headers.get("Access-Control-Request-Method")
    if not policy.enabled or not policy.is_preflight(request.method, origin, asked_method):
        return None  # an ordinary request, or a protocol's own OPTIONS discovery
    asked_headers = request.headers.get("Access-Control-Request-Headers")
    granted = policy.preflight(origin, asked_method, asked_headers)
    g.cors_preflight = True
    response = Response(status=204)
    del response.headers["Content-Type"]
    # A refused preflight gets no Access-Control-* headers: the browser then blocks the request.
    response.headers.update(granted or {"Vary": "Origin"})
    return response


def add_cors_headers(policy: CorsPolicy, response: Response) -> None:
    """Every other response: the CORS headers the request's ``Origin`` earns."""
    if not policy.enabled or g.get("cors_preflight"):
        return  # CORS is off, or a preflight answer, complete already
    for name, value in policy.actual(request.headers.get("Origin")).items():
        if name == "Vary":
            response.headers["Vary"] = merge_vary(response.headers.get("Vary"), [value])
        else:
            response.headers[name] = value
