"""Digests (sans-IO): the one registry of hash algorithms, and the RFC 9530 digest fields.

:data:`HASHES` names every hash this server computes under each name a protocol gives it;
:data:`SUPPORTED_DIGESTS` are those of ``Content-Digest`` / ``Repr-Digest`` (RFC 9530), and
:data:`CHECKSUM_ALGORITHMS` those of tus's ``Upload-Checksum`` (parsed in :mod:`.tus`).
The fields: ``Content-Digest`` / ``Repr-Digest`` (:func:`parse_digest_field`,
:func:`pick_digest`, :func:`format_digest`) and ``Want-Content-Digest`` / ``Want-Repr-Digest``
(:func:`parse_want_digest`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import http_sf

from ..errors import MalformedHeaderError
from ._abnf import malformed
from ._abnf import sf_parse

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "HASHES",
    "SUPPORTED_DIGESTS",
    "format_digest",
    "parse_digest_field",
    "parse_want_digest",
    "pick_digest",
]

#: Every hash computed here, by each name a protocol gives it: the RFC 9530 registry keys
#: ("sha-256") and the tus checksum names ("sha256") never collide, so one table holds both.
HASHES: dict[str, Callable[..., Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}
#: ``Content-Digest`` / ``Repr-Digest`` algorithms we compute, by their RFC 9530 registry key.
SUPPORTED_DIGESTS = {name: HASHES[name] for name in ("sha-256", "sha-512")}
#: tus ``Upload-Checksum`` algorithms, in the order ``Tus-Checksum-Algorithm`` lists them.
CHECKSUM_ALGORITHMS = {name: HASHES[name] for name in ("sha1", "sha256", "sha512", "md5")}
# Strongest first.
_DIGEST_PREFERENCE = ("sha-512", "sha-256")
_DIGEST_SIZES = {name: factory().digest_size for name, factory in SUPPORTED_DIGESTS.items()}


def parse_digest_field(value: str, *, field: str = "Content-Digest") -> dict[str, bytes]:
    """Parse ``Content-Digest`` / ``Repr-Digest``: an sf-dictionary of Byte Sequences.

    ``sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:`` → ``{"sha-256": b"..."}``.
    Member parameters are ignored; a repeated key keeps its last value (RFC 9651).

    :raises MalformedHeaderError: if the value is not an sf-dictionary, a member is not a
        Byte Sequence, or the digest of a supported algorithm has the wrong length.
    """
    parsed = sf_parse(value, "dictionary", field)
    out = {}
    for name, member in parsed.items():
        item = member[0]
        if type(item) is not bytes:
            raise malformed(field, f"{field} member is not a Byte Sequence", algorithm=name)
        size = _DIGEST_SIZES.get(name)
        if size is not None and len(item) != size:
            raise malformed(
                field, f"{field} {name} digest has the wrong length",
                algorithm=name, expected=size, actual=len(item),
            )
        out[name] = item
    return out


def pick_digest(parsed: dict[str, bytes]) -> tuple[str, bytes] | None:
    """The strongest supported algorithm in ``parsed`` and its digest; ``None`` if none is."""
    for name in _DIGEST_PREFERENCE:
        if name in parsed:
            return name, parsed[name]
    return None


def format_digest(algorithm: str, digest: bytes) -> str:
    """``sha-256=:base64:`` -- one member of a ``Content-Digest`` / ``Repr-Digest`` value.

    :raises ValueError: if ``algorithm`` is not a valid dictionary key.
    """
    return http_sf.ser({algorithm: bytes(digest)})


def parse_want_digest(value: str, *, field: str = "Want-Repr-Digest") -> dict[str, int]:
    """``Want-Repr-Digest`` / ``Want-Content-Digest``: algorithm → weight (0 = not acceptable).

    ::

        Want-Repr-Digest = sf-dictionary of sf-integer 0..10      ; RFC 9530 §4

    :raises MalformedHeaderError: for a member that is not an Integer from 0 to 10.
    """
    parsed = sf_parse(value.strip(" \t"), "dictionary", field)
    out: dict[str, int] = {}
    for key, (item, _params) in parsed.items():
        if type(item) is not int or not 0 <= item <= 10:
            raise MalformedHeaderError(
                f"A {field} weight is not an Integer from 0 to 10.", extra={"field": field, "key": key}
            )
        out[key] = item
    return out
