"""``multipart/byteranges``: several parts, framed by boundary delimiters (RFC 2046 §5.1.1).

Grammar (RFC 2046 §5.1.1, as RFC 9110 §14.6 uses it)::

    multipart-body    := [preamble CRLF] dash-boundary transport-padding CRLF
                         body-part *encapsulation close-delimiter transport-padding
                         [CRLF epilogue]
    dash-boundary     := "--" boundary
    encapsulation     := delimiter transport-padding CRLF body-part
    delimiter         := CRLF dash-boundary
    close-delimiter   := delimiter "--"
    transport-padding := *LWSP-char                       ; SP / HTAB
    body-part         := MIME-part-headers [CRLF *OCTET]

Theory of operation. The decoder looks for ``delimiter`` (``CRLF "--" boundary``) with
``bytes.find`` from a moving position, so every byte is searched once. At the end of a chunk it
holds back only the longest suffix that could begin a delimiter (never more than
``len(delimiter) - 1`` bytes, and usually none, since a delimiter begins with the only CR it
contains); everything before that is emitted at once as a view of the received chunk. The CRLF
in front of a delimiter belongs to the delimiter, not to the data.

The blank line that ends a part's field block is also treated as a possible first CRLF of the
next delimiter, so ``fields CRLF CRLF "--" boundary`` is a part with an empty body, as is the
same with one more CRLF in front of the delimiter (RFC 2046 allows both spellings). For the same
reason the start of the body counts as following a CRLF, so no preamble is needed.

A line that begins with the delimiter but goes on with anything other than transport padding and
CRLF, or ``--``, is a ``MalformedBodyError``: RFC 2046 says a boundary match only needs the
start of a line, and a sender must never let the boundary begin a line of its data. Preamble and
epilogue are ignored; ``EndOfPatch`` is emitted as soon as the close delimiter is read.

When the body ends inside a part, bytes held back as a possible delimiter start are not emitted
(they are framing if anything), then ``TruncatedBodyError`` is raised.
"""

from __future__ import annotations

import enum
import re
import secrets

from ..errors import LimitExceededError
from ..errors import MalformedBodyError
from ..errors import MalformedHeaderError
from ..errors import TruncatedBodyError
from .events import NEED_DATA
from .events import EndOfPatch
from .events import Event
from .events import NeedData
from .events import PartData
from .events import PartEnd
from .events import PartStart
from .message import FieldBlockReader
from .message import FieldsLike
from .message import StreamDecoder
from .message import format_fields
from .parts import PartHeader

__all__ = [
    "MultipartDecoder",
    "MultipartEncoder",
    "encode_multipart",
    "make_boundary",
    "validate_boundary",
]

# RFC 2046 §5.1.1:
#   boundary      := 0*69<bchars> bcharsnospace
#   bchars        := bcharsnospace / " "
#   bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" / ":"
#                    / "=" / "?"
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")

# RFC 9110 §5.6.2 tchar, to decide whether the boundary parameter must be quoted.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 822 §3.3:  LWSP-char = SPACE / HTAB   (transport-padding = *LWSP-char)
_LWSP = re.compile(rb"[ \t]*")

_CR = 0x0D
_LF = 0x0A
_DASH = 0x2D


def validate_boundary(boundary: str) -> str:
    """Check a boundary parameter (already unquoted) against RFC 2046 and return it.

    :raises MalformedHeaderError: empty, over 70 characters, a character outside bchars, or a
        trailing space (400).
    """
    if not isinstance(boundary, str) or _BOUNDARY.fullmatch(boundary) is None:
        raise MalformedHeaderError(
            "multipart boundary must be 1-70 characters from the RFC 2046 bchars and must not "
            "end in a space"
        )
    return boundary


def make_boundary() -> str:
    """A fresh random boundary (128 random bits), practically never found in any data."""
    return "byterange-" + secrets.token_hex(16)


class _State(enum.Enum):
    PREAMBLE = "PREAMBLE"
    DELIMITER_LINE = "DELIMITER_LINE"
    FIELDS = "FIELDS"
    BODY = "BODY"


class _Line(enum.Enum):
    """Where we are on a delimiter line, after ``CRLF "--" boundary``."""

    START = "START"  # "--" (close) or transport padding next
    DASH = "DASH"  # one "-" read; the second makes the close delimiter
    PADDING = "PADDING"  # skipping LWSP until CR
    CR = "CR"  # CR read; LF must follow


class MultipartDecoder(StreamDecoder):
    """Streaming decoder of a ``multipart/byteranges`` body.

    Events: ``(PartStart PartData* PartEnd)+ EndOfPatch``; each part's fields are read by
    ``PartHeader.from_fields``.

    Errors (from ``next_event``): ``MalformedBodyError`` for zero parts, no delimiter at all, a
    bad delimiter line, a bare LF or a bad field line in a part field block;
    ``LimitExceededError`` for a field block over ``max_header_bytes``
    (``extra={"max-header-bytes": N}``) or more than ``max_parts`` parts
    (``extra={"max-parts": N}``); those of ``PartHeader.from_fields`` for a field block that
    does not say where the part goes; ``TruncatedBodyError`` when the body ends before the
    close delimiter.

    :raises MalformedHeaderError: from the constructor, for an invalid boundary.
    """

    def __init__(self, boundary: str, max_header_bytes: int = 8192, max_parts: int = 10000) -> None:
        super().__init__()
        self.boundary = validate_boundary(boundary)
        self.max_header_bytes = max_header_bytes
        self.max_parts = max_parts
        self._delim = b"\r\n--" + boundary.encode("ascii")
        self._state = _State.PREAMBLE
        self._line = _Line.START
        self._parts = 0
        self._reader = FieldBlockReader(max_header_bytes)
        # Held-back bytes: always a proper prefix of the delimiter. The first `_virtual` of them
        # were not data (the CRLF assumed before the body, or a field block's blank line).
        self._tail = b"\r\n"
        self._virtual = 2

    def _next(self) -> Event | NeedData:
        while True:
            state = self._state
            if state is _State.BODY:
                found = self._scan(emit=True)
                if found is None:
                    self._state = _State.DELIMITER_LINE
                    self._line = _Line.START
                    return PartEnd()
                if found is NEED_DATA and self._eof:
                    raise TruncatedBodyError("body ended inside a part, before its delimiter")
                return found
            if state is _State.FIELDS:
                event = self._fields()
                if event is NEED_DATA and self._eof:
                    raise TruncatedBodyError("body ended inside a part field block")
                return event
            if state is _State.DELIMITER_LINE:
                line_event = self._delimiter_line()
                if line_event is None:
                    continue
                if line_event is NEED_DATA and self._eof:
                    raise TruncatedBodyError("body ended on a delimiter line")
                return line_event
            # PREAMBLE: discard everything before the first delimiter.
            if self._scan(emit=False) is NEED_DATA:
                if self._eof:
                    raise MalformedBodyError(
                        "no boundary delimiter: a multipart body needs at least one part"
                    )
                return NEED_DATA
            self._state = _State.DELIMITER_LINE
            self._line = _Line.START

    def _scan(self, emit: bool) -> PartData | NeedData | None:
        """Search for the delimiter from ``self._pos``.

        :returns: ``PartData`` for bytes known to be data (if ``emit``), ``None`` once the
            delimiter has been consumed, ``NEED_DATA`` when the queued input is used up.
        """
        delim = self._delim
        while self._available():
            data = self._data
            pos = self._pos
            tail = self._tail
            if tail:
                # tail == delim[:k]. A delimiter holds one CR, its first byte, so the only
                # delimiter that can involve the tail is one starting at tail[0].
                k = len(tail)
                piece = data[pos : pos + len(delim) - k]
                if delim.startswith(piece, k):
                    self._pos = pos + len(piece)
                    if k + len(piece) == len(delim):
                        self._tail = b""
                        self._virtual = 0
                        return None
                    self._tail = tail + piece  # the chunk ended inside the delimiter
                    continue
                spill = tail[self._virtual :]
                self._tail = b""
                self._virtual = 0
                if emit and spill:
                    return PartData(memoryview(spill))
            idx = data.find(delim, pos)
            if idx >= 0:
                if emit and idx > pos:
                    # Next call finds the delimiter again right at self._pos.
                    self._pos = idx
                    return PartData(memoryview(data)[pos:idx])
                self._pos = idx + len(delim)
                return None
            # Hold back the longest suffix that is a proper prefix of the delimiter; it can
            # only start at the last CR of the final len(delim) - 1 bytes.
            hold = len(data)
            cr = data.rfind(b"\r", max(pos, len(data) - len(delim) + 1))
            if cr >= 0 and delim.startswith(data[cr:]):
                hold = cr
            self._tail = data[hold:]
            self._pos = len(data)
            if emit and hold > pos:
                return PartData(memoryview(data)[pos:hold])
        return NEED_DATA

    def _delimiter_line(self) -> EndOfPatch | NeedData | None:
        """Read the rest of a delimiter line; ``None`` once a new part's field block begins."""
        while self._available():
            data = self._data
            pos = self._pos
            line = self._line
            if line is _Line.START:
                if data[pos] == _DASH:
                    self._line = _Line.DASH
                    self._pos = pos + 1
                else:
                    self._line = _Line.PADDING
            elif line is _Line.DASH:
                if data[pos] != _DASH:
                    raise MalformedBodyError("boundary delimiter followed by a single '-'")
                self._pos = pos + 1
                if not self._parts:
                    raise MalformedBodyError(
                        "close delimiter before any part: a multipart body needs at least one part"
                    )
                return EndOfPatch()
            elif line is _Line.PADDING:
                end = _LWSP.match(data, pos).end()  # type: ignore[union-attr]  # always matches
                self._pos = end
                if end < len(data):
                    if data[end] != _CR:
                        raise MalformedBodyError(
                            "a line that starts with the boundary delimiter goes on with "
                            "something other than transport padding"
                        )
                    self._line = _Line.CR
                    self._pos = end + 1
            else:
                if data[pos] != _LF:
                    raise MalformedBodyError("delimiter line must end in CRLF")
                self._pos = pos + 1
                self._parts += 1
                if self._parts > self.max_parts:
                    raise LimitExceededError(
                        f"more than {self.max_parts} parts", extra={"max-parts": self.max_parts}
                    )
                self._state = _State.FIELDS
                self._reader = FieldBlockReader(self.max_header_bytes)
                return None
        return NEED_DATA

    def _fields(self) -> PartStart | NeedData:
        while self._available():
            end = self._reader.feed(self._data, self._pos)
            if end is None:
                self._pos = len(self._data)
                continue
            self._pos = end
            self._state = _State.BODY
            # The blank line's CRLF may be the first CRLF of the next delimiter (empty body).
            self._tail = b"\r\n"
            self._virtual = 2
            return PartStart(PartHeader.from_fields(tuple(self._reader.fields)))
        return NEED_DATA


class MultipartEncoder:
    """Builds a ``multipart/byteranges`` body piece by piece, for streaming the part bodies.

    ::

        enc = MultipartEncoder(make_boundary())
        send(enc.part_head(fields)); send(data) ...   # for every part
        send(enc.closing())

    The caller must make sure no part body contains ``CRLF "--" boundary`` or starts with
    ``"--" boundary`` (a random boundary from :func:`make_boundary` does).

    :raises MalformedHeaderError: invalid boundary.
    """

    def __init__(self, boundary: str) -> None:
        self.boundary = validate_boundary(boundary)
        self._dash_boundary = b"--" + boundary.encode("ascii")
        self._parts = 0

    @property
    def content_type(self) -> str:
        """The request ``Content-Type``, with the boundary quoted when it is not a token."""
        if _TOKEN.fullmatch(self.boundary):
            return f"multipart/byteranges; boundary={self.boundary}"
        return f'multipart/byteranges; boundary="{self.boundary}"'

    def part_head(self, fields: FieldsLike) -> bytes:
        """Delimiter line, field lines and blank line of the next part (the first without CRLF).

        :raises ValueError: a field the decoder would reject.
        """
        head = format_fields(fields)
        lead = b"\r\n" if self._parts else b""
        self._parts += 1
        return lead + self._dash_boundary + b"\r\n" + head

    def closing(self) -> bytes:
        """The close delimiter (and a final CRLF).

        :raises ValueError: no part was written; the grammar requires at least one.
        """
        if not self._parts:
            raise ValueError("a multipart body needs at least one part")
        return b"\r\n" + self._dash_boundary + b"--\r\n"

    def check_data(self, data: bytes) -> None:
        """Check that ``data`` can be a whole part body under this boundary.

        :raises ValueError: ``data`` holds the delimiter or starts with ``"--" boundary``.
        """
        if data.startswith(self._dash_boundary) or b"\r\n" + self._dash_boundary in data:
            raise ValueError("part body contains the multipart boundary delimiter")


def encode_multipart(parts: list[tuple[FieldsLike, bytes]], boundary: str) -> bytes:
    """A whole ``multipart/byteranges`` body (copies the data; stream large bodies instead).

    :raises ValueError: no parts, a bad field, or a part body holding the delimiter.
    :raises MalformedHeaderError: invalid boundary.
    """
    encoder = MultipartEncoder(boundary)
    out = []
    for fields, data in parts:
        encoder.check_data(data)
        out.append(encoder.part_head(fields))
        out.append(bytes(data))
    out.append(encoder.closing())
    return b"".join(out)

