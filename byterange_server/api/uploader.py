"""The browser uploader and the read-only status page, served from package data.

``<uploader_path>`` is the uploader, ``<uploader_path>/status?url=<resource URL>`` the live extent
map of one resource, and ``<uploader_path>/<name>.js|.css`` their plain ES modules and style
sheet (``byterange_server/static/uploader/``; no build step). The pages hold no data: every state
they show comes from the resource's own endpoints (``HEAD``, the committed-ranges document),
fetched by the browser with the caller's credentials, so authentication and ownership apply
as for any client. The status page is a page of its own rather than an ``Accept: text/html``
answer of ``GET /files/<id>``: that URL serves the resource's bytes, which may themselves be
HTML, and a browser asking for them must get them.

Served only when enabled (:attr:`Settings.uploader_enabled`: on by default only without
authentication). Every page is sent with a strict Content-Security-Policy -- scripts and
styles from this origin only, no inline script -- and no referrer, since page URLs may hold a
signed URL. The modules are sent with ``Access-Control-Allow-Origin: *``: they are public code,
and other origins' pages import ``byterange.js`` (module scripts are fetched in CORS mode).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib import resources

from flask import Blueprint
from flask import Flask
from flask import Response
from werkzeug.exceptions import NotFound

from ..config import Settings

__all__ = ["CSP", "STATIC", "init_uploader"]

#: The directory of the pages and modules, inside the package.
STATIC = resources.files("byterange_server") / "static" / "uploader"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_PAGES = {"": "index.html", "/status": "status.html"}
_CONFIG_MARK = "<!--byterange-config-->"
_BASE_MARK = "__BASE__"


def init_uploader(app: Flask, settings: Settings) -> None:
    """Register the pages at ``settings.uploader_path`` when the uploader is enabled.

    :raises ValueError: the path is inside the mount or the metrics path (it would hide them).
    """
    if not settings.uploader_enabled:
        return
    # "/" puts the uploader at the root ("" as a prefix): a host that is there for uploads.
    path = "/" + settings.uploader_path.strip("/") if settings.uploader_path.strip("/") else ""
    for taken in (settings.mount, settings.metrics_path):
        inside = f"{path}/".startswith(f"{taken}/") or (path and taken.startswith(f"{path}/"))
        if taken and (path == taken or inside):
            raise ValueError(f"BYTERANGE_UPLOADER_PATH={path or '/'} overlaps {taken}")
    bp = Blueprint("uploader", __name__)
    for suffix, name in _PAGES.items():
        bp.add_url_rule(
            suffix or "/", f"page_{name.split('.')[0]}", _page_view(name, settings, path),
            methods=["GET"], strict_slashes=False,
        )
    bp.add_url_rule("/<name>", "asset", _asset, methods=["GET"])
    app.register_blueprint(bp, url_prefix=path or None)


def _page_view(name: str, settings: Settings, path: str) -> Callable[[], Response]:
    # What a page needs to know of the server goes into <meta> elements: no inline script.
    values = {
        "byterange-endpoint": settings.mount,
        "byterange-auth": settings.auth,
        "byterange-uploader": path,
    }
    meta = "".join(f'<meta name="{key}" content="{html.escape(value)}">' for key, value in values.items())
    text = (STATIC / name).read_text(encoding="utf-8")
    body = text.replace(_CONFIG_MARK, meta).replace(_BASE_MARK, html.escape(path))

    def view() -> Response:
        return _send(body, "text/html; charset=utf-8", page=True)

    return view


def _asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    item = STATIC / name
    # Only the modules and the style sheet, by their exact names: never a path, never a page.
    if suffix not in _TYPES or "/" in name or name.startswith(".") or not item.is_file():
        raise NotFound()
    response = _send(item.read_bytes(), _TYPES[suffix], page=False)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _send(body: str | bytes, content_type: str, *, page: bool) -> Response:
    response = Response(body, content_type=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Revalidate each time: the pages change with the package, and carry no per-user data.
    response.headers["Cache-Control"] = "no-cache"
    if page:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
    return response
