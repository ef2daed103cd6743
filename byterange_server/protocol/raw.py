"""A decoder for a request whose range is in the request headers (partial ``PUT``).

It yields the same events as the patch decoders, so the service has one write path:
``PartStart(fields)``, the body as ``PartData``, ``PartEnd``, ``EndOfPatch``.
"""

from __future__ import annotations

from collections import deque

from .events import NEED_DATA
from .events import EndOfPatch
from .events import Event
from .events import Fields
from .events import PartData
from .events import PartEnd
from .events import PartStart
from .events import _NeedData


class RawDecoder:
    """Wraps a raw body as one part with the given fields."""

    def __init__(self, fields: Fields) -> None:
        self._pending: deque[Event] = deque([PartStart(fields)])
        self._ended = False

    def receive_data(self, data: bytes) -> None:
        if self._ended:
            raise RuntimeError("receive_data after end of input")
        if data:
            self._pending.append(PartData(memoryview(data)))
        else:
            self._ended = True
            self._pending.extend((PartEnd(), EndOfPatch()))

    def next_event(self) -> Event | _NeedData:
        if self._pending:
            return self._pending.popleft()
        # After the end, EndOfPatch again: the same contract as the other decoders.
        return EndOfPatch() if self._ended else NEED_DATA
