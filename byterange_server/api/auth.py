"""Authentication and ownership for every request to the upload endpoints.

Runs before routing reaches any protocol (byte-range, tus, IETF), so a refused request reads no
body and changes nothing. Unauthenticated: ``OPTIONS`` (discovery and CORS preflights carry no
credentials), the health and metrics endpoints (their own blueprints), and unknown paths (404).

The views ask this module who creates (:func:`creator`), who writes (:func:`write_scope`),
whether the caller may write (:func:`may_write`: a read-only signed URL may not end another
request's append), which partial uploads it may concatenate (:func:`readable_sources`), and the
``Location`` to hand out (:func:`resource_location`: signed for the new resource when the
request was signed, so a browser never needs a secret).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlsplit

from flask import Response
from flask import current_app
from flask import g
from flask import request
from flask import url_for

from ..auth.signing import PARAMS
from ..auth.signing import signed_url
from ..auth.tokens import Credentials
from ..auth.tokens import Principal
from ..config import Settings
from ..errors import AuthError
from ..errors import InvalidCredentialsError
from ..errors import MissingCredentialsError
from ..errors import NotOwnerError
from ..uploads.values import Creator
from . import context

__all__ = [
    "CREDENTIALS_KEY",
    "authenticate",
    "creator",
    "credentials_for",
    "may_write",
    "principal",
    "readable_sources",
    "resource_location",
    "sign_links",
    "write_scope",
]

#: ``app.extensions[CREDENTIALS_KEY]``: the :class:`Credentials`, when authentication is on.
CREDENTIALS_KEY = "byterange_credentials"
#: What the holder of a signed creation URL may do with the resource it created.
RESOURCE_METHODS = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"})
_READS = frozenset({"GET", "HEAD"})
_LINK_TARGET = re.compile(r"<([^>]*/committed-ranges[^>]*)>")


def credentials_for(settings: Settings) -> Credentials | None:
    """The credentials requests are checked against; None when authentication is off.

    :raises ValueError: authentication is required but no credential is configured (a server
        that can authenticate nobody is a misconfiguration, not a locked door).
    """
    if not settings.auth_required:
        return None
    credentials = Credentials.from_settings(settings)
    if credentials.empty:
        raise ValueError(
            "authentication is required but no credentials are configured: set BYTERANGE_TOKENS "
            "or BYTERANGE_SIGNING_KEYS (or their _FILE forms), or BYTERANGE_AUTH=off for local "
            "development"
        )
    return credentials


def _credentials() -> Credentials:
    return current_app.extensions[CREDENTIALS_KEY]  # type: ignore[no-any-return]


def authenticate() -> None:
    """Who sends this request, and whether it may touch the resource it names.

    :raises AuthError: (401, 403).
    """
    if request.blueprint != "byterange" or request.method == "OPTIONS" or g.get("cors_preflight"):
        return
    args = request.args
    for name in PARAMS:
        if len(args.getlist(name)) > 1:
            raise InvalidCredentialsError(f"The signed URL repeats {name}.")
    resource_id = (request.view_args or {}).get("resource_id")
    try:
        found = _credentials().authenticate(
            authorization=request.headers.get("Authorization"),
            query=args.to_dict(flat=True),
            method=request.method,
            path=_signed_path(),
            now=time.time(),
            resource_id=resource_id,
        )
    except AuthError as error:
        _challenge(error)
        raise
    g.principal = found
    if resource_id is None or found.grant is not None:
        # The collection (creation), or a signed URL: its signature covers exactly this path.
        return
    exists, owner = context.service().owner_of(resource_id)
    if exists and not found.may_access(owner):
        # 403, not 404: ids are unguessable, so existence is no secret worth a second answer.
        raise NotOwnerError(extra={"resource": resource_id})


def sign_links(response: Response) -> None:
    """A signed request's links to the committed-ranges document carry its signature, which
    covers that document for reading: the holder of a signed URL can follow them."""
    found = principal()
    link = response.headers.get("Link")
    if found is None or found.grant is None or not link or "br-sig=" in link:
        return
    signature = "&".join(f"{name}={quote(request.args[name], safe='')}" for name in PARAMS)
    response.headers["Link"] = _LINK_TARGET.sub(
        lambda match: f"<{match[1]}{'&' if '?' in match[1] else '?'}{signature}>", link
    )


def _challenge(error: AuthError) -> None:
    """RFC 6750 §3: a 401 says how to authenticate; a bad token says it was the token."""
    if error.status != 401:
        return
    challenge = 'Bearer realm="byterange-server"'
    if not isinstance(error, MissingCredentialsError) and "Authorization" in request.headers:
        challenge += ', error="invalid_token"'
    error.headers.setdefault("WWW-Authenticate", challenge)


def _signed_path() -> str:
    """The path a signature must cover: the resource's own for its committed-ranges document
    (a signed resource URL covers its sub-resources for reading)."""
    if request.endpoint == "byterange.committed_ranges" and request.method in _READS:
        return url_for("byterange.resource", resource_id=request.view_args["resource_id"])  # type: ignore[index]
    return request.script_root + request.path


def principal() -> Principal | None:
    """The authenticated principal; None when authentication is off."""
    return g.get("principal")


def write_scope() -> dict[str, Any]:
    """What a write needs to know of its writer: the principal (concurrency limits) and a signed
    URL's size cap -- keyword arguments of ``WriteOptions`` and the protocols' ``append``."""
    found = principal()
    if found is None:
        return {"principal": None, "max_size": None}
    return {"principal": found.id, "max_size": found.grant.max_size if found.grant is not None else None}


def may_write() -> bool:
    """Whether the caller may write the resource of this request: anyone without
    authentication; a token that got this far (it owns the resource or is an admin); a signed
    URL only if it allows PATCH, the method of every append (a URL for reading does not)."""
    found = principal()
    return found is None or found.grant is None or found.grant.allows("PATCH")


def readable_sources(urls: dict[str, str]) -> frozenset[str]:
    """Of ``urls`` (resource id -> the URL of it that tus ``Upload-Concat`` named), the ids the
    URL itself proves a right to read: a valid signature that allows GET or HEAD on that path,
    as a GET of the URL would be judged. The service checks the others by owner."""
    found = principal()
    if found is None:
        return frozenset()
    credentials = _credentials()
    now = time.time()
    readable = set()
    for resource_id, url in urls.items():
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        if not any(name in PARAMS for name in names) or len(set(names)) != len(names):
            continue  # unsigned, or a repeated parameter (no single spelling): no proof
        if credentials.may_read(dict(pairs), path=parts.path, now=now):
            readable.add(resource_id)
    return frozenset(readable)


def creator() -> Creator:
    found = principal()
    if found is None:
        return Creator()
    if found.grant is None:
        return Creator(owner=found.id, admin=found.admin)
    return Creator(
        owner=found.id,
        resource_id=_credentials().resource_id_for(found),
        max_size=found.grant.max_size,
    )


def resource_location(resource_id: str) -> str:
    """The absolute URL of a resource; signed for it alone when this request was signed."""
    url = url_for("byterange.resource", resource_id=resource_id, _external=True)
    found = principal()
    if found is None or found.grant is None:
        return url
    grant = found.grant
    credentials = _credentials()
    return signed_url(
        url,
        key_id=grant.key_id,
        secret=credentials.signing_keys[grant.key_id],
        methods=RESOURCE_METHODS,
        expires=grant.expires,
        max_size=grant.max_size,
        nonce=credentials.location_nonce(found, resource_id),
    )

