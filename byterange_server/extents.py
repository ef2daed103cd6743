"""Half-open interval algebra over byte offsets: pure, sans-IO, stdlib only.

Theory of operation
-------------------
An :class:`Extent` is the half-open byte range ``[start, stop)``: ``stop`` is exclusive, as in
``range()``, so ``stop - start`` is the length and ``[a, b)`` followed by ``[b, c)`` touch
without overlapping. ``0 <= start < stop`` always holds: an empty extent cannot be built, and
HTTP's inclusive ``first``/``last`` positions never appear here (``protocol/ranges.py``
converts them).

A set of bytes is kept as a list of extents in **normal form**: sorted by ``start``, and no two
extents overlap *or touch* (``prev.stop < next.start``). Every set of offsets has exactly one
normal form, so two lists are equal exactly when they denote the same bytes, and the list is as
short as it can be -- which is what keeps the extent table of a resource small.

Every function that takes extent *lists* expects them in normal form (:func:`normalize` makes
any iterable of ``(start, stop)`` pairs so) and every function returns a new list in normal
form; no argument is ever modified. Lookups bisect (``O(log n)``); binary operations sweep both
lists once (``O(n + m)``).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "Extent",
    "add",
    "clip",
    "covers",
    "gaps",
    "intersect",
    "is_normal",
    "normalize",
    "overlaps",
    "prefix_end",
    "subtract",
    "total",
    "union",
]


class _ExtentFields(NamedTuple):
    start: int
    stop: int


class Extent(_ExtentFields):
    """The byte range ``[start, stop)``, with ``0 <= start < stop``.

    A :class:`~typing.NamedTuple` (``typing`` forbids a ``__new__`` in the class that declares
    the fields, hence the private base), so extents compare and sort as ``(start, stop)``.

    :raises ValueError: if ``start < 0`` or ``stop <= start``.
    :raises TypeError: if a bound is not an integer (``operator.index`` rejects floats).
    """

    __slots__ = ()

    def __new__(cls, start: int, stop: int) -> Extent:
        start = operator.index(start)
        stop = operator.index(stop)
        if not 0 <= start < stop:
            raise ValueError(f"not a non-empty extent: [{start}, {stop})")
        return tuple.__new__(cls, (start, stop))

    @property
    def length(self) -> int:
        """Number of bytes in the extent (always at least 1)."""
        return self.stop - self.start


def _extent(start: int, stop: int) -> Extent:
    # Internal fast path: callers have already established 0 <= start < stop.
    return tuple.__new__(Extent, (start, stop))


_start_of = operator.itemgetter(0)
_stop_of = operator.itemgetter(1)


def _check_window(start: int, stop: int) -> None:
    if start < 0 or stop < start:
        raise ValueError(f"not a byte window: [{start}, {stop})")


def normalize(extents: Iterable[tuple[int, int]]) -> list[Extent]:
    """Sort and coalesce ``(start, stop)`` pairs into normal form.

    Overlapping and touching ranges merge; empty ones (``start == stop``) are dropped.

    :param extents: any iterable of pairs, in any order (:class:`Extent` or plain tuples).
    :raises ValueError: for a pair with ``start < 0`` or ``stop < start``.
    """
    pairs = []
    for start, stop in extents:
        start = operator.index(start)
        stop = operator.index(stop)
        if start < 0 or stop < start:
            # A reversed range is a caller's bug, not an empty range: never drop it silently.
            raise ValueError(f"not a byte range: [{start}, {stop})")
        if start != stop:
            pairs.append((start, stop))
    # Already-sorted runs (e.g. two normal lists appended) make this sort linear.
    pairs.sort()
    out: list[Extent] = []
    for start, stop in pairs:
        if out and start <= out[-1].stop:
            if stop > out[-1].stop:
                out[-1] = _extent(out[-1].start, stop)
        else:
            out.append(_extent(start, stop))
    return out


def union(a: Sequence[Extent], b: Sequence[Extent]) -> list[Extent]:
    """Bytes in ``a`` or ``b``, ``O(n + m)``."""
    return normalize([*a, *b])


def add(extents: Sequence[Extent], extent: tuple[int, int]) -> list[Extent]:
    """``union(extents, [extent])``, found by bisection.

    ``O(log n + k)`` comparisons for the ``k`` extents that ``extent`` overlaps or touches,
    plus one list copy (the input is not modified).

    :raises ValueError: if ``extent`` is not a valid :class:`Extent`.
    """
    new = extent if type(extent) is Extent else Extent(*extent)
    # Normal form sorts ``stop`` too, so both bisections are valid.
    # First extent that ends at or after new.start (touching counts) ...
    low = bisect.bisect_left(extents, new.start, key=_stop_of)
    # ... up to the last one that starts at or before new.stop (touching counts).
    high = bisect.bisect_right(extents, new.stop, lo=low, key=_start_of)
    if low < high:
        new = _extent(min(new.start, extents[low].start), max(new.stop, extents[high - 1].stop))
    return [*extents[:low], new, *extents[high:]]


def subtract(a: Sequence[Extent], b: Sequence[Extent]) -> list[Extent]:
    """Bytes in ``a`` and not in ``b``, ``O(n + m)``."""
    out: list[Extent] = []
    j = 0
    for start, stop in a:
        # Parts of b that end before this extent starts end before every later one too.
        while j < len(b) and b[j].stop <= start:
            j += 1
        cursor = start
        k = j
        while k < len(b) and b[k].start < stop:
            if b[k].start > cursor:
                out.append(_extent(cursor, b[k].start))
            cursor = max(cursor, b[k].stop)
            k += 1
        if cursor < stop:
            out.append(_extent(cursor, stop))
    return out


def intersect(a: Sequence[Extent], b: Sequence[Extent]) -> list[Extent]:
    """Bytes in both ``a`` and ``b``, ``O(n + m)``."""
    out: list[Extent] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i].start, b[j].start)
        stop = min(a[i].stop, b[j].stop)
        if start < stop:
            # Pieces of two normal lists are disjoint and never touch: no coalescing needed.
            out.append(_extent(start, stop))
        if a[i].stop < b[j].stop:
            i += 1
        else:
            j += 1
    return out


def clip(extents: Sequence[Extent], start: int, stop: int) -> list[Extent]:
    """The parts of ``extents`` inside the window ``[start, stop)``, ``O(log n + k)``.

    :raises ValueError: if ``start < 0`` or ``stop < start``.
    """
    _check_window(start, stop)
    if start == stop:
        return []  # an empty window inside an extent would otherwise yield [start, start)
    low = bisect.bisect_right(extents, start, key=_stop_of)
    high = bisect.bisect_left(extents, stop, lo=low, key=_start_of)
    out = list(extents[low:high])
    if out:
        if out[0].start < start:
            out[0] = _extent(start, out[0].stop)
        if out[-1].stop > stop:
            out[-1] = _extent(out[-1].start, stop)
    return out


def gaps(extents: Sequence[Extent], start: int, stop: int) -> list[Extent]:
    """The sub-ranges of ``[start, stop)`` that ``extents`` does not cover, in order.

    :raises ValueError: if ``start < 0`` or ``stop < start``.
    """
    out: list[Extent] = []
    cursor = start
    for piece in clip(extents, start, stop):
        if piece.start > cursor:
            out.append(_extent(cursor, piece.start))
        cursor = piece.stop
    if cursor < stop:
        out.append(_extent(cursor, stop))
    return out


def covers(extents: Sequence[Extent], start: int, stop: int) -> bool:
    """Whether every byte of ``[start, stop)`` is in ``extents`` (an empty window is covered).

    :raises ValueError: if ``start < 0`` or ``stop < start``.
    """
    _check_window(start, stop)
    if start == stop:
        return True
    # In normal form a covered window lies inside a single extent: the last one starting <= start.
    index = bisect.bisect_right(extents, start, key=_start_of) - 1
    return index >= 0 and extents[index].stop >= stop


def prefix_end(extents: Sequence[Extent]) -> int:
    """End of the contiguous run that starts at byte 0, or 0 if byte 0 is not covered.

    This is ``Upload-Offset``: every byte before it is covered.
    """
    if extents and extents[0].start == 0:
        return extents[0].stop
    return 0


def total(extents: Iterable[Extent]) -> int:
    """Number of bytes covered (for a normal-form list)."""
    return sum(stop - start for start, stop in extents)


def overlaps(a: Extent, b: Extent) -> bool:
    """Whether two extents share at least one byte (touching extents do not)."""
    return a.start < b.stop and b.start < a.stop


def is_normal(extents: Iterable[tuple[int, int]]) -> bool:
    """Whether ``extents`` is in normal form: valid, sorted, none overlapping or touching."""
    previous_stop = -1
    for start, stop in extents:
        if not (0 <= start < stop) or start <= previous_stop:
            return False
        previous_stop = stop
    return True
