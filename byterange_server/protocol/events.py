"""Events produced by the streaming patch decoders (sans-IO).

Every decoder in this package has the same two-method surface, after h11 and Werkzeug's
``sansio.multipart``::

    decoder.receive_data(chunk)   # bytes; b"" means "the body ended here"
    event = decoder.next_event()  # an Event, or NEED_DATA

and produces, for a well-formed patch document::

    (PartStart PartData* PartEnd)+ EndOfPatch

``PartData.data`` is a ``memoryview`` over an immutable ``bytes`` object, so it stays valid
after later calls and can be handed to ``os.pwrite`` without a copy. A decoder never holds a
whole part in memory: data is released as soon as it is known not to be framing.

``PartStart.header`` is the part's field block already interpreted
(:meth:`~.parts.PartHeader.from_fields`): where its bytes go, and the field lines themselves
(``header.fields``, ``header.get_all("repr-digest")``) for what else the part says. Werkzeug's
``sansio.multipart`` hands out ``File(name, filename, headers)`` the same way.

Errors are raised from ``next_event`` as :mod:`byterange_server.errors` exceptions:
``MalformedBodyError`` (400) for bad framing, ``LimitExceededError`` (400) for an over-long part
field block, the errors of :meth:`~.parts.PartHeader.from_fields` (``MissingRangeError``,
``UnsupportedRangeUnitError``: 422; ``MalformedHeaderError``: 400) for a field block that does
not say where the part goes, and ``TruncatedBodyError`` (400) when ``receive_data(b"")``
arrives inside a part or before the closing delimiter. After an error the decoder is in an
error state and raises again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from .parts import PartHeader

__all__ = ["NEED_DATA", "EndOfPatch", "Event", "NeedData", "PartData", "PartEnd", "PartStart"]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA` (for annotations: ``Event | NeedData``)."""

    NEED_DATA = "NEED_DATA"


#: Returned by ``next_event`` when more input is needed.
NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class PartStart:
    """The field block of a part has been read and says where the part goes; its body follows."""

    header: PartHeader


@dataclass(frozen=True)
class PartData:
    """Some bytes of the current part's body, in order."""

    data: memoryview


@dataclass(frozen=True)
class PartEnd:
    """The current part's body is finished (framing says so)."""


@dataclass(frozen=True)
class EndOfPatch:
    """The patch document is complete and well formed."""


Event = Union[PartStart, PartData, PartEnd, EndOfPatch]
