"""Signed upload URLs (sans-IO): an application backend mints them, the server checks them.

Like an S3 presigned URL, a signed URL lets a browser or a phone that holds no credentials do
exactly what the backend allowed -- these methods, on this path, until this moment, up to this
size -- and nothing else. The backend and the server share a secret per key id; the server keeps
several at once so keys can be rotated.

Wire form: the URL's query carries

======================  ======================================================================
``br-key``              key id (which shared secret signed it)
``br-methods``          allowed methods, upper case, sorted, joined with ``.`` (``PATCH.POST``)
``br-expires``          expiry, Unix seconds (UTC)
``br-max-size``         largest resource length the holder may declare or write, in bytes
``br-nonce``            128 random bits, base64url (no padding, 22 characters), new per grant
``br-sig``              base64url (no padding) of HMAC-SHA256 over the canonical string
======================  ======================================================================

The canonical string binds all of them to the URL's **path** (not host or scheme, which a proxy
may rewrite)::

    byterange-sig-v2 LF key LF methods LF path LF expires LF max-size LF nonce

so altering any of them, or replaying the query on another path (another resource), breaks the
signature (401); a genuine signature past its expiry or for another method is refused with 403.
Signatures are compared with :func:`hmac.compare_digest` (constant time). Nothing here does I/O
or reads the clock: callers pass ``now``.

Every grant is unique: :func:`signed_url` (and so ``byterange-server sign``) draws a fresh nonce
on every call, so two URLs minted in the same second with the same arguments still differ. That
matters because a signed creation URL creates the resource whose id is derived from its
signature: without the nonce, two holders of identical URLs would share one resource. Version 1
URLs (no ``br-nonce``) are refused with 401.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from collections.abc import Mapping
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from ..errors import InvalidCredentialsError
from ..errors import SignatureScopeError

__all__ = ["PARAMS", "Grant", "new_nonce", "sign", "signed_url", "verify"]

VERSION = "byterange-sig-v2"
#: The query parameters a signed URL adds, in the order they are written.
PARAMS = ("br-key", "br-methods", "br-expires", "br-max-size", "br-nonce", "br-sig")
_METHOD_RE = re.compile(r"[A-Z]+", re.ASCII)
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
# Canonical numbers only (no leading zeros), like str(int): one grant, one spelling.
_DIGITS_RE = re.compile(r"0|[1-9][0-9]{0,14}", re.ASCII)
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)  # 32 bytes, base64url, no padding
# 16 bytes, base64url, no padding. Signed as text, never decoded: another spelling of the same
# bits is another grant, whose signature does not match.
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)


def new_nonce() -> str:
    """128 random bits for one grant, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


@dataclasses.dataclass(frozen=True)
class Grant:
    """What a signed URL allows: ``methods`` on ``path`` until ``expires``, up to ``max_size``.

    ``nonce`` makes the grant unique; a new one is drawn unless given (:func:`verify` gives the
    one it read)."""

    key_id: str
    methods: frozenset[str]
    path: str
    expires: int
    max_size: int
    nonce: str = dataclasses.field(default_factory=new_nonce)

    def __post_init__(self) -> None:
        if not _KEY_RE.fullmatch(self.key_id):
            raise ValueError(f"key id must be 1-64 of [A-Za-z0-9_.-]: {self.key_id!r}")
        if not self.methods or not all(_METHOD_RE.fullmatch(m) for m in self.methods):
            raise ValueError(f"methods must be upper-case method names: {sorted(self.methods)}")
        if not self.path.startswith("/"):
            raise ValueError(f"path must be absolute: {self.path!r}")
        if not 0 <= self.expires < 10**15 or not 0 <= self.max_size < 10**15:
            raise ValueError("expires and max_size must be non-negative numbers of at most 15 digits")
        if not _NONCE_RE.fullmatch(self.nonce):
            raise ValueError(f"a nonce is 22 characters of base64url: {self.nonce!r}")

    @property
    def methods_text(self) -> str:
        return ".".join(sorted(self.methods))

    def canonical(self) -> bytes:
        fields = (VERSION, self.key_id, self.methods_text, self.path)
        fields += (str(self.expires), str(self.max_size), self.nonce)
        return "\n".join(fields).encode("utf-8")

    def allows(self, method: str) -> bool:
        return method in self.methods


def _signature(grant: Grant, secret: bytes) -> str:
    mac = hmac.new(secret, grant.canonical(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def sign(grant: Grant, secret: bytes) -> dict[str, str]:
    """The query parameters that carry ``grant``, signed with ``secret``."""
    if len(secret) < 16:
        raise ValueError("a signing secret needs at least 16 bytes (128 bits)")
    return {
        "br-key": grant.key_id,
        "br-methods": grant.methods_text,
        "br-expires": str(grant.expires),
        "br-max-size": str(grant.max_size),
        "br-nonce": grant.nonce,
        "br-sig": _signature(grant, secret),
    }


def signed_url(
    url: str,
    *,
    key_id: str,
    secret: bytes,
    methods: Iterable[str],
    expires: int,
    max_size: int,
    nonce: str | None = None,
) -> str:
    """``url`` with a signature for ``methods`` on its path appended to its query.

    Each call draws a new nonce, so each URL is a grant of its own; ``nonce`` is for a caller
    that must mint the same URL again (the server's signed ``Location``, see api/auth.py).

    :raises ValueError: an invalid grant, a URL that already has ``br-*`` parameters, or a
        secret under 16 bytes.
    """
    parts = urlsplit(url)
    if any(name in parts.query for name in PARAMS):
        raise ValueError("the URL is already signed")
    methods = frozenset(m.upper() for m in methods)
    grant = Grant(key_id, methods, parts.path or "/", expires, max_size, nonce or new_nonce())
    query = "&".join(filter(None, (parts.query, urlencode(sign(grant, secret)))))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def verify(
    query: Mapping[str, str],
    *,
    method: str,
    path: str,
    keys: Mapping[str, bytes],
    now: float,
) -> Grant:
    """Check the signature in ``query`` for a ``method`` request on ``path`` at time ``now``.

    :returns: the grant, for the caller to enforce ``max_size`` and to bind what it creates.
    :raises InvalidCredentialsError: (401) parameters missing or malformed, an unknown key id,
        or a signature that does not match (wrong key, or anything altered).
    :raises SignatureScopeError: (403) a valid signature used past its expiry or for another
        method. (On another path the signature does not match: 401.)
    """
    values = {}
    for name in PARAMS:
        value = query.get(name)
        if value is None:
            raise InvalidCredentialsError(f"The signed URL has no {name} parameter.")
        values[name] = value
    if not (
        _KEY_RE.fullmatch(values["br-key"])
        and _DIGITS_RE.fullmatch(values["br-expires"])
        and _DIGITS_RE.fullmatch(values["br-max-size"])
        and _SIG_RE.fullmatch(values["br-sig"])
        and _NONCE_RE.fullmatch(values["br-nonce"])
        and all(_METHOD_RE.fullmatch(m) for m in values["br-methods"].split("."))
    ):
        raise InvalidCredentialsError("The signed URL's parameters are malformed.")
    secret = keys.get(values["br-key"])
    if secret is None:
        raise InvalidCredentialsError("The signed URL names an unknown key.")
    methods = values["br-methods"].split(".")
    claimed = Grant(
        values["br-key"],
        frozenset(methods),
        path,
        int(values["br-expires"]),
        int(values["br-max-size"]),
        values["br-nonce"],
    )
    # Compared as text, not decoded: base64 decoding ignores the 2 spare bits of the 43rd
    # character, which would give every signature four spellings. The methods must be written
    # canonically too, or one grant would have many signatures.
    expected = _signature(claimed, secret)
    if not hmac.compare_digest(values["br-sig"], expected) or claimed.methods_text != values["br-methods"]:
        # A signature replayed on another path lands here too: the path is signed.
        raise InvalidCredentialsError("The signature does not match this URL.")
    if now >= claimed.expires:
        raise SignatureScopeError("The signed URL has expired.", extra={"expires": claimed.expires})
    if not claimed.allows(method):
        raise SignatureScopeError(
            f"The signed URL does not allow {method}.", extra={"methods": sorted(claimed.methods)}
        )
    return claimed
