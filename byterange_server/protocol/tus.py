"""Strict parsers and printers for the tus 1.0.0 header fields (sans-IO).

Same rules as the other field modules (:mod:`._abnf`): a parser takes the field value as a ``str`` (ISO-8859-1
decoded, one character per octet), returns a typed value or raises a 4xx
:mod:`byterange_server.errors` exception, and never returns ``None`` for malformed input.

Grammar (tus 1.0.0 protocol.md; tus gives prose, the ABNF here is ours and only as loose as
the prose)::

    Tus-Resumable       = "1.0.0"
    Upload-Defer-Length = "1"
    Upload-Metadata     = pair *( OWS "," OWS pair )
    pair                = key [ SP value ]
    key                 = 1*( %x21-2B / %x2D-7E )      ; VCHAR except ","
    value               = base64 (RFC 4648 §4, padded; may be empty)
    Upload-Checksum     = algorithm SP base64
    algorithm           = 1*( %x61-7A / DIGIT / "-" )  ; lowercase ASCII
    Upload-Concat       = "partial" / "final;" url *( SP url )
    url                 = 1*( %x21-7E )

Keys of ``Upload-Metadata`` are unique. The whole field is stored as received (minus leading
and trailing OWS) and echoed on HEAD; it is safe to reflect because it can only hold VCHAR,
SP and HTAB.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any

from ..errors import InvalidConcatError
from ..errors import MalformedHeaderError
from ..errors import UnsupportedChecksumError
from ..errors import UnsupportedVersionError
from .digests import CHECKSUM_ALGORITHMS

__all__ = [
    "OFFSET_OCTET_STREAM",
    "TUS_VERSION",
    "ConcatFinal",
    "ConcatPartial",
    "check_tus_resumable",
    "format_metadata",
    "format_upload_concat",
    "parse_defer_length",
    "parse_upload_checksum",
    "parse_upload_concat",
    "parse_upload_metadata",
]

#: The only tus version this server speaks (also its ``Tus-Version``).
TUS_VERSION = "1.0.0"
#: The body media type of a tus PATCH (and of a creation-with-upload POST).
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

_CHECKSUM_SIZES = {name: factory().digest_size for name, factory in CHECKSUM_ALGORITHMS.items()}

#: Longest ``Upload-Metadata`` stored (gunicorn's default field limit is 8190 anyway).
MAX_METADATA_LENGTH = 8192

_OWS = " \t"
_KEY_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+", re.ASCII)
# Padded standard base64 (RFC 4648 §4): a multiple of 4 characters, "=" only at the end.
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)
_ALGORITHM_RE = re.compile(r"[a-z0-9-]+", re.ASCII)
_URL_RE = re.compile(r"[\x21-\x7e]+", re.ASCII)


def _malformed(field: str, detail: str, **extra: Any) -> MalformedHeaderError:
    return MalformedHeaderError(detail, extra={"field": field, **extra})


def _base64(text: str, field: str) -> bytes:
    if not _BASE64_RE.fullmatch(text):
        raise _malformed(field, f"{field} holds a value that is not padded base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # pragma: no cover - the regex already excludes these
        raise _malformed(field, f"{field} holds a value that is not padded base64") from None


def check_tus_resumable(value: str) -> None:
    """:raises UnsupportedVersionError: (412, with ``Tus-Version``) for anything but 1.0.0."""
    if value.strip(_OWS) != TUS_VERSION:
        raise UnsupportedVersionError(
            "This server speaks tus 1.0.0 only.",
            extra={"tus-version": TUS_VERSION},
            headers={"Tus-Version": TUS_VERSION},
        )


def parse_defer_length(value: str) -> None:
    """``Upload-Defer-Length`` has exactly one valid value, ``1``; anything else is a 400."""
    if value.strip(_OWS) != "1":
        raise _malformed("Upload-Defer-Length", "Upload-Defer-Length must be 1")


def parse_upload_metadata(value: str) -> list[tuple[str, bytes]]:
    """``key1 dmFsdWU=,key2`` → ``[("key1", b"value"), ("key2", b"")]``, in order.

    tus lets an empty value leave out its space, so ``key`` and ``key `` both mean ``b""`` (a
    trailing space could not survive as the end of a field value anyway). An empty field means
    no metadata and gives ``[]``.

    :raises MalformedHeaderError: empty keys, bad base64, duplicate keys, stray whitespace,
        control characters, or a field longer than :data:`MAX_METADATA_LENGTH`.
    """
    field = "Upload-Metadata"
    text = value.strip(_OWS)
    if len(text) > MAX_METADATA_LENGTH:
        raise _malformed(field, "Upload-Metadata is too long", **{"max-length": MAX_METADATA_LENGTH})
    if not text:
        return []
    pairs: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip(_OWS)
        key, space, encoded = item.partition(" ")
        if not _KEY_RE.fullmatch(key):
            raise _malformed(field, "Upload-Metadata has an empty or malformed key")
        if key in seen:
            raise _malformed(field, "Upload-Metadata repeats a key", key=key)
        seen.add(key)
        pairs.append((key, _base64(encoded, field) if space else b""))
    return pairs


def format_metadata(pairs: list[tuple[str, bytes]]) -> str:
    """The inverse of :func:`parse_upload_metadata` (for clients and tests)."""
    items = []
    for key, data in pairs:
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"not a metadata key: {key!r}")
        items.append(f"{key} {base64.b64encode(data).decode('ascii')}" if data else key)
    return ",".join(items)


def parse_upload_checksum(value: str) -> tuple[str, bytes]:
    """``sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=`` → ``("sha1", <20 bytes>)``.

    :raises UnsupportedChecksumError: (400) for a well-formed algorithm we do not support.
    :raises MalformedHeaderError: (400) for anything malformed, including a digest whose size
        is wrong for its algorithm (it could never match).
    """
    field = "Upload-Checksum"
    text = value.strip(_OWS)
    algorithm, space, encoded = text.partition(" ")
    if not space or not _ALGORITHM_RE.fullmatch(algorithm):
        raise _malformed(field, "Upload-Checksum is not '<algorithm> <base64 digest>'")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UnsupportedChecksumError(
            "This checksum algorithm is not supported.",
            extra={"algorithm": algorithm, "supported": list(CHECKSUM_ALGORITHMS)},
        )
    digest = _base64(encoded, field)
    if len(digest) != _CHECKSUM_SIZES[algorithm]:
        raise _malformed(
            field,
            "The digest has the wrong size for its algorithm",
            algorithm=algorithm,
            size=len(digest),
        )
    return algorithm, digest


@dataclasses.dataclass(frozen=True)
class ConcatPartial:
    """``Upload-Concat: partial``."""


@dataclasses.dataclass(frozen=True)
class ConcatFinal:
    """``Upload-Concat: final;<url> <url> ...``; the URLs as sent, in order."""

    urls: tuple[str, ...]


def parse_upload_concat(value: str) -> ConcatPartial | ConcatFinal:
    """:raises InvalidConcatError: (400) for anything but ``partial`` or ``final;`` + URLs."""
    text = value.strip(_OWS)
    if text == "partial":
        return ConcatPartial()
    kind, semicolon, rest = text.partition(";")
    if kind != "final" or not semicolon:
        raise InvalidConcatError("Upload-Concat is neither 'partial' nor 'final;<urls>'.")
    urls = tuple(rest.split(" "))
    # Empty items come from a leading, trailing or doubled space: refused, like tusd's strict
    # splitting would make them unresolvable URLs anyway.
    if not rest or not all(_URL_RE.fullmatch(url) for url in urls):
        raise InvalidConcatError("Upload-Concat: final needs one or more space-separated URLs.")
    return ConcatFinal(urls)


def format_upload_concat(concat: ConcatPartial | ConcatFinal) -> str:
    if isinstance(concat, ConcatPartial):
        return "partial"
    return "final;" + " ".join(concat.urls)
