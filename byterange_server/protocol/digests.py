"""Digests (sans-IO): the one registry of hash algorithms, and the RFC 9530 digest fields.

:data:`HASHES` names every hash this server computes under each name a protocol gives it;
:data:`SUPPORTED_DIGESTS` are those of ``Content-Digest`` / ``Repr-Digest`` (RFC 9530), and
:data:`CHECKSUM_ALGORITHMS` those of tus's ``Upload-Checksum``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import http_sf

from ._abnf import malformed
from ._abnf import sf_parse

__all__ = [
    "SUPPORTED_DIGESTS",
    "format_digest",
    "parse_digest_field",
    "pick_digest",
]

#: Algorithms we compute, by their RFC 9530 registry key.
SUPPORTED_DIGESTS: dict[str, Callable[..., Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}
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
