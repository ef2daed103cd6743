"""CORS through Flask: preflights answered before routing, headers added to every response.

The policy itself (which origin earns which headers) is sans-IO, in ``protocol/cors.py``;
here it is built from the settings and applied.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import g
from flask import request

from ..config import Settings
from ..protocol.cors import DEFAULT_ALLOW_HEADERS
from ..protocol.cors import DEFAULT_EXPOSE_HEADERS
from ..protocol.cors import DEFAULT_METHODS
from ..protocol.cors import CorsPolicy
from ..protocol.cors import merge_vary

__all__ = ["init_cors", "policy_for"]


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


def init_cors(app: Flask, settings: Settings) -> None:
    """Answer browser preflights before routing; add CORS headers to every other response.

    :raises ValueError: an entry of ``cors_origins`` is not an origin.
    """
    policy = policy_for(settings)
    if not policy.enabled:
        return

    @app.before_request
    def _cors_preflight() -> Response | None:
        origin = request.headers.get("Origin")
        asked_method = request.headers.get("Access-Control-Request-Method")
        if not policy.is_preflight(request.method, origin, asked_method):
            return None  # an ordinary request, or a protocol's own OPTIONS discovery
        asked_headers = request.headers.get("Access-Control-Request-Headers")
        granted = policy.preflight(origin, asked_method, asked_headers)
        g.cors_preflight = True
        response = Response(status=204)
        del response.headers["Content-Type"]
        # A refused preflight gets no Access-Control-* headers: the browser then blocks the request.
        response.headers.update(granted or {"Vary": "Origin"})
        return response

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        if g.get("cors_preflight"):
            return response  # a preflight answer, complete already
        for name, value in policy.actual(request.headers.get("Origin")).items():
            if name == "Vary":
                response.headers["Vary"] = merge_vary(response.headers.get("Vary"), [value])
            else:
                response.headers[name] = value
        return response
