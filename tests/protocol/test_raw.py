"""The raw decoder: a body whose one part the caller describes, with the patch decoders' events."""

from __future__ import annotations

import pytest
from decoding import feed_three_ways
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import EndOfPatch
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.ranges import ContentOffset
from byterange_server.protocol.raw import RawDecoder


def test_the_part_start_carries_the_header_it_was_given() -> None:
    header = PartHeader.from_range(ContentOffset(600), 4)
    decoder = RawDecoder(header)
    event = decoder.next_event()
    assert isinstance(event, PartStart) and event.header is header
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"wxyz")
    data = decoder.next_event()
    assert isinstance(data, PartData) and bytes(data.data) == b"wxyz"
    decoder.receive_data(b"")
    assert decoder.next_event() == PartEnd()
    assert decoder.next_event() == EndOfPatch()
    assert decoder.next_event() == EndOfPatch()


@given(st.binary(max_size=200))
def test_a_body_decodes_the_same_whole_bytewise_and_split(data: bytes) -> None:
    header = PartHeader.from_request_headers(f"bytes 0-{max(len(data), 1) - 1}/*", None)
    outcome = feed_three_ways(lambda: RawDecoder(header), data)
    assert outcome.parts == [(header.fields, data)]
    assert outcome.complete and outcome.ended == [True] and outcome.error is None


def test_data_after_the_end_is_a_caller_bug() -> None:
    decoder = RawDecoder(PartHeader.whole(0))
    decoder.receive_data(b"")
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"x")
