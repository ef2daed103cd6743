"""``message/byterange``: one part, written as an HTTP/1.1 field block, a blank line, the bytes.

Wire format (draft-ietf-httpapi-patch-byterange §"message/byterange", RFC 9112 §5)::

    byterange-document = *( field-line CRLF ) CRLF [ message-body ]

The document is parsed only up to the first empty line; every byte after it is the body of the
single part, up to the end of the request content. The decoder therefore emits ``PartEnd`` and
``EndOfPatch`` only when ``receive_data(b"")`` says the content ended: the framing carries no
length, so a short body cannot be told from a complete one here (the caller compares the count
with the part's ``Content-Range``).

This module also holds what the three decoders share: strict field-line parsing
(:func:`parse_field_line`), field-block printing (:func:`format_fields`), the CRLF field-block
reader used by ``multipart.py``, and the chunk queue / error-state base class.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Union

from ..errors import ByterangeError
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
from .parts import PartHeader

__all__ = [
    "MessageDecoder",
    "encode_message",
    "encode_message_head",
    "format_fields",
    "parse_field_line",
]

#: What encoders accept as fields: pairs in order, or a mapping.
FieldsLike = Union[Iterable[tuple[str, str]], Mapping[str, str]]

# RFC 9110 §5.6.2:
#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#         / "~" / DIGIT / ALPHA
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 9110 §5.5 (after OWS is stripped from both ends, every remaining octet must be one of
# these, and the first and last are then necessarily field-vchar):
#   field-value   = *field-content
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#   field-vchar   = VCHAR / obs-text
#   obs-text      = %x80-FF
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")

# RFC 9110 §5.6.3:  OWS = *( SP / HTAB )
_OWS = b" \t"


def parse_field_line(line: bytes) -> tuple[str, str]:
    """Parse one field line (without its CRLF) strictly.

    RFC 9112 §5::

        field-line = field-name ":" OWS field-value OWS
        field-name = token

    No whitespace is allowed before the colon (RFC 9112 §5.1), and obs-fold is rejected
    (RFC 9112 §5.2 lets a recipient reject it with 400; we do).

    :returns: ``(lower-cased name, value with OWS stripped)``; the value is decoded as latin-1.
    :raises MalformedBodyError: the line is not a valid field line.
    """
    if line[:1] in (b" ", b"\t"):
        raise MalformedBodyError("obsolete line folding (obs-fold) in a part field block")
    name, colon, rest = line.partition(b":")
    if not colon:
        raise MalformedBodyError("part field line has no colon")
    if _TOKEN.fullmatch(name) is None:
        raise MalformedBodyError("part field name is not a token")
    value = rest.strip(_OWS)
    if _FIELD_VALUE.fullmatch(value) is None:
        raise MalformedBodyError("part field value contains a control character")
    return name.decode("ascii").lower(), value.decode("latin-1")


def check_field(name: str, value: str) -> tuple[bytes, bytes]:
    """Check one field for an encoder and return its latin-1 bytes.

    :raises ValueError: the name is not a token or the value could not be parsed back (CR, LF,
        NUL, other controls, or characters outside latin-1). This is a programming error of the
        caller, not something a client can cause, hence not a ``ByterangeError``.
    """
    try:
        raw_name = name.encode("ascii")
        raw_value = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"field {name!r} cannot be encoded") from None
    if _TOKEN.fullmatch(raw_name) is None:
        raise ValueError(f"field name {name!r} is not a token")
    if _FIELD_VALUE.fullmatch(raw_value) is None:
        raise ValueError(f"field value of {name!r} contains a control character")
    return raw_name, raw_value


def iter_fields(fields: FieldsLike) -> Iterable[tuple[str, str]]:
    """Pairs of a mapping or of an iterable of pairs, in order."""
    if isinstance(fields, Mapping):
        return fields.items()
    return fields


def format_fields(fields: FieldsLike) -> bytes:
    """Print fields as ``name: value CRLF`` lines followed by the blank line that ends the block.

    :raises ValueError: a field that the decoders would reject.
    """
    lines = []
    for name, value in iter_fields(fields):
        raw_name, raw_value = check_field(name, value)
        lines.append(raw_name + b": " + raw_value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class FieldBlockReader:
    """Incremental reader of one CRLF field block, capped at ``max_bytes`` (blank line included).

    Lines are checked as soon as their LF arrives, so a bare LF or a bad field line fails early,
    and the cap is applied by position (a line whose LF would lie past the cap fails), so the
    outcome does not depend on how the input is split. Only a partial line is ever copied.
    """

    __slots__ = ("_max", "_size", "_partial", "fields")

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0  # bytes of complete lines consumed so far
        self._partial = bytearray()  # the current line, when it spans chunks
        self.fields: list[tuple[str, str]] = []

    def feed(self, data: bytes, pos: int) -> int | None:
        """Consume ``data[pos:]``.

        :returns: the index in ``data`` just after the blank line, or ``None`` when every byte
            was consumed and the block is not finished yet.
        :raises MalformedBodyError: bare LF or malformed field line.
        :raises LimitExceededError: the block does not end within ``max_bytes``.
        """
        while True:
            # The LF of the current line must lie at an index < pos + room to stay under the cap.
            room = self._max - self._size - len(self._partial)
            lf = data.find(b"\n", pos, pos + room)
            if lf < 0:
                if len(data) - pos >= room:
                    raise LimitExceededError(
                        f"part field block longer than {self._max} bytes",
                        extra={"max-header-bytes": self._max},
                    )
                self._partial += data[pos:]
                return None
            if self._partial:
                self._partial += data[pos : lf + 1]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[pos : lf + 1]
            self._size += len(line)
            pos = lf + 1
            if line[-2:-1] != b"\r":
                raise MalformedBodyError("bare LF in a part field block; lines must end in CRLF")
            if len(line) == 2:
                return pos
            self.fields.append(parse_field_line(line[:-2]))


class StreamDecoder:
    """Chunk queue and error state shared by the three decoders (sans-IO, h11 style).

    Subclasses implement :meth:`_next`, which looks at ``self._data[self._pos:]`` (made non-empty
    by :meth:`_available`) and returns one event or ``NEED_DATA``; ``self._pending`` holds events
    that are already decided (``PartEnd`` after the last ``PartData``, ...).
    """

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._data = b""  # the chunk being parsed; PartData are views into it
        self._pos = 0
        self._eof = False
        self._received = 0  # bytes received so far (tells "empty body" from "truncated")
        self._pending: deque[Event] = deque()
        self._error: ByterangeError | None = None
        self._finished = False

    def receive_data(self, data: bytes) -> None:
        """Queue ``data`` for parsing; ``b""`` means the body ended.

        Non-``bytes`` buffers are copied once, so that emitted views stay immutable.

        :raises RuntimeError: data after the end of input (a bug in the caller).
        """
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("received data after the end of input")
        if self._error is not None or self._finished:
            return  # nothing will be parsed any more; do not hold memory for it
        if type(data) is not bytes:
            data = bytes(data)
        self._received += len(data)
        self._chunks.append(data)

    def next_event(self) -> Event | NeedData:
        """The next event, or ``NEED_DATA``.

        After ``EndOfPatch`` every call returns ``EndOfPatch`` again.

        :raises MalformedBodyError: bad framing (400); ``TruncatedBodyError`` when the body ended
            early, raised only after every ``PartData`` for the bytes received.
        :raises LimitExceededError: a configured limit was exceeded (400).
        """
        if self._error is not None:
            raise self._error
        if self._finished:
            self._chunks.clear()  # epilogue or anything else after the end: not parsed
            return EndOfPatch()
        if self._pending:
            event = self._pending.popleft()
        else:
            try:
                event = self._next()
            except ByterangeError as exc:
                self._error = exc
                self._chunks.clear()
                self._data = b""
                raise
        if type(event) is EndOfPatch:
            self._finished = True
        return event

    def _next(self) -> Event | NeedData:  # pragma: no cover - abstract
        raise NotImplementedError

    def _available(self) -> bool:
        """Make ``self._data[self._pos:]`` non-empty if input is queued; return whether it is."""
        while self._pos >= len(self._data):
            if not self._chunks:
                self._data = b""
                self._pos = 0
                return False
            self._data = self._chunks.popleft()
            self._pos = 0
        return True


class _State(enum.Enum):
    FIELDS = "FIELDS"
    BODY = "BODY"


class MessageDecoder(StreamDecoder):
    """Streaming decoder of a ``message/byterange`` body.

    Events: ``PartStart PartData* PartEnd EndOfPatch``; ``PartEnd`` and ``EndOfPatch`` come at
    ``receive_data(b"")``. Body bytes are passed through as views of the received chunks.

    Errors (from ``next_event``): ``MalformedBodyError`` for an empty body, a bare LF or a bad
    field line; ``LimitExceededError`` (``extra={"max-header-bytes": N}``) when no blank line
    ends the field block within ``max_header_bytes``; those of ``PartHeader.from_fields`` for a
    field block that does not say where the part goes; ``TruncatedBodyError`` when the body
    ends inside the field block.
    """

    def __init__(self, max_header_bytes: int = 8192) -> None:
        super().__init__()
        self.max_header_bytes = max_header_bytes
        self._state = _State.FIELDS
        self._reader = FieldBlockReader(max_header_bytes)

    def _next(self) -> Event | NeedData:
        if self._state is _State.FIELDS:
            while self._available():
                end = self._reader.feed(self._data, self._pos)
                if end is None:
                    self._pos = len(self._data)
                    continue
                self._pos = end
                self._state = _State.BODY
                return PartStart(PartHeader.from_fields(tuple(self._reader.fields)))
            if not self._eof:
                return NEED_DATA
            if not self._received:
                raise MalformedBodyError("empty message/byterange body: a patch needs one part")
            raise TruncatedBodyError("body ended inside the part field block")
        if self._available():
            view = memoryview(self._data)[self._pos :]
            self._pos = len(self._data)
            return PartData(view)
        if not self._eof:
            return NEED_DATA
        self._pending.append(EndOfPatch())
        return PartEnd()


def encode_message_head(fields: FieldsLike) -> bytes:
    """The field block and blank line of a ``message/byterange`` body; the bytes follow it.

    :raises ValueError: a field the decoder would reject.
    """
    return format_fields(fields)


def encode_message(fields: FieldsLike, data: bytes) -> bytes:
    """A whole ``message/byterange`` body (copies ``data``; stream large bodies with the head)."""
    return format_fields(fields) + bytes(data)

