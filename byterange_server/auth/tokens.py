"""Who is asking (sans-IO): bearer tokens and signed URLs turned into a :class:`Principal`.

Two credential forms, configured in settings (see docs/security.md):

- **Bearer tokens** (``Authorization: Bearer <secret>``, RFC 6750) for backends and trusted
  clients. Each token has a name; a resource belongs to the token that created it
  (``token:<name>``), and only that token -- or an *admin* token -- may touch it again.
- **Signed URLs** (signing.py) for browsers and phones that hold no secret. The application
  backend mints one with a shared key; it grants some methods on one path until an expiry, up
  to a size. A signed ``POST`` on the collection creates **exactly one** resource: its id is
  derived from the signature, so replaying the URL finds the same resource instead of creating
  another. The server answers with a ``Location`` signed for that resource only.

  A signed principal is the grant's, not the key's: ``signed:<key id>:<resource id>``, where the
  resource is the one its path names (or, on the collection, the one it creates). So what one
  grant created belongs to it alone, and a holder of another URL signed with the same key owns
  none of it (tus concatenation, quotas and write limits all go by this id).

Secrets are never compared with ``==``: tokens are hashed and every configured hash is checked
with :func:`hmac.compare_digest`, so neither the match nor its position leaks through timing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from ..config import Settings
from ..errors import AmbiguousCredentialsError
from ..errors import InvalidCredentialsError
from ..errors import MissingCredentialsError
from ..errors import SignatureScopeError
from .signing import Grant
from .signing import verify

__all__ = ["Credentials", "Principal", "parse_entries"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
# RFC 6750 b64token, at least 16 characters (a secret shorter than that is guessable).
_SECRET_RE = re.compile(r"[A-Za-z0-9\-._~+/]{16,512}=*", re.ASCII)
_BEARER_RE = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.ASCII | re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``id`` is what ``resources.owner`` records."""

    id: str
    #: May read, write and delete every resource (an operator's or a backend's token).
    admin: bool = False
    #: The signed URL's grant, for signed principals.
    grant: Grant | None = None
    #: The signature itself (signed principals): the seed of the one resource it may create.
    signature: str | None = field(default=None, repr=False)

    def may_access(self, owner: str | None) -> bool:
        """Whether this principal may act on a resource owned by ``owner`` (token principals;
        a signed principal's scope is the path its signature covers)."""
        return self.admin or (owner is not None and hmac.compare_digest(owner, self.id))


def parse_entries(text: str, *, what: str) -> dict[str, str]:
    """``name:secret`` entries separated by commas, spaces or newlines (``#`` starts a comment
    line in files).

    :raises ValueError: a malformed entry, a duplicate name, or a secret under 16 characters.
    """
    entries: dict[str, str] = {}
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    for entry in _SEPARATORS.split("\n".join(lines)):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep or not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"{what}: expected name:secret with a name of [A-Za-z0-9_.-], got {name!r}")
        if not _SECRET_RE.fullmatch(secret):
            raise ValueError(
                f"{what} {name!r}: the secret must be at least 16 characters of A-Z a-z 0-9 -._~+/"
            )
        if name in entries:
            raise ValueError(f"{what}: {name!r} is configured twice")
        entries[name] = secret
    return entries


def read_entries(inline: str, path: Path | None, *, what: str) -> dict[str, str]:
    """Entries from a setting and from a file (one per line), merged."""
    entries = parse_entries(inline, what=what)
    if path is not None:
        for name, secret in parse_entries(path.read_text("utf-8"), what=f"{what} ({path})").items():
            if name in entries:
                raise ValueError(f"{what}: {name!r} is configured twice")
            entries[name] = secret
    return entries


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


class Credentials:
    """The configured tokens and signing keys, and the check of one request against them."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        signing_keys: Mapping[str, str],
        admin_tokens: Iterable[str] = (),
    ) -> None:
        admins = set(admin_tokens)
        unknown = admins - set(tokens)
        if unknown:
            raise ValueError(f"admin tokens that are not configured: {sorted(unknown)}")
        self._tokens = [
            (_hash(secret), Principal(f"token:{name}", admin=name in admins))
            for name, secret in tokens.items()
        ]
        self.signing_keys = {key_id: secret.encode("ascii") for key_id, secret in signing_keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """The tokens, signing keys and admin tokens configured in ``settings``.

        :raises ValueError: a malformed entry, or an unreadable file.
        """
        return cls(
            tokens=read_entries(settings.tokens, settings.tokens_file, what="token"),
            signing_keys=read_entries(settings.signing_keys, settings.signing_keys_file, what="signing key"),
            admin_tokens=[name for name in settings.admin_tokens.replace(",", " ").split() if name],
        )

    @property
    def empty(self) -> bool:
        return not self._tokens and not self.signing_keys

    def authenticate(
        self,
        *,
        authorization: str | None,
        query: Mapping[str, str],
        method: str,
        path: str,
        now: float,
        resource_id: str | None = None,
    ) -> Principal:
        """The principal of a request; ``path`` is the one a signature must cover, and
        ``resource_id`` the resource it names (None for the collection).

        :raises MissingCredentialsError: (401) no credentials at all.
        :raises AmbiguousCredentialsError: (400) a token and a signature together (RFC 6750
            §2: one method per request).
        :raises InvalidCredentialsError: (401) an unknown token; a signature that does not
            match. :raises SignatureScopeError: (403) a signature expired or for another method.
        """
        signed = any(name.startswith("br-") for name in query)
        if authorization is not None and signed:
            raise AmbiguousCredentialsError("Send a bearer token or a signed URL, not both.")
        if signed:
            grant = verify(query, method=method, path=path, keys=self.signing_keys, now=now)
            signature = query["br-sig"]
            scope = resource_id or self._derived_id(grant.key_id, signature)
            return Principal(f"signed:{grant.key_id}:{scope}", grant=grant, signature=signature)
        if authorization is None:
            raise MissingCredentialsError("This server requires a bearer token or a signed URL.")
        match = _BEARER_RE.fullmatch(authorization)
        if match is None:
            raise InvalidCredentialsError("The Authorization header is not a bearer token.")
        presented = _hash(match.group(1))
        found: Principal | None = None
        for digest, principal in self._tokens:  # every entry, match or not: constant time
            if hmac.compare_digest(digest, presented):
                found = principal
        if found is None:
            raise InvalidCredentialsError("The bearer token is not valid.")
        return found

    def resource_id_for(self, principal: Principal) -> str:
        """The id of the one resource a signed creation URL may create (132 bits, derived with
        the key, so nobody can aim a signature at an id of their choosing)."""
        assert principal.grant is not None and principal.signature is not None
        return self._derived_id(principal.grant.key_id, principal.signature)

    def _derived_id(self, key_id: str, signature: str) -> str:
        seed = b"byterange-resource-id\n" + signature.encode("ascii")
        mac = hmac.new(self.signing_keys[key_id], seed, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii")[:22]

    def location_nonce(self, principal: Principal, resource_id: str) -> str:
        """The nonce of the ``Location`` signed for what ``principal`` created: derived, not
        drawn, so a replayed creation URL is answered with the very same ``Location`` (the
        grant is still unique: its path names a resource no other grant created)."""
        assert principal.grant is not None and principal.signature is not None
        seed = f"byterange-location-nonce\n{principal.signature}\n{resource_id}".encode("ascii")
        mac = hmac.new(self.signing_keys[principal.grant.key_id], seed, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode("ascii")

    def may_read(self, query: Mapping[str, str], *, path: str, now: float) -> bool:
        """Whether ``query`` carries a valid signature that lets its holder read ``path`` (GET or
        HEAD): a partial upload named in tus ``Upload-Concat`` by its signed URL."""
        try:
            verify(query, method="GET", path=path, keys=self.signing_keys, now=now)
        except SignatureScopeError as error:
            return "HEAD" in error.extra.get("methods", ())
        except InvalidCredentialsError:
            return False
        return True
