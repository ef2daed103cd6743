"""The strict chunked decoder (byterange_server/protocol/chunked.py): the same result however the
bytes are split, and the data before a framing error is never lost."""

from __future__ import annotations

import pytest

from byterange_server.protocol.chunked import BodyFramingError
from byterange_server.protocol.chunked import ChunkedDecoder

VALID = b"5\r\nhello\r\n6;ext=1;q=\"a b\"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"


def _feed_all(data: bytes, step: int) -> tuple[ChunkedDecoder, bytes]:
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    return decoder, out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_the_decoder_gives_the_same_result_however_the_bytes_are_split(step):
    decoder, out = _feed_all(VALID, step)
    assert out == b"hello world"
    assert decoder.done and decoder.error is None
    assert decoder.trailers == b"X-Sum: 1"
    assert decoder.rest == b"NEXT"


def test_leading_zeros_and_uppercase_hex_are_sizes():
    decoder, out = _feed_all(b"000A\r\n0123456789\r\n00\r\n\r\n", 4)
    assert out == b"0123456789" and decoder.done


@pytest.mark.parametrize(
    ("body", "before"),
    [
        (b"0x5\r\nabcde\r\n", b""),
        (b"-5\r\nabcde\r\n", b""),
        (b" 5\r\nabcde\r\n", b""),
        (b"5 \r\nabcde\r\n", b""),
        (b"\r\nabcde\r\n", b""),
        (b"5\nabcde\r\n", b""),
        (b"5\r\nabcdeXY", b"abcde"),
        (b"5\r\nabcde\n5\r\n", b"abcde"),
        (b"3\r\nabc\r\n5;\r\nabcde\r\n", b"abc"),
        (b"3\r\nabc\r\n5;a=\r\nabcde\r\n", b"abc"),
        (b"10000000000000000\r\n", b""),
        (b"0" * 9000 + b"5\r\n", b""),
        (b"2\r\nab\r\n0\r\nbad\rtrailer\r\n\r\n", b"ab"),
        (b"2\r\nab\r\n0\r\nbad\ntrailer\r\n\r\n", b"ab"),
    ],
)
@pytest.mark.parametrize("step", [1, 4096])
def test_malformed_framing_is_an_error_after_the_data_before_it(body, before, step):
    decoder, out = _feed_all(body, step)
    assert out == before
    assert isinstance(decoder.error, BodyFramingError)
    assert not decoder.done
    assert decoder.feed(b"5\r\nmore!\r\n") == b""  # nothing is decoded after the break


def test_a_partial_chunk_is_returned_as_it_arrives():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"10\r\n0123") == b"0123"
    assert decoder.feed(b"456789abcdef") == b"456789abcdef"
    assert decoder.feed(b"\r") == b"" and decoder.error is None
    assert decoder.feed(b"\n0\r\n\r\n") == b"" and decoder.done
