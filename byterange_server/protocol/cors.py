"""CORS for browsers (sans-IO): which response headers a request's ``Origin`` earns.

Browsers upload with ``fetch``/XHR (tus-js-client, Uppy, our own pages) from another origin than
the upload server's, so every response must say which origins may read it, and a *preflight*
(``OPTIONS`` with ``Access-Control-Request-Method``) must say which methods and request headers
the real request may use. Without ``Access-Control-Expose-Headers`` a script cannot even read
``Location`` or ``Upload-Offset``, so resumable clients break in subtle ways.

This module decides; the HTTP layer only copies the headers onto responses. The rules follow the
Fetch standard's CORS protocol:

- an origin is allowed if it is listed exactly (scheme, host and port, as the browser sends it)
  or the policy allows ``*``; ``null`` and malformed origins are never allowed;
- with credentials allowed, the origin is echoed (``*`` is not valid with credentials);
  otherwise ``*`` is sent when every origin is allowed;
- a preflight is granted only if its method and every header it asks for are allowed; header
  names compare case-insensitively, and CORS-safelisted request headers need not be listed;
- ``Vary`` names what the answer depends on, so caches keep the variants apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_ALLOW_HEADERS", "DEFAULT_EXPOSE_HEADERS", "DEFAULT_METHODS", "CorsPolicy"]

#: Methods the upload protocols use (OPTIONS itself is never preflighted).
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: Request headers of the byte-range, tus and IETF protocols, and of authentication.
DEFAULT_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "Content-Range", "Content-Offset", "Content-Digest", "Repr-Digest",
    "Want-Repr-Digest", "Content-Disposition", "Prefer", "If-Match", "If-None-Match", "If-Range", "Range",
    "Upload-Length", "Upload-Offset", "Upload-Complete", "Upload-Draft-Interop-Version", "Upload-Metadata",
    "Upload-Concat", "Upload-Checksum", "Upload-Defer-Length", "Tus-Resumable", "X-HTTP-Method-Override",
    "X-Requested-With",
)
#: Response headers a script must be able to read to resume, verify and follow an upload.
DEFAULT_EXPOSE_HEADERS = (
    "Location", "Link", "ETag", "Repr-Digest", "Content-Range", "Content-Disposition", "Retry-After",
    "Preference-Applied", "Accept-Patch", "Committed-Ranges", "Upload-Offset", "Upload-Length",
    "Upload-Complete", "Upload-Limit", "Upload-Draft-Interop-Version", "Upload-Metadata", "Upload-Expires",
    "Upload-Concat", "Upload-Defer-Length", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
    "Tus-Checksum-Algorithm", "Byterange-Limits",
)
# Fetch: CORS-safelisted request headers never need to be allowed (their values are limited,
# but a browser only omits them from Access-Control-Request-Headers when the value is safe).
_SAFELISTED = frozenset({"accept", "accept-language", "content-language"})
# serialized-origin = scheme "://" host [ ":" port ]   (RFC 6454 §6.2, as browsers send it)
_ORIGIN_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/?#,]+", re.ASCII)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)


@dataclass(frozen=True)
class CorsPolicy:
    """Which origins may use the server from a browser, and with what.

    :param origins: exact serialized origins (``https://app.example``), or ``("*",)`` for any.
        Empty: CORS is off and no request gets CORS headers.
    :param allow_credentials: let browsers send cookies / HTTP auth (the origin is then echoed).
    :param max_age: seconds a browser may cache a preflight answer.
    """

    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 600
    methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = DEFAULT_ALLOW_HEADERS
    expose_headers: tuple[str, ...] = DEFAULT_EXPOSE_HEADERS

    def __post_init__(self) -> None:
        for origin in self.origins:
            if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(f"not a serialized origin (scheme://host[:port]): {origin!r}")
        if self.max_age < 0:
            raise ValueError("max_age must not be negative")
        for name in (*self.methods, *self.allow_headers, *self.expose_headers):
            if not _TOKEN_RE.fullmatch(name):
                raise ValueError(f"not a method or header name: {name!r}")

    @classmethod
    def from_setting(cls, value: str, **options: object) -> CorsPolicy:
        """A policy from a comma- or space-separated origin list (``BYTERANGE_CORS_ORIGINS``)."""
        origins = tuple(item for item in re.split(r"[,\s]+", value.strip()) if item)
        return cls(origins=origins, **options)  # type: ignore[arg-type]

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def _allowed(self, origin: str | None) -> bool:
        if origin is None or not self.enabled or not _ORIGIN_RE.fullmatch(origin):
            return False  # includes "null" (sandboxed pages, file: URLs)
        return "*" in self.origins or origin in self.origins

    def _origin_headers(self, origin: str) -> dict[str, str]:
        if "*" in self.origins and not self.allow_credentials:
            return {"Access-Control-Allow-Origin": "*"}
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def is_preflight(self, method: str, origin: str | None, request_method: str | None) -> bool:
        """An ``OPTIONS`` a browser sends before the real request (not a protocol's OPTIONS)."""
        return method == "OPTIONS" and origin is not None and request_method is not None

    def preflight(
        self, origin: str | None, request_method: str | None, request_headers: str | None
    ) -> dict[str, str] | None:
        """Headers that grant the preflight, or ``None`` to refuse it (send no CORS headers).

        :param request_headers: the ``Access-Control-Request-Headers`` value, if any.
        """
        if not self._allowed(origin) or request_method is None:
            return None
        if request_method not in self.methods:
            return None
        asked = [name.strip().lower() for name in (request_headers or "").split(",") if name.strip()]
        allowed = {name.lower() for name in self.allow_headers} | _SAFELISTED
        if any(not _TOKEN_RE.fullmatch(name) or name not in allowed for name in asked):
            return None
        assert origin is not None
        headers = self._origin_headers(origin)
        headers.update(
            {
                "Access-Control-Allow-Methods": ", ".join(self.methods),
                "Access-Control-Allow-Headers": ", ".join(self.allow_headers),
                "Access-Control-Max-Age": str(self.max_age),
            }
        )
        vary = ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
        headers["Vary"] = ", ".join(vary)
        return headers

    def actual(self, origin: str | None) -> dict[str, str]:
        """Headers for the response to a real (non-preflight) request from ``origin``."""
        if not self._allowed(origin):
            return {"Vary": "Origin"} if self.enabled and "*" not in self.origins else {}
        assert origin is not None
        headers = self._origin_headers(origin)
        headers["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        return headers


def merge_vary(existing: str | None, added: Iterable[str]) -> str:
    """``Vary`` with ``added`` names appended once each (case-insensitively)."""
    names = [name.strip() for name in (existing or "").split(",") if name.strip()]
    seen = {name.lower() for name in names}
    for name in added:
        if name.lower() not in seen:
            names.append(name)
            seen.add(name.lower())
    return ", ".join(names)
