"""ComposedObject: reads of a final concatenation are reads of its partials, at any offset."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.errors import StorageError
from byterange_server.storage import MemoryStorage
from byterange_server.storage.base import StoredObject
from byterange_server.storage.composed import ComposedObject
from byterange_server.storage.composed import Piece


def compose(sources: list[bytes], order: list[int]) -> tuple[ComposedObject, bytes]:
    """A final made of ``sources`` in ``order`` (indexes may repeat), and its expected bytes."""
    storage = MemoryStorage()
    ids = []
    for data in sources:
        resource_id = secrets.token_urlsafe(16)
        storage.create(resource_id)
        with storage.open(resource_id) as stored:
            stored.write_at(0, data)
        ids.append(resource_id)
    opened: dict[str, StoredObject] = {}
    pieces, objects, start = [], [], 0
    for position, index in enumerate(order):
        resource_id = ids[index]
        opened.setdefault(resource_id, storage.open(resource_id))
        pieces.append(Piece(position, resource_id, start, len(sources[index])))
        objects.append(opened[resource_id])
        start += len(sources[index])
    return ComposedObject(pieces, objects), b"".join(sources[index] for index in order)


@st.composite
def finals(draw):
    sources = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
    order = draw(st.lists(st.integers(0, len(sources) - 1), min_size=1, max_size=8))
    return sources, order


@given(finals(), st.data())
def test_reads_at_any_offset_and_size_match_the_concatenation(final, data):
    sources, order = final
    composed, expected = compose(sources, order)
    with composed:
        for _ in range(5):
            offset = data.draw(st.integers(0, len(expected) + 3))
            size = data.draw(st.integers(0, len(expected) + 3))
            assert composed.read_at(offset, size) == expected[offset : offset + size]
            buffer = bytearray(size)
            count = composed.readinto_at(offset, memoryview(buffer))
            assert bytes(buffer[:count]) == expected[offset : offset + size]


def test_read_only_and_closing():
    composed, expected = compose([b"abc", b"de"], [0, 1, 0])
    assert composed.read_at(0, 100) == b"abcdeabc" == expected
    assert composed.fileno() is None
    composed.sync()
    with pytest.raises(StorageError):
        composed.write_at(0, b"x")
    with pytest.raises(ValueError):
        composed.read_at(0, -1)
    composed.close()
    composed.close()  # idempotent, even with a source used twice
    with pytest.raises(ValueError):
        composed.read_at(0, 1)
