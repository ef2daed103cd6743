"""Sans-IO: the HTTP request that uploads a batch of segments, in each wire format.

A request body is described, not built: :class:`WireRequest` holds its method, headers and a
sequence of **pieces**, each either literal framing bytes (from the server's own encoders in
:mod:`byterange_server.protocol`) or a :class:`~byterange_server.client.plan.Segment` of the
source file. The transport streams the pieces, reading file segments from disk in bounded
chunks, so no request body is ever held in memory, and the exact ``Content-Length`` is known
before the first byte is sent (no chunked encoding, which some proxies buffer).

Formats (docs/protocol.md#writing):

========================  =====================================================================
``message/byterange``     PATCH; one part: a field block with ``Content-Range``, then bytes.
``multipart/byteranges``  PATCH; several parts, so one request can carry many small segments.
``application/byteranges`` PATCH; the binary, varint-framed known-length message.
``put``                   partial PUT: ``Content-Range`` is a request header, the body is raw.
========================  =====================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from byterange_server.protocol.binary import encode_known_length_head
from byterange_server.protocol.message import encode_message_head
from byterange_server.protocol.multipart import MultipartEncoder
from byterange_server.protocol.multipart import make_boundary

from .plan import Segment

__all__ = ["Piece", "WireFormat", "WireRequest", "batch_segments", "build_request"]

#: A piece of a request body: literal bytes, or a byte range of the source file.
Piece = Union[bytes, Segment]


class WireFormat(enum.Enum):
    """How segments travel; the value is the PATCH media type (``put`` for partial PUT)."""

    MESSAGE = "message/byterange"
    MULTIPART = "multipart/byteranges"
    BINARY = "application/byteranges"
    PUT = "put"

    @classmethod
    def parse(cls, name: str) -> WireFormat:
        """A format by its short name (``message``, ``multipart``, ``binary``, ``put``) or media type.

        :raises ValueError: for any other name.
        """
        wanted = name.strip().lower()
        for member in cls:
            if wanted in (member.value, member.name.lower()):
                return member
        choices = ", ".join(member.name.lower() for member in cls)
        raise ValueError(f"unknown wire format {name!r} (choose from {choices})")

    @property
    def batches(self) -> bool:
        """One request may carry several segments (only ``multipart/byteranges``)."""
        return self is WireFormat.MULTIPART


@dataclass(frozen=True)
class WireRequest:
    """One upload request: method, headers (without ``Content-Length``) and body pieces.

    :ivar boundary: for ``multipart/byteranges``, the delimiter (``CRLF "--" boundary``) that
        must not occur in any part's data; the transport checks each chunk as it streams.
    """

    method: str
    headers: dict[str, str]
    pieces: tuple[Piece, ...]
    segments: tuple[Segment, ...]
    boundary: bytes | None = None

    @property
    def content_length(self) -> int:
        return sum(len(piece) if isinstance(piece, bytes) else piece.length for piece in self.pieces)


def build_request(fmt: WireFormat, segments: Sequence[Segment], total: int | None) -> WireRequest:
    """The request that uploads ``segments`` of a file of ``total`` bytes in format ``fmt``.

    :param total: the complete length, sent in every ``Content-Range`` (``None`` sends ``*``).
    :raises ValueError: no segments, or several for a format that carries one per request.
    """
    if not segments:
        raise ValueError("a request needs at least one segment")
    if len(segments) > 1 and not fmt.batches:
        raise ValueError(f"{fmt.value} carries one segment per request, not {len(segments)}")
    segments = tuple(segments)
    if fmt is WireFormat.PUT:
        (segment,) = segments
        headers = {"Content-Range": segment.content_range(total), "Content-Type": "application/octet-stream"}
        return WireRequest("PUT", headers, (segment,), segments)
    if fmt is WireFormat.MULTIPART:
        encoder = MultipartEncoder(make_boundary())
        pieces: list[Piece] = []
        for segment in segments:
            pieces += (encoder.part_head({"Content-Range": segment.content_range(total)}), segment)
        pieces.append(encoder.closing())
        delimiter = b"\r\n--" + encoder.boundary.encode("ascii")
        return WireRequest(
            "PATCH", {"Content-Type": encoder.content_type}, tuple(pieces), segments, delimiter
        )
    (segment,) = segments
    fields = {"Content-Range": segment.content_range(total)}
    if fmt is WireFormat.MESSAGE:
        head = encode_message_head(fields)
    else:
        head = encode_known_length_head(fields, segment.length)
    return WireRequest("PATCH", {"Content-Type": fmt.value}, (head, segment), segments)


def batch_segments(
    fmt: WireFormat, segments: Sequence[Segment], *, max_bytes: int, max_parts: int
) -> list[tuple[Segment, ...]]:
    """Group planned segments into requests.

    Formats that carry one segment per request get one batch per segment. For
    ``multipart/byteranges``, consecutive segments share a request while the batch stays within
    ``max_bytes`` of data and ``max_parts`` parts, so the many short pieces a fragmented resume
    leaves cost a few requests rather than one each; a segment is never split.

    :raises ValueError: if ``max_bytes`` or ``max_parts`` is below 1.
    """
    if max_bytes < 1 or max_parts < 1:
        raise ValueError("max_bytes and max_parts must be at least 1")
    if not fmt.batches:
        return [(segment,) for segment in segments]
    batches: list[tuple[Segment, ...]] = []
    current: list[Segment] = []
    size = 0
    for segment in segments:
        if current and (size + segment.length > max_bytes or len(current) == max_parts):
            batches.append(tuple(current))
            current, size = [], 0
        current.append(segment)
        size += segment.length
    if current:
        batches.append(tuple(current))
    return batches
