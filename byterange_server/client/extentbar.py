"""The extent map as one line of a terminal: committed ranges, ranges in flight, holes.

``render_bar(length, committed, in_flight, width)`` cuts ``[0, length)`` into ``width`` cells
and draws each one by what it holds::

    █  every byte committed          ▒  some byte in flight, not all committed
    ▓  partly committed, no writer   ░  a hole: nothing committed, nothing in flight

With ``ascii=True`` the cells are ``#``, ``~``, ``+`` and ``.``. A range too small for a cell of
its own still marks the cell it falls in (a one-byte hole in a committed terabyte shows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence

from .. import extents
from ..extents import Extent
from .engine import Engine
from .errors import ClientError
from .transport import Timeouts

__all__ = ["CELLS", "fetch_in_flight", "render_bar"]

#: (committed, in flight, partly committed, hole)
CELLS = {"unicode": ("█", "▒", "▓", "░"), "ascii": ("#", "~", "+", ".")}


def render_bar(
    length: int,
    committed: Sequence[Extent],
    in_flight: Sequence[Extent] = (),
    width: int = 60,
    *,
    ascii: bool = False,
) -> str:
    """One line of ``width`` cells picturing ``[0, length)``; ``committed`` and ``in_flight`` are
    normal extent lists (half-open). A length of 0 is drawn as committed (nothing is missing).

    :raises ValueError: ``width`` < 1 or ``length`` < 0.
    """
    if width < 1 or length < 0:
        raise ValueError(f"cannot draw a bar of width {width} for length {length}")
    full, flying, partial, hole = CELLS["ascii" if ascii else "unicode"]
    if length == 0:
        return full * width
    cells = []
    for index in range(width):
        # Cell i covers [floor(i*L/w), floor((i+1)*L/w)), at least one byte when L < w.
        start = index * length // width
        stop = max((index + 1) * length // width, start + 1)
        stop = min(stop, length)
        if start >= length:
            start = length - 1
        done = extents.total(extents.clip(committed, start, stop))
        if done == stop - start:
            cells.append(full)
        elif extents.clip(in_flight, start, stop):
            cells.append(flying)
        elif done:
            cells.append(partial)
        else:
            cells.append(hole)
    return "".join(cells)


def fetch_in_flight(
    document_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
) -> list[Extent] | None:
    """The ranges in flight, from the first page of a resource's committed-ranges document (its
    ``in_flight`` list covers the whole resource on the first page); None when the server does
    not say (an older server) or the document cannot be read -- the bar then shows no writers."""
    engine = Engine.connect(parallel=1, timeouts=timeouts, headers=headers)
    with engine.transport:
        try:
            response = engine.request("GET", document_url)
        except ClientError:
            return None
        try:
            if response.status != 200:
                return None
            listed = json.loads(response.data).get("in_flight")
            if not isinstance(listed, list):
                return None
            return extents.normalize((int(first), int(last) + 1) for first, last in listed)
        except (ValueError, TypeError, AttributeError):
            return None
        finally:
            response.release_conn()
