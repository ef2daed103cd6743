"""One part of a patch (sans-IO): where its bytes go, read from its fields or built directly.

:class:`PartHeader` is what the write path needs of a part: its half-open ``[start, stop)``,
the complete length it declares, and its field lines. The patch decoders build one from each
part's field block (:meth:`PartHeader.from_fields`) and hand it out in their ``PartStart``; a
partial ``PUT`` builds one from its request headers (:meth:`PartHeader.from_request_headers`),
and a write that knows its range as numbers from typed values (:meth:`PartHeader.from_range`,
:meth:`PartHeader.whole`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MissingRangeError
from ._abnf import malformed
from ._abnf import strip_ows
from .numbers import check_int
from .numbers import parse_int
from .ranges import ContentOffset
from .ranges import ContentRange

__all__ = ["Fields", "PartHeader"]

#: Field lines of one part in arrival order: (lower-cased name, value with OWS stripped).
Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PartHeader:
    """Where one part of a patch writes, from its field block (or a partial PUT's headers).

    ``start``/``stop`` are half-open; ``length`` is the complete length the part declares (a
    hint, or the length-setting of ``*/L``), ``None`` when it says ``*`` or nothing.

    ::

        part fields                                    start  stop   length
        Content-Range: bytes 2-5/12                    2      6      12
        Content-Range: bytes */12                      None   None   12
        Content-Offset: 600                            600    None   None
        Content-Offset: 600 + Content-Length: 5        600    605    None
        Content-Offset: 600;complete-length=1000       600    None   1000

    ``fields`` keeps the whole field block, so callers can read ``Content-Type``,
    ``Repr-Digest`` and the like of the part.
    """

    start: int | None
    stop: int | None
    length: int | None
    fields: Fields = ()

    def __post_init__(self) -> None:
        if self.start is None:
            if self.stop is not None or self.length is None:
                raise ValueError(f"not a part header: {self!r}")
        elif self.start < 0 or (self.stop is not None and self.stop < self.start):
            raise ValueError(f"not a part header: {self!r}")

    @property
    def is_length_only(self) -> bool:
        """True for ``Content-Range: bytes */L``: sets the length, carries no bytes."""
        return self.start is None

    def expected_size(self) -> int | None:
        """Bytes the part body should carry: ``stop - start``; 0 for ``*/L``; ``None`` when
        the end is unknown (``Content-Offset`` without ``Content-Length``: read to the end of
        the part).
        """
        if self.start is None:
            return 0
        if self.stop is None:
            return None
        return self.stop - self.start

    def get_all(self, name: str) -> list[str]:
        """Every value of the field ``name`` (case-insensitive) in the part, in order."""
        name = name.lower()
        return [value for key, value in self.fields if key == name]

    @classmethod
    def from_fields(cls, fields: Fields) -> PartHeader:
        """Interpret one part's field lines (lower-cased names, as the decoders produce them).

        :raises MissingRangeError: if there is neither ``Content-Range`` nor
            ``Content-Offset`` (422; docs/spec-notes.md#e6).
        :raises MalformedHeaderError: for two ``Content-Range`` (or two ``Content-Offset``,
            or two ``Content-Length``) fields, both ``Content-Range`` and ``Content-Offset``,
            any unparsable one, a ``Content-Length`` that differs from the range's length
            (docs/spec-notes.md#e8; ``extra`` has both), a non-zero ``Content-Length`` on
            ``*/L``, or a
            ``Content-Offset`` part that would end past its ``complete-length``.
        :raises UnsupportedRangeUnitError: for a unit other than ``bytes`` (422;
            docs/spec-notes.md#e6).
        """
        ranges = [value for name, value in fields if name == "content-range"]
        offsets = [value for name, value in fields if name == "content-offset"]
        lengths = [value for name, value in fields if name == "content-length"]
        if not ranges and not offsets:
            raise MissingRangeError("Part has neither Content-Range nor Content-Offset")
        if len(ranges) + len(offsets) > 1:
            raise malformed(
                None, "Part must have exactly one Content-Range or Content-Offset field",
                **{"content-range-fields": len(ranges), "content-offset-fields": len(offsets)},
            )
        if len(lengths) > 1:
            raise malformed("Content-Length", "Part has more than one Content-Length field")
        content_length = (
            parse_int(strip_ows(lengths[0]), field="Content-Length") if lengths else None
        )
        if ranges:
            return cls._from_content_range(
                ContentRange.parse(ranges[0]), content_length, tuple(fields)
            )
        return cls._from_content_offset(
            ContentOffset.parse(offsets[0]), content_length, tuple(fields)
        )

    @classmethod
    def from_range(
        cls, where: ContentRange | ContentOffset, content_length: int | None = None
    ) -> PartHeader:
        """The part that ``where`` and a ``Content-Length`` describe, checked as
        :meth:`from_fields` checks them.

        For a write that knows its range as numbers (a tus or IETF append, a whole PUT), so
        that no field has to be printed for the decoder to parse again. The part has no fields.

        :param content_length: the bytes the body carries, as the HTTP layer parsed them, or
            ``None`` when that is unknown (a chunked body).
        :raises MalformedHeaderError: for a ``content_length`` that is negative or has more
            than 15 digits, one that differs from the range's length, a non-zero one with
            ``bytes */L``, or a ``Content-Offset`` part that would end past its
            ``complete-length``.
        """
        if content_length is not None:
            check_int(content_length, field="Content-Length")
        if isinstance(where, ContentRange):
            return cls._from_content_range(where, content_length, ())
        return cls._from_content_offset(where, content_length, ())

    @classmethod
    def whole(cls, size: int) -> PartHeader:
        """The whole representation of ``size`` bytes, as a ``PUT`` without ``Content-Range``
        writes it: ``bytes 0-(size-1)/size``, or ``bytes */0`` when it is empty.

        :raises MalformedHeaderError: for a ``size`` of more than 15 digits.
        """
        if not size:
            return cls.from_range(ContentRange.unsatisfied(0), 0)
        return cls.from_range(ContentRange(0, size, size), size)

    @classmethod
    def _from_content_offset(
        cls, content_offset: ContentOffset, content_length: int | None, fields: Fields
    ) -> PartHeader:
        offset, length = content_offset.offset, content_offset.length
        stop = None if content_length is None else offset + content_length
        if stop is not None and length is not None and stop > length:
            raise malformed(
                "Content-Offset", "Part would end past its complete-length",
                offset=offset, **{"content-length": content_length, "complete-length": length},
            )
        return cls(offset, stop, length, fields)

    @classmethod
    def _from_content_range(
        cls, content_range: ContentRange, content_length: int | None, fields: Fields
    ) -> PartHeader:
        if content_range.start is None or content_range.stop is None:
            if content_length:
                raise malformed(
                    "Content-Length", "A 'bytes */length' part must have no content",
                    **{"content-length": content_length, "range-length": 0},
                )
            return cls(None, None, content_range.length, fields)
        range_length = content_range.stop - content_range.start
        if content_length is not None and content_length != range_length:
            raise malformed(
                "Content-Length", "Content-Length differs from the length of the Content-Range",
                **{"content-length": content_length, "range-length": range_length},
            )
        return cls(content_range.start, content_range.stop, content_range.length, fields)

    @classmethod
    def from_request_headers(
        cls, content_range: str | None, content_length: int | None
    ) -> PartHeader:
        """Interpret the request headers of a partial ``PUT`` (RFC 9110 §14.5).

        :param content_range: the request's ``Content-Range`` value, or ``None`` if absent.
        :param content_length: the request's ``Content-Length`` as the HTTP layer parsed it,
            or ``None`` (chunked body).  With ``None`` the caller must itself check that the
            body carries exactly :meth:`expected_size` bytes (in particular none for ``*/L``).
        :raises MissingRangeError: if ``content_range`` is ``None``.
        :raises MalformedHeaderError: for a bad ``Content-Range``, a ``Content-Length`` that
            differs from the range's length, or a non-empty body with ``bytes */L``
            (docs/spec-notes.md#e15).
        :raises UnsupportedRangeUnitError: for a unit other than ``bytes``.
        """
        if content_range is None:
            raise MissingRangeError("PUT without Content-Range")
        if content_length is not None and content_length < 0:
            raise malformed("Content-Length", "Content-Length is negative")
        fields: Fields = (("content-range", content_range),)
        if content_length is not None:
            fields += (("content-length", str(content_length)),)
        return cls._from_content_range(ContentRange.parse(content_range), content_length, fields)
