"""The chunked transfer coding (sans-IO): a strict RFC 9112 §7.1 decoder that loses no byte.

gunicorn's own ``ChunkedReader`` buffers until it holds a whole read and loses that buffer when a
chunk is malformed, and its framing errors are not ``OSError``. :class:`ChunkedDecoder` returns
the data of every chunk as it arrives, a chunk that has only partly arrived included, and reports
broken framing as :class:`BodyFramingError` after the data before it. The worker
(``runtime/worker.py``) feeds it the bytes of the connection.

Grammar (RFC 9112 §7.1)::

    chunked-body   = *chunk last-chunk trailer-section CRLF
    chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-size     = 1*HEXDIG
    last-chunk     = 1*("0") [ chunk-ext ] CRLF
    chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    chunk-ext-name = token
    chunk-ext-val  = token / quoted-string
    trailer-section = *( field-line CRLF )
"""

from __future__ import annotations

import re

__all__ = ["BodyFramingError", "ChunkedDecoder"]

#: Longest chunk size line by default: gunicorn's default ``limit_request_field_size``.
MAX_LINE = 8190


class BodyFramingError(ValueError):
    """The body's framing is broken (a malformed chunk or trailer): the body ends there."""


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_STRING = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
#: chunk-size [ chunk-ext ], where chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ).
_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING
    + rb"))?)*)"
)
#: Hex digits of the largest chunk size accepted (2**60 - 1 bytes; more is never a real chunk).
_MAX_SIZE_DIGITS = 15

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Strict sans-IO decoder of the chunked transfer coding (RFC 9112 §7.1).

    :meth:`feed` returns the chunk data decoded from the bytes given, including the data of a
    chunk that has only partly arrived. When the framing breaks, the data before the break is
    still returned, and :attr:`error` is set; nothing more is decoded after it. Once the last
    chunk and the trailer section have arrived, :attr:`done` is set, :attr:`trailers` holds the
    raw trailer block and :attr:`rest` whatever followed the body (a pipelined request).
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_trailer: int = 65536) -> None:
        self.max_line = max_line
        self.max_trailer = max_trailer
        self.error: BodyFramingError | None = None
        self.done = False
        self.trailers = b""
        self.rest = b""
        self._state = _SIZE
        self._left = 0
        self._partial = b""  # an incomplete size line, chunk terminator or trailer section

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.rest += data
            return b""
        if self.error is not None or not data:
            return b""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        out: list[bytes] = []
        try:
            self._decode(data, out)
        except BodyFramingError as exc:
            self.error = exc
        return b"".join(out)

    def _decode(self, data: bytes, out: list[bytes]) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _DATA:
                take = min(self._left, end - pos)
                out.append(data[pos : pos + take] if pos or take < end else data)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif self._state == _DATA_END:
                got = data[pos : pos + 2]
                if got != b"\r\n"[: len(got)]:
                    raise BodyFramingError("chunk data is not followed by CRLF")
                if len(got) < 2:
                    self._partial = got
                    return
                pos += 2
                self._state = _SIZE
            elif self._state == _SIZE:
                stop = data.find(b"\r\n", pos)
                line = data[pos:] if stop < 0 else data[pos:stop]
                if len(line) > self.max_line:
                    raise BodyFramingError(f"chunk size line longer than {self.max_line} bytes")
                if stop < 0:
                    # The size-line pattern refuses CR and LF in a complete line; this refuses a
                    # bare LF before the line is complete, instead of waiting for more.
                    if b"\n" in line:
                        raise BodyFramingError("bare LF in a chunk size line")
                    self._partial = line
                    return
                size = self._chunk_size(line)
                pos = stop + 2
                if size:
                    self._left = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            else:  # _TRAILER: *( field-line CRLF ) CRLF
                section = data[pos:]
                if section.startswith(b"\r\n"):
                    self._finish(b"", section[2:])
                    return
                stop = section.find(b"\r\n\r\n")
                block = section if stop < 0 else section[:stop]
                if len(block) > self.max_trailer:
                    raise BodyFramingError(f"trailer section larger than {self.max_trailer} bytes")
                loose = block.replace(b"\r\n", b"")
                if stop < 0 and loose.endswith(b"\r"):
                    loose = loose[:-1]  # the first half of a CRLF still to come
                if b"\r" in loose or b"\n" in loose:
                    raise BodyFramingError("bare CR or LF in the trailer section")
                if stop < 0:
                    self._partial = section
                    return
                self._finish(block, section[stop + 4 :])
                return

    def _chunk_size(self, line: bytes) -> int:
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise BodyFramingError(f"invalid chunk size line {line[:40]!r}")
        digits = match.group(1).lstrip(b"0")
        if len(digits) > _MAX_SIZE_DIGITS:
            raise BodyFramingError("chunk size too large")
        return int(digits or b"0", 16)

    def _finish(self, trailers: bytes, rest: bytes) -> None:
        self.trailers = trailers
        self.rest = rest
        self.done = True
        self._state = _DONE
