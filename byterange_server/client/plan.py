"""Sans-IO segment planner for parallel, resumable segmented uploads.

Theory of operation
-------------------
A file of ``size`` bytes is uploaded as **segments**: half-open byte ranges ``[start, stop)``
sent with ``Content-Range: bytes start-(stop-1)/size``, in any order and in parallel. The server
reports what is durable as a set of committed ranges (``Committed-Ranges`` header, or the JSON
document it links to); everything else must still be sent.

The planner cuts the **gaps** -- ``[0, size)`` minus the committed ranges -- on a fixed **grid**
of multiples of ``segment_size``: a segment never crosses a grid line, and only starts off the
grid where a gap does. Because the cut points depend only on ``size``, ``segment_size`` and the
gap edges, a resumed upload re-cuts exactly the segments of the first attempt that were not
committed: ``plan_segments(size, s, committed + some_planned) == remaining_planned``. Segments
that were half-written when the connection dropped show up as shorter segments that end on the
grid, so the next attempt falls back onto it at once.

Nothing here does I/O: interval arithmetic is :mod:`byterange_server.extents` and header syntax
is :mod:`byterange_server.protocol.ranges`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from byterange_server import extents
from byterange_server.extents import Extent
from byterange_server.protocol.ranges import ContentRange
from byterange_server.protocol.ranges import parse_committed_ranges

__all__ = [
    "Segment",
    "bytes_remaining",
    "committed_from_header",
    "missing_ranges",
    "plan_segments",
    "too_many_requests",
]

#: Below this segment size, a request moves less than its overhead is worth ...
TINY_SEGMENT = 64 * 1024
#: ... and below this one, tens of thousands of requests add minutes of overhead.
SMALL_SEGMENT = 1024 * 1024


@dataclass(frozen=True)
class Segment:
    """The half-open byte range ``[start, stop)`` of one upload request, ``0 <= start < stop``.

    :raises ValueError: if ``start < 0`` or ``stop <= start``.
    """

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"not a non-empty segment: [{self.start}, {self.stop})")

    @property
    def length(self) -> int:
        """Number of bytes in the segment (always at least 1)."""
        return self.stop - self.start

    def content_range(self, total: int | None) -> str:
        """The ``Content-Range`` value that uploads this segment.

        ``Segment(0, 8388608).content_range(1073741824)`` → ``bytes 0-8388607/1073741824``;
        with ``total=None`` (length not known yet) the complete length is ``*``.

        :param total: the complete length of the file, or ``None`` if unknown.
        :raises ValueError: if ``total`` is smaller than :attr:`stop`.
        """
        return ContentRange(self.start, self.stop, total).format()


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"file size must not be negative: {size}")


def missing_ranges(size: int, committed: Iterable[tuple[int, int]] = ()) -> list[Extent]:
    """The gaps still to upload: ``[0, size)`` minus ``committed``, in normal form.

    :param size: the length of the file in bytes.
    :param committed: half-open ``(start, stop)`` ranges in any order; overlapping, touching and
        empty ones are fine, and the parts past ``size`` are ignored.
    :raises ValueError: if ``size < 0`` or a committed range has ``start < 0`` or
        ``stop < start``.
    """
    _check_size(size)
    return extents.gaps(extents.normalize(committed), 0, size)


def bytes_remaining(size: int, committed: Iterable[tuple[int, int]] = ()) -> int:
    """How many bytes of ``[0, size)`` are not committed (see :func:`missing_ranges`)."""
    return extents.total(missing_ranges(size, committed))


def plan_segments(
    size: int, segment_size: int, committed: Iterable[tuple[int, int]] = ()
) -> list[Segment]:
    """The segments still to send for a file of ``size`` bytes, in ascending order.

    Their union is exactly :func:`missing_ranges`; each is at most ``segment_size`` bytes long
    and none crosses a multiple of ``segment_size``, so a piece starts on the grid unless the gap
    it belongs to starts off it. With nothing committed the plan is the grid itself:
    ``ceil(size / segment_size)`` segments ``[k * segment_size, min((k + 1) * segment_size,
    size))``.

    :param size: the length of the file in bytes.
    :param segment_size: the largest segment to send, in bytes.
    :param committed: the committed ranges, as for :func:`missing_ranges`.
    :raises ValueError: if ``size < 0``, ``segment_size < 1`` or a committed range is invalid.
    """
    if segment_size < 1:
        raise ValueError(f"segment size must be at least 1: {segment_size}")
    out: list[Segment] = []
    for gap in missing_ranges(size, committed):
        cursor = gap.start
        while cursor < gap.stop:
            # Next grid line strictly after cursor, or the end of the gap if that comes first.
            cut = min(gap.stop, (cursor // segment_size + 1) * segment_size)
            out.append(Segment(cursor, cut))
            cursor = cut
    return out


def committed_from_header(value: str | None) -> list[Extent]:
    """The committed ranges of a ``Committed-Ranges`` header value, in normal form.

    ``bytes=0-3,8-11`` → ``[Extent(0, 4), Extent(8, 12)]``; ``none`` → ``[]``.

    :param value: the field value, or ``None`` if the response did not carry the field.
    :raises ValueError: if ``value`` is ``None``. An absent field does **not** mean "nothing
        committed": the server leaves it out when the list is too long for a header, so the
        state is unknown and the caller must fetch the JSON document of the
        ``Link: <...>; rel="committed-ranges"`` header instead.
    :raises byterange_server.errors.MalformedHeaderError: for a malformed value.
    :raises byterange_server.errors.UnsupportedRangeUnitError: for a unit other than ``bytes``.
    """
    if value is None:
        raise ValueError(
            "no Committed-Ranges header: the committed state is unknown (the server omits the "
            "field when it is too long); fetch the document linked with "
            'rel="committed-ranges" instead'
        )
    return extents.normalize(parse_committed_ranges(value))


def too_many_requests(requests: int, segment_size: int) -> bool:
    """Whether a transfer of ``requests`` requests of ``segment_size`` bytes is mostly overhead.

    Every upload request costs the server an ``fdatasync`` and two short database transactions,
    a few milliseconds whatever its size. More than 100 requests of under 64 KiB, or more than
    10,000 of under 1 MiB, spend most of their time on that: a larger segment would be faster.
    """
    if requests > 100 and segment_size < TINY_SEGMENT:
        return True
    return requests > 10_000 and segment_size < SMALL_SEGMENT
