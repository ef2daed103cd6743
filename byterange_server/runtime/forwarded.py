"""Behind a reverse proxy: the client's scheme, host and address from ``Forwarded`` (opt-in).

The server builds absolute URLs (``Location`` of a new upload, links), so behind nginx or a
load balancer it must know the scheme and host the *client* used, which only the proxy can say.
Those headers are trusted only when configured: ``BYTERANGE_TRUSTED_PROXIES=N`` means N proxies
of ours stand in front, each appending one hop. The values the outermost of them recorded are
used; anything a client put in front of them is ignored, so a client cannot forge its own.

Both forms are read: RFC 7239 ``Forwarded: for=…;proto=https;host=…`` (preferred when present)
and the de-facto ``X-Forwarded-For/-Proto/-Host/-Port/-Prefix`` (through Werkzeug's
``ProxyFix``). A forwarded scheme other than http/https, or a host that is not ``host[:port]``,
is ignored rather than reflected into a ``Location``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from ..errors import MalformedHeaderError

__all__ = ["ForwardedMiddleware", "parse_forwarded"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
_PAIR_RE = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})[ \t]*", re.ASCII)
# uri-host [ ":" port ]: a reg-name or IPv4 (no userinfo, path or spaces), or a bracketed IPv6.
_HOST_RE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)
# X-Forwarded-Prefix: an absolute path of RFC 3986 pchars. Anything else (no leading "/", "?",
# "#", non-ASCII) would turn the prefix into the host or query of every URL we build.
_PREFIX_RE = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)*", re.ASCII)


def parse_forwarded(values: Iterable[str]) -> list[dict[str, str]]:
    """The ``forwarded-element``s of one or more ``Forwarded`` field lines, in order.

    ``for=192.0.2.60;proto=https;host="up.example", for=10.0.0.1`` →
    ``[{"for": "192.0.2.60", "proto": "https", "host": "up.example"}, {"for": "10.0.0.1"}]``.
    Parameter names are lower-cased, quoted values unquoted.

    :raises MalformedHeaderError: anything that is not ``#forwarded-element`` (RFC 7239 §4).
    """
    elements: list[dict[str, str]] = []
    for value in values:
        pos = 0
        current: dict[str, str] = {}
        while pos < len(value):
            match = _PAIR_RE.match(value, pos)
            if match is None:
                raise MalformedHeaderError("Forwarded is not a list of name=value pairs")
            name, raw = match[1].lower(), match[2]
            if name in current:
                raise MalformedHeaderError("Forwarded repeats a parameter within one element")
            current[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
            pos = match.end()
            if pos == len(value):
                break
            separator = value[pos]
            pos += 1
            if separator == ",":
                elements.append(current)
                current = {}
            elif separator != ";":
                raise MalformedHeaderError("Forwarded pairs are separated by ';' and elements by ','")
        elements.append(current)
    return [element for element in elements if element]


class ForwardedMiddleware:
    """WSGI middleware trusting the last ``hops`` proxies' ``Forwarded`` / ``X-Forwarded-*``."""

    def __init__(self, app: Any, hops: int) -> None:
        if hops < 1:
            raise ValueError("ForwardedMiddleware needs at least one trusted proxy")
        self.app = app
        self.hops = hops
        self._x_forwarded = ProxyFix(
            self._checked, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        raw = environ.get("HTTP_FORWARDED")
        if raw is None:
            return self._x_forwarded(environ, start_response)
        try:
            elements = parse_forwarded([raw])
        except MalformedHeaderError:
            elements = []  # a broken header from somewhere: trust nothing of it
        if len(elements) >= self.hops:
            self._apply(environ, elements[-self.hops])
        return self.app(environ, start_response)

    def _checked(self, environ: dict[str, Any], start_response: Any) -> Any:
        """After ProxyFix: the same rules as for ``Forwarded`` -- an unusable scheme, host or
        prefix is ignored (the original value is put back), never reflected into a URL."""
        original = environ.get("werkzeug.proxy_fix.orig", {})
        if environ.get("wsgi.url_scheme") not in ("http", "https"):
            environ["wsgi.url_scheme"] = original.get("wsgi.url_scheme", "http")
        if not _HOST_RE.fullmatch(environ.get("HTTP_HOST") or "x"):
            for key in ("HTTP_HOST", "SERVER_NAME", "SERVER_PORT"):
                if original.get(key) is not None:
                    environ[key] = original[key]
        if not _PREFIX_RE.fullmatch(environ.get("SCRIPT_NAME", "")):
            environ["SCRIPT_NAME"] = original.get("SCRIPT_NAME") or ""
        return self.app(environ, start_response)

    @staticmethod
    def _apply(environ: dict[str, Any], hop: dict[str, str]) -> None:
        proto = hop.get("proto", "").lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
        host = hop.get("host")
        if host is not None and _HOST_RE.fullmatch(host):
            environ["HTTP_HOST"] = host
        address = _node_address(hop.get("for"))
        if address is not None:
            environ["REMOTE_ADDR"] = address


def _node_address(node: str | None) -> str | None:
    """The IP of a ``node`` (RFC 7239 §6): ``[2001:db8::1]:4711`` → ``2001:db8::1``.

    ``unknown`` and obfuscated identifiers (``_hidden``) give ``None``.
    """
    if node is None or node.lower() == "unknown" or node.startswith("_"):
        return None
    if node.startswith("["):
        end = node.find("]")
        return node[1:end] if end > 1 else None
    return node.split(":", 1)[0] or None
