"""Test helpers shared by the decoder tests: drive a decoder, check the event contract, and feed
the same input three ways (whole, byte by byte, random splits), h11 ``t_body_reader`` style.

Imported as ``from decoding import ...``: ``tests/protocol`` has no ``__init__.py``, so pytest
puts this directory on ``sys.path``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

from hypothesis import strategies as st

from byterange_server.errors import ByterangeError
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import EndOfPatch
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.media import Decoder
from byterange_server.protocol.parts import Fields
from byterange_server.protocol.parts import PartHeader

#: A decoded part: its fields and its whole body.
Part = tuple[Fields, bytes]

#: A part field that any body fits (its bytes start at 0, its end is not said): the framing
#: tests put it before the fields they are about, since a decoder refuses a part that does not
#: say where it goes.
OFFSET_0 = ("content-offset", "0")
#: The same field line as ``message/byterange`` and ``multipart/byteranges`` write it.
OFFSET_0_LINE = b"Content-Offset: 0\r\n"


@dataclass
class Outcome:
    """What a decoder made of an input: parts (data joined), whether each ended, the error."""

    parts: list[Part] = field(default_factory=list)
    ended: list[bool] = field(default_factory=list)  # PartEnd seen, per part
    complete: bool = False  # EndOfPatch seen
    error: ByterangeError | None = None

    @property
    def error_type(self) -> type[ByterangeError] | None:
        return None if self.error is None else type(self.error)

    def key(self) -> tuple[object, ...]:
        """What must not depend on how the input was split."""
        return (self.parts, self.ended, self.complete, self.error_type)


def run(decoder: Decoder, chunks: Iterable[bytes], *, eof: bool = True) -> Outcome:
    """Feed ``chunks`` (then ``b""`` if ``eof``), draining events after each; check the contract.

    Checks: events follow ``(PartStart PartData* PartEnd)+ EndOfPatch``; ``PartStart.header``
    is what ``PartHeader.from_fields`` makes of its fields, if it has any; ``PartData.data`` is a non-empty
    memoryview over ``bytes``; errors are 4xx ``ByterangeError`` and the decoder then stays in
    the error state; after end of input the decoder never asks for more data.
    """
    outcome = Outcome()
    pieces: list[bytes] = []
    open_part = False

    def drain() -> bool:
        """Drain events; return True when decoding is over (EndOfPatch or error)."""
        nonlocal open_part, pieces
        while True:
            try:
                event = decoder.next_event()
            except ByterangeError as exc:
                assert 400 <= exc.status < 500, exc
                if open_part:
                    outcome.parts.append((outcome.parts.pop()[0], b"".join(pieces)))
                outcome.error = exc
                try:
                    decoder.next_event()
                except ByterangeError as again:
                    assert type(again) is type(exc)
                else:  # pragma: no cover - a contract violation
                    raise AssertionError("decoder left the error state")
                return True
            if event is NEED_DATA:
                return False
            if type(event) is PartStart:
                assert not open_part, "PartStart inside a part"
                fields = event.header.fields
                assert isinstance(fields, tuple)
                # A decoder's header is what its fields say (a raw part built from typed values
                # has no fields).
                assert not fields or event.header == PartHeader.from_fields(fields)
                for name, value in fields:
                    assert name == name.lower() and value == value.strip(" \t")
                outcome.parts.append((fields, b""))
                outcome.ended.append(False)
                open_part = True
                pieces = []
            elif type(event) is PartData:
                assert open_part, "PartData outside a part"
                data = event.data
                assert type(data) is memoryview and type(data.obj) is bytes
                assert len(data) > 0, "empty PartData"
                pieces.append(bytes(data))
            elif type(event) is PartEnd:
                assert open_part, "PartEnd outside a part"
                outcome.parts.append((outcome.parts.pop()[0], b"".join(pieces)))
                outcome.ended[-1] = True
                open_part = False
            else:
                assert type(event) is EndOfPatch, event
                assert not open_part and outcome.parts, "EndOfPatch inside a part or with none"
                outcome.complete = True
                assert type(decoder.next_event()) is EndOfPatch  # idempotent
                return True

    for chunk in chunks:
        if not chunk:
            continue
        decoder.receive_data(chunk)
        if drain():
            return outcome
    if eof:
        decoder.receive_data(b"")
        done = drain()
        assert done, "decoder asked for data after the end of input"
    elif open_part:
        outcome.parts.append((outcome.parts.pop()[0], b"".join(pieces)))
    return outcome


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def random_splits(data: bytes, rnd: random.Random) -> list[bytes]:
    count = rnd.randint(0, min(len(data), 12))
    return split_at(data, [rnd.randint(1, max(1, len(data) - 1)) for _ in range(count)])


def feed_three_ways(
    make: Callable[[], Decoder], data: bytes, *, seed: int = 0, eof: bool = True
) -> Outcome:
    """Decode ``data`` whole, byte by byte and in a few random splits; all must agree."""
    expected = run(make(), whole(data), eof=eof)
    assert run(make(), bytewise(data), eof=eof).key() == expected.key(), "byte by byte differs"
    rnd = random.Random(seed)
    for _ in range(3):
        chunks = random_splits(data, rnd)
        assert run(make(), chunks, eof=eof).key() == expected.key(), f"split {chunks!r} differs"
    return expected


def decode_all(make: Callable[[], Decoder], data: bytes) -> list[Part]:
    """The parts of a well-formed document (fed three ways); raises the decoder's error."""
    outcome = feed_three_ways(make, data)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.complete and all(outcome.ended)
    return outcome.parts


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Hypothesis strategy: ``data`` cut at arbitrary points."""
    if len(data) < 2:
        return [data]
    cuts = draw(st.lists(st.integers(1, len(data) - 1), max_size=min(20, len(data))))
    return split_at(data, cuts)
