"""A decoder for a request body that is one part whose place is known beforehand.

A partial ``PUT`` (its ``Content-Range`` request header), a tus or IETF append (its offset) or a
whole ``PUT``: the caller builds the :class:`~.parts.PartHeader`, and the decoder yields the same
events as the patch decoders, so the service has one write path: ``PartStart(header)``, the
body as ``PartData``, ``PartEnd``, ``EndOfPatch``.
"""

from __future__ import annotations

from collections import deque

from .events import NEED_DATA
from .events import EndOfPatch
from .events import Event
from .events import NeedData
from .events import PartData
from .events import PartEnd
from .events import PartStart
from .parts import PartHeader


class RawDecoder:
    """Wraps a raw body as the one part ``header`` describes."""

    def __init__(self, header: PartHeader) -> None:
        self._pending: deque[Event] = deque([PartStart(header)])
        self._ended = False

    def receive_data(self, data: bytes) -> None:
        if self._ended:
            raise RuntimeError("receive_data after end of input")
        if data:
            self._pending.append(PartData(memoryview(data)))
        else:
            self._ended = True
            self._pending.extend((PartEnd(), EndOfPatch()))

    def next_event(self) -> Event | NeedData:
        if self._pending:
            return self._pending.popleft()
        # After the end, EndOfPatch again: the same contract as the other decoders.
        return EndOfPatch() if self._ended else NEED_DATA
