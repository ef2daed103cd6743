"""Media types: a strict ``Content-Type`` parser and the choice of PATCH decoder.

:func:`decoder_for` is the one place that maps a request ``Content-Type`` to a decoder of
``message.py``, ``multipart.py`` or ``binary.py``. Only the three types of the byte-range PATCH
draft are accepted; look-alikes (``message/byteranges``, ``multipart/x-byteranges``) are not.
"""

from __future__ import annotations

import re
from typing import Protocol
from typing import Union

from ..errors import MalformedHeaderError
from ..errors import UnsupportedMediaTypeError
from .binary import BinaryDecoder
from .events import Event
from .events import NeedData
from .message import MessageDecoder
from .multipart import MultipartDecoder
from .multipart import validate_boundary

__all__ = [
    "PATCH_MEDIA_TYPES",
    "Decoder",
    "decoder_for",
    "parse_media_type",
]

#: The PATCH media types this server decodes, in order of preference (for ``Accept-Patch``).
PATCH_MEDIA_TYPES = ("message/byterange", "multipart/byteranges", "application/byteranges")


class Decoder(Protocol):
    """The sans-IO surface shared by every decoder (see :mod:`.events`)."""

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> Union[Event, NeedData]: ...


# RFC 9110 §8.3.1, §5.6.2:
#   media-type = type "/" subtype parameters
#   type       = token
#   subtype    = token
#   token      = 1*tchar
_TYPE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)/([!#$%&'*+\-.^_`|~0-9A-Za-z]+)")

# RFC 9110 §5.6.6, §5.6.4, §5.6.3:
#   parameters      = *( OWS ";" OWS [ parameter ] )
#   parameter       = parameter-name "=" parameter-value
#   parameter-name  = token
#   parameter-value = ( token / quoted-string )
#   quoted-string   = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext          = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair     = "\" ( HTAB / SP / VCHAR / obs-text )
#   OWS             = *( SP / HTAB )
_PARAMETER = re.compile(
    r"[ \t]*;[ \t]*"
    r"(?:([!#$%&'*+\-.^_`|~0-9A-Za-z]+)="
    r"(?:([!#$%&'*+\-.^_`|~0-9A-Za-z]+)"
    r'|"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"))?'
)
_QUOTED_PAIR = re.compile(r"\\([\t \x21-\x7e\x80-\xff])")

_ACCEPT_PATCH = {"Accept-Patch": ", ".join(PATCH_MEDIA_TYPES)}


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Parse a ``Content-Type`` value strictly (RFC 9110 §8.3.1).

    OWS around the whole value is ignored, as a field value's would be.

    :returns: ``("type/subtype", {name: value})`` with the type and parameter names lower-cased
        and quoted-string values unescaped; parameter values keep their case.
    :raises MalformedHeaderError: not a media type, or a parameter given twice (400).
    """
    value = value.strip(" \t")
    match = _TYPE.match(value)
    if match is None:
        raise MalformedHeaderError("Content-Type is not a media type (type/subtype)")
    media_type = f"{match.group(1)}/{match.group(2)}".lower()
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(value):
        match = _PARAMETER.match(value, pos)
        if match is None:
            raise MalformedHeaderError("Content-Type has a malformed parameter")
        pos = match.end()
        name, token, quoted = match.groups()
        if name is None:  # an empty parameter, as in "a/b;;c=d"; the grammar allows it
            continue
        name = name.lower()
        if name in params:
            raise MalformedHeaderError(f"Content-Type parameter {name!r} is given twice")
        params[name] = token if token is not None else _QUOTED_PAIR.sub(r"\1", quoted)
    return media_type, params


def decoder_for(
    content_type: str | None, *, max_header_bytes: int = 8192, max_parts: int = 10000
) -> MessageDecoder | MultipartDecoder | BinaryDecoder:
    """The decoder for a PATCH request's ``Content-Type``.

    :raises UnsupportedMediaTypeError: missing or unknown media type (415), with an
        ``Accept-Patch`` header listing :data:`PATCH_MEDIA_TYPES`.
    :raises MalformedHeaderError: malformed ``Content-Type``, or ``multipart/byteranges``
        without a valid ``boundary`` (400).
    """
    if content_type is None or not content_type.strip(" \t"):
        raise UnsupportedMediaTypeError(
            "PATCH needs a Content-Type; accepted: " + _ACCEPT_PATCH["Accept-Patch"],
            headers=_ACCEPT_PATCH,
            extra={"accept-patch": list(PATCH_MEDIA_TYPES)},
        )
    media_type, params = parse_media_type(content_type)
    if media_type == "message/byterange":
        return MessageDecoder(max_header_bytes=max_header_bytes)
    if media_type == "multipart/byteranges":
        boundary = params.get("boundary")
        if boundary is None:
            raise MalformedHeaderError("multipart/byteranges needs a boundary parameter")
        return MultipartDecoder(
            validate_boundary(boundary), max_header_bytes=max_header_bytes, max_parts=max_parts
        )
    if media_type == "application/byteranges":
        return BinaryDecoder(max_header_bytes=max_header_bytes, max_parts=max_parts)
    raise UnsupportedMediaTypeError(
        f"{media_type} is not a PATCH media type; accepted: " + _ACCEPT_PATCH["Accept-Patch"],
        headers=_ACCEPT_PATCH,
        extra={"accept-patch": list(PATCH_MEDIA_TYPES)},
    )
