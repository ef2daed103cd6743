"""``application/byteranges``: binary parts, modelled on RFC 9292 ``message/bhttp``.

Wire format (draft-ietf-httpapi-patch-byterange, RFC 9292 §3 notation; ``(i)`` is a QUIC
variable-length integer, RFC 9000 §16)::

    Patch { Message (..) ... }                        ; one part per message, at least one
    Known-Length Message {
      Framing Indicator (i) = 8,
      Known-Length Field Section (..),
      Known-Length Content (..),
    }
    Indeterminate-Length Message {
      Framing Indicator (i) = 10,
      Indeterminate-Length Field Section (..),
      Indeterminate-Length Content (..),
    }
    Known-Length Field Section { Length (i), Field Line (..) ... }
    Known-Length Content { Content Length (i), Content (..) }
    Indeterminate-Length Field Section { Field Line (..) ..., Content Terminator (i) = 0 }
    Indeterminate-Length Content {
      Indeterminate-Length Content Chunk (..) ..., Content Terminator (i) = 0,
    }
    Indeterminate-Length Content Chunk { Chunk Length (i) = 1.., Chunk (..) }
    Field Line { Name Length (i) = 1.., Name (..), Value Length (i), Value (..) }

A varint's first two bits give its length (1, 2, 4 or 8 bytes); the rest is big-endian.
Non-minimal encodings are accepted (RFC 9292 §3.1). Unlike bhttp there is no control data,
trailer or padding, so any framing indicator but 8 and 10 is an error.

Theory of operation. Field sections are copied into a small buffer (at most
``max_header_bytes``) and parsed when complete (known length) or line by line (indeterminate
length). Content is never buffered: each arriving slice is emitted as a view of the received
chunk. Field lines obey the same syntax as in the text formats (token names, matched
case-insensitively, hence lower-cased; values of VCHAR / obs-text / SP / HTAB, OWS stripped).
"""

from __future__ import annotations

import enum

from ..errors import LimitExceededError
from ..errors import MalformedBodyError
from ..errors import TruncatedBodyError
from .events import NEED_DATA
from .events import EndOfPatch
from .events import Event
from .events import NeedData
from .events import PartData
from .events import PartEnd
from .events import PartStart
from .message import FieldsLike
from .message import StreamDecoder
from .message import check_field
from .message import iter_fields
from .message import parse_field_line
from .parts import PartHeader

__all__ = [
    "KNOWN_LENGTH",
    "INDETERMINATE_LENGTH",
    "MAX_VARINT",
    "BinaryDecoder",
    "decode_varint",
    "encode_indeterminate_chunk",
    "encode_indeterminate_end",
    "encode_indeterminate_head",
    "encode_known_length",
    "encode_known_length_head",
    "encode_varint",
]

#: Framing indicator of a known-length message.
KNOWN_LENGTH = 8
#: Framing indicator of an indeterminate-length message.
INDETERMINATE_LENGTH = 10
#: The largest value a QUIC varint can hold (RFC 9000 §16).
MAX_VARINT = (1 << 62) - 1


def encode_varint(n: int) -> bytes:
    """Minimal QUIC varint encoding of ``n`` (RFC 9000 §16).

    :raises ValueError: ``n`` is negative or above :data:`MAX_VARINT`.
    """
    if n < 0 or n > MAX_VARINT:
        raise ValueError(f"{n} cannot be encoded as a varint")
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return (n | 0x4000).to_bytes(2, "big")
    if n < 1 << 30:
        return (n | 0x8000_0000).to_bytes(4, "big")
    return (n | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """Decode the varint at ``buf[pos]``.

    :returns: ``(value, position after it)``, or ``None`` when ``buf`` ends inside it (or at
        ``pos``).
    """
    if pos >= len(buf):
        return None
    size = 1 << (buf[pos] >> 6)
    end = pos + size
    if end > len(buf):
        return None
    if size == 1:
        return buf[pos], end
    return int.from_bytes(buf[pos:end], "big") & ((1 << (8 * size - 2)) - 1), end


def _field_lines(fields: FieldsLike) -> bytes:
    """Binary field lines; names are lower-cased as in HTTP/2 and later."""
    out = []
    for name, value in iter_fields(fields):
        raw_name, raw_value = check_field(name.lower(), value)
        out += (encode_varint(len(raw_name)), raw_name, encode_varint(len(raw_value)), raw_value)
    return b"".join(out)


def encode_known_length_head(fields: FieldsLike, content_length: int) -> bytes:
    """Everything of a known-length message before its content; ``content_length`` bytes follow.

    :raises ValueError: a field the decoder would reject.
    """
    section = _field_lines(fields)
    return b"".join(
        (
            encode_varint(KNOWN_LENGTH),
            encode_varint(len(section)),
            section,
            encode_varint(content_length),
        )
    )


def encode_known_length(fields: FieldsLike, data: bytes) -> bytes:
    """A whole known-length message (copies ``data``).

    :raises ValueError: a field the decoder would reject.
    """
    return encode_known_length_head(fields, len(data)) + bytes(data)


def encode_indeterminate_head(fields: FieldsLike) -> bytes:
    """Framing indicator and field section of an indeterminate-length message.

    Follow it with :func:`encode_indeterminate_chunk` for each piece of content and
    :func:`encode_indeterminate_end`.

    :raises ValueError: a field the decoder would reject.
    """
    return encode_varint(INDETERMINATE_LENGTH) + _field_lines(fields) + b"\x00"


def encode_indeterminate_chunk(data: bytes) -> bytes:
    """One content chunk; ``b""`` for empty ``data``, since a zero length would end the content."""
    if not data:
        return b""
    return encode_varint(len(data)) + bytes(data)


def encode_indeterminate_end() -> bytes:
    """The content terminator of an indeterminate-length message."""
    return b"\x00"


class _State(enum.Enum):
    INDICATOR = "INDICATOR"  # between messages
    SECTION_LENGTH = "SECTION_LENGTH"  # known length: Length (i) of the field section
    KNOWN_SECTION = "KNOWN_SECTION"
    INDETERMINATE_SECTION = "INDETERMINATE_SECTION"
    CONTENT_LENGTH = "CONTENT_LENGTH"
    CONTENT = "CONTENT"  # known-length content, or one indeterminate-length chunk
    CHUNK_LENGTH = "CHUNK_LENGTH"


class BinaryDecoder(StreamDecoder):
    """Streaming decoder of an ``application/byteranges`` body.

    Events: ``(PartStart PartData* PartEnd)+ EndOfPatch``, one part per message;
    ``EndOfPatch`` at ``receive_data(b"")`` between messages.

    Errors (from ``next_event``): ``MalformedBodyError`` for zero messages, a framing indicator
    other than 8 or 10, a Name Length of 0, a field line crossing the end of a known-length
    field section (or a truncated varint inside it), or a bad field name or value;
    ``LimitExceededError`` for a field section over ``max_header_bytes``
    (``extra={"max-header-bytes": N}``) or more than ``max_parts`` messages
    (``extra={"max-parts": N}``); those of ``PartHeader.from_fields`` for a field section that
    does not say where the part goes; ``TruncatedBodyError`` when the body ends inside a
    message.
    """

    def __init__(self, max_header_bytes: int = 8192, max_parts: int = 10000) -> None:
        super().__init__()
        self.max_header_bytes = max_header_bytes
        self.max_parts = max_parts
        self._state = _State.INDICATOR
        self._parts = 0
        self._varint = bytearray()  # a varint that spans chunks
        self._section = bytearray()  # the field section read so far
        self._section_length = 0  # known length of the field section
        self._section_pos = 0  # first unparsed byte of an indeterminate-length section
        self._fields: list[tuple[str, str]] = []
        self._remaining = 0  # content bytes left in the message or chunk
        self._indeterminate = False

    def _next(self) -> Event | NeedData:
        while True:
            state = self._state
            if state is _State.CONTENT:
                if not self._available():
                    return self._need_data("inside part content")
                pos = self._pos
                end = min(len(self._data), pos + self._remaining)
                self._pos = end
                self._remaining -= end - pos
                if not self._remaining:
                    self._state = (
                        _State.CHUNK_LENGTH if self._indeterminate else _State.INDICATOR
                    )
                    if not self._indeterminate:
                        self._pending.append(PartEnd())
                return PartData(memoryview(self._data)[pos:end])

            if state is _State.KNOWN_SECTION or state is _State.INDETERMINATE_SECTION:
                if not self._available():
                    return self._need_data("inside a part field section")
                if self._read_section():
                    self._state = _State.CONTENT_LENGTH
                    if self._indeterminate:
                        self._state = _State.CHUNK_LENGTH
                    return PartStart(PartHeader.from_fields(tuple(self._fields)))
                continue

            if state is _State.INDICATOR and not self._varint and not self._available():
                if not self._eof:
                    return NEED_DATA
                if not self._parts:
                    raise MalformedBodyError(
                        "empty application/byteranges body: a patch needs at least one message"
                    )
                return EndOfPatch()
            value = self._read_varint()
            if value is None:
                return self._need_data("inside a varint")

            if state is _State.INDICATOR:
                self._start_message(value)
            elif state is _State.SECTION_LENGTH:
                if value > self.max_header_bytes:
                    raise self._limit()
                self._section_length = value
                self._state = _State.KNOWN_SECTION
                if not value:  # an empty field section is complete at once
                    self._state = _State.CONTENT_LENGTH
                    return PartStart(PartHeader.from_fields(()))
            elif state is _State.CONTENT_LENGTH:
                if not value:
                    self._state = _State.INDICATOR
                    return PartEnd()
                self._remaining = value
                self._state = _State.CONTENT
            else:  # CHUNK_LENGTH
                if not value:
                    self._state = _State.INDICATOR
                    return PartEnd()
                self._remaining = value
                self._state = _State.CONTENT

    def _need_data(self, where: str) -> NeedData:
        if self._eof:
            raise TruncatedBodyError(f"body ended {where}")
        return NEED_DATA

    def _limit(self) -> LimitExceededError:
        return LimitExceededError(
            f"part field section longer than {self.max_header_bytes} bytes",
            extra={"max-header-bytes": self.max_header_bytes},
        )

    def _start_message(self, indicator: int) -> None:
        if indicator == KNOWN_LENGTH:
            self._indeterminate = False
            self._state = _State.SECTION_LENGTH
        elif indicator == INDETERMINATE_LENGTH:
            self._indeterminate = True
            self._state = _State.INDETERMINATE_SECTION
        else:
            raise MalformedBodyError(
                f"unknown framing indicator {indicator}; expected 8 (known length) or "
                "10 (indeterminate length)"
            )
        self._parts += 1
        if self._parts > self.max_parts:
            raise LimitExceededError(
                f"more than {self.max_parts} parts", extra={"max-parts": self.max_parts}
            )
        self._section.clear()
        self._section_pos = 0
        self._fields = []

    def _read_varint(self) -> int | None:
        """Read a varint from the queued input; ``None`` when it is not complete yet."""
        varint = self._varint
        if not varint and self._available():
            decoded = decode_varint(self._data, self._pos)
            if decoded is not None:  # fast path: the varint lies within one chunk
                self._pos = decoded[1]
                return decoded[0]
        while self._available():
            data = self._data
            size = 1 << ((varint[0] if varint else data[self._pos]) >> 6)
            take = min(size - len(varint), len(data) - self._pos)
            varint += data[self._pos : self._pos + take]
            self._pos += take
            if len(varint) == size:
                value = decode_varint(varint)[0]  # type: ignore[index]  # complete by now
                varint.clear()
                return value
        return None

    def _read_section(self) -> bool:
        """Copy field-section bytes from the current chunk; return whether the section is done.

        Only as many bytes as the section may still hold are copied; bytes copied past the end
        of an indeterminate-length section are given back to the chunk.
        """
        section = self._section
        data = self._data
        pos = self._pos
        if not self._indeterminate:
            take = min(len(data) - pos, self._section_length - len(section))
            section += data[pos : pos + take]
            self._pos = pos + take
            if len(section) < self._section_length:
                return False
            self._fields = self._parse_known_section(bytes(section))
            return True
        take = min(len(data) - pos, self.max_header_bytes - len(section))
        if not take:
            raise self._limit()
        section += data[pos : pos + take]
        self._pos = pos + take
        end = self._parse_indeterminate_section()
        if end is None:
            return False
        self._pos -= len(section) - end  # these bytes were not part of the section
        return True

    def _parse_known_section(self, section: bytes) -> list[tuple[str, str]]:
        """Parse a complete known-length field section, which must end at a field-line end."""
        fields = []
        pos = 0
        while pos < len(section):
            line = _parse_line(section, pos)
            if line is None:
                raise MalformedBodyError(
                    "field section Length does not end at the end of a field line"
                )
            if line[0] is None:
                raise MalformedBodyError("field Name Length is 0")
            fields.append(line[0])
            pos = line[1]
        return fields

    def _parse_indeterminate_section(self) -> int | None:
        """Parse complete field lines; return the end of the terminator once it is read."""
        section = self._section
        limit = self.max_header_bytes
        while True:
            pos = self._section_pos
            line = _parse_line(section, pos, limit)
            if line is None:
                # Not complete. If the section is full, the line cannot end within the cap.
                if len(section) >= limit:
                    raise self._limit()
                return None
            if line[0] is None:  # Content Terminator: a Name Length of 0
                return line[1]
            self._fields.append(line[0])
            self._section_pos = line[1]


def _parse_line(
    buf: bytes | bytearray, pos: int, limit: int | None = None
) -> tuple[tuple[str, str] | None, int] | None:
    """Parse the field line at ``buf[pos]``.

    :returns: ``(field, end)``; ``(None, end)`` for a Name Length of 0 (the terminator of an
        indeterminate-length section); ``None`` when ``buf`` ends inside the line.
    :raises LimitExceededError: with ``limit``, the line would end past ``limit``; raised as soon
        as the lengths are known, so a huge length fails at once instead of at the cap.
    :raises MalformedBodyError: bad name or value.
    """
    decoded = decode_varint(buf, pos)
    if decoded is None:
        return None
    name_length, pos = decoded
    if not name_length:
        return None, pos
    name_end = pos + name_length
    if limit is not None and name_end > limit:
        raise LimitExceededError(
            f"part field section longer than {limit} bytes", extra={"max-header-bytes": limit}
        )
    decoded = decode_varint(buf, name_end)
    if decoded is None:
        return None
    value_length, value_pos = decoded
    end = value_pos + value_length
    if limit is not None and end > limit:
        raise LimitExceededError(
            f"part field section longer than {limit} bytes", extra={"max-header-bytes": limit}
        )
    if end > len(buf):
        return None
    name = bytes(buf[pos:name_end])
    if b":" in name:
        raise MalformedBodyError("part field name is not a token")
    # Reuse the text syntax rules: "name:value" parses exactly when name is a token and value
    # holds only field-value octets.
    field = parse_field_line(name + b":" + bytes(buf[value_pos:end]))
    return field, end
