"""Property tests (hypothesis) for the three PATCH formats.

- Round trips: encode arbitrary parts, decode them whole, byte by byte and in random splits, and
  get the same parts back.
- Garbage: arbitrary bytes, token soups and mutated valid documents, fed whole and in random
  splits, either decode or raise a 4xx ``ByterangeError`` (``run`` checks that), and the outcome
  (parts, data, error class) does not depend on the split.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from decoding import Outcome
from decoding import bytewise
from decoding import run
from decoding import splits
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from byterange_server.protocol.binary import BinaryDecoder
from byterange_server.protocol.binary import encode_indeterminate_chunk
from byterange_server.protocol.binary import encode_indeterminate_end
from byterange_server.protocol.binary import encode_indeterminate_head
from byterange_server.protocol.binary import encode_known_length
from byterange_server.protocol.media import Decoder
from byterange_server.protocol.message import MessageDecoder
from byterange_server.protocol.message import encode_message
from byterange_server.protocol.multipart import MultipartDecoder
from byterange_server.protocol.multipart import MultipartEncoder
from byterange_server.protocol.multipart import encode_multipart

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# field-value octets (RFC 9110 §5.5) as latin-1 characters
VALUE_CHARS = "\t" + "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? "

FieldList = list[tuple[str, str]]

# The fields that say where a part goes are not left to chance: each part has one that any body
# fits (a decoder refuses a part without one), somewhere among arbitrary others.
_RANGE_FIELDS = {"content-range", "content-offset", "content-length"}
names = st.text(TCHARS, min_size=1, max_size=12).filter(lambda name: name.lower() not in _RANGE_FIELDS)
values = st.text(VALUE_CHARS, max_size=24)


@st.composite
def _part_fields(draw: st.DrawFn) -> FieldList:
    fields = draw(st.lists(st.tuples(names, values), max_size=4))
    at = draw(st.integers(0, len(fields)))
    return [*fields[:at], ("Content-Offset", "0"), *fields[at:]]


field_lists = _part_fields()
# Bodies rich in the bytes that framing is made of.
tricky = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--", b"x", b"\x00", b"\xff", b" "]),
    max_size=40,
).map(b"".join)
bodies = st.one_of(st.binary(max_size=300), tricky)
boundaries = st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))

quick = settings(deadline=None, max_examples=200)


def expect(parts: list[tuple[FieldList, bytes]]) -> list[tuple[tuple[tuple[str, str], ...], bytes]]:
    """What the decoders must give back: names lower-cased, OWS stripped from values."""
    return [(tuple((n.lower(), v.strip(" \t")) for n, v in fields), data) for fields, data in parts]


def check_round_trip(
    make: Callable[[], Decoder],
    raw: bytes,
    chunks: list[bytes],
    parts: list[tuple[FieldList, bytes]],
) -> None:
    for feed in ([raw], bytewise(raw), chunks):
        outcome = run(make(), feed)
        assert outcome.error is None, outcome.error
        assert outcome.complete and all(outcome.ended)
        assert outcome.parts == expect(parts)


@quick
@given(fields=field_lists, body=bodies, data=st.data())
def test_message_round_trip(fields: FieldList, body: bytes, data: st.DataObject) -> None:
    raw = encode_message(fields, body)
    check_round_trip(MessageDecoder, raw, data.draw(splits(raw)), [(fields, body)])


@st.composite
def multipart_documents(draw: st.DrawFn) -> tuple[str, list[tuple[FieldList, bytes]]]:
    """A boundary, and parts whose bodies are full of pieces of its delimiter (never all of it)."""
    boundary = draw(boundaries)
    delimiter = b"\r\n--" + boundary.encode()
    pieces = [delimiter[:k] for k in range(1, len(delimiter))] + [b"--" + boundary.encode()[:-1]]
    near = st.lists(st.sampled_from(pieces) | st.binary(max_size=3), max_size=12).map(b"".join)
    parts = draw(st.lists(st.tuples(field_lists, bodies | near), min_size=1, max_size=4))
    encoder = MultipartEncoder(boundary)
    for _, body in parts:
        try:
            encoder.check_data(body)
        except ValueError:
            assume(False)
    return boundary, parts


@quick
@given(document=multipart_documents(), data=st.data())
def test_multipart_round_trip(
    document: tuple[str, list[tuple[FieldList, bytes]]], data: st.DataObject
) -> None:
    boundary, parts = document
    raw = encode_multipart(parts, boundary)
    check_round_trip(
        lambda: MultipartDecoder(boundary), raw, data.draw(splits(raw)), parts
    )


@st.composite
def binary_documents(draw: st.DrawFn) -> tuple[bytes, list[tuple[FieldList, bytes]]]:
    """Known- and indeterminate-length messages, the latter with arbitrary chunking."""
    parts = draw(st.lists(st.tuples(field_lists, bodies), min_size=1, max_size=4))
    out = []
    for fields, body in parts:
        if draw(st.booleans()):
            out.append(encode_known_length(fields, body))
        else:
            out.append(encode_indeterminate_head(fields))
            out.extend(encode_indeterminate_chunk(c) for c in draw(splits(body)))
            out.append(encode_indeterminate_end())
    return b"".join(out), parts


@quick
@given(document=binary_documents(), data=st.data())
def test_binary_round_trip(
    document: tuple[bytes, list[tuple[FieldList, bytes]]], data: st.DataObject
) -> None:
    raw, parts = document
    check_round_trip(BinaryDecoder, raw, data.draw(splits(raw)), parts)


# -- garbage ------------------------------------------------------------------------------------

DECODERS: dict[str, Callable[[], Decoder]] = {
    "message": MessageDecoder,
    "message-small-cap": lambda: MessageDecoder(max_header_bytes=24),
    "multipart": lambda: MultipartDecoder("SEP"),
    "multipart-small-limits": lambda: MultipartDecoder("SEP", max_header_bytes=24, max_parts=3),
    "binary": BinaryDecoder,
    "binary-small-limits": lambda: BinaryDecoder(max_header_bytes=24, max_parts=3),
}

text_soup = st.lists(
    st.sampled_from(
        [b"--SEP", b"--", b"-", b"\r\n", b"\r", b"\n", b" ", b"\t", b"a: b", b"A:", b":", b"x"]
        + [b"\x00"]
    ),
    max_size=40,
).map(b"".join)
binary_soup = st.lists(
    st.sampled_from(
        [b"\x08", b"\x0a", b"\x00", b"\x01", b"\x02", b"a", b"b", b" ", b"\n", b"\x40", b"\x80"]
        + [b"\xc0", b"\x04wxyz"]
    ),
    max_size=40,
).map(b"".join)


@st.composite
def valid_documents(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.tuples(field_lists, st.binary(max_size=20)), min_size=1, max_size=3))
    kind = draw(st.sampled_from(["message", "multipart", "binary"]))
    if kind == "message":
        return encode_message(*parts[0])
    if kind == "multipart":
        return encode_multipart(parts, "SEP") if all(b"SEP" not in d for _, d in parts) else b""
    return b"".join(encode_known_length(f, d) for f, d in parts)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    """A document with a few bytes flipped, inserted or deleted, or cut short."""
    raw = bytearray(draw(documents))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(raw)))
        if op == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 4))]
        else:
            del raw[at:]
    return bytes(raw)


garbage = st.one_of(st.binary(max_size=200), text_soup, binary_soup, mutated(valid_documents()))


@pytest.mark.parametrize("make", DECODERS.values(), ids=DECODERS.keys())
@settings(deadline=None, max_examples=300)
@given(raw=garbage, data=st.data())
def test_garbage_is_a_4xx_and_split_invariant(
    make: Callable[[], Decoder], raw: bytes, data: st.DataObject
) -> None:
    expected: Outcome = run(make(), [raw])
    assert expected.complete or expected.error is not None
    assert run(make(), data.draw(splits(raw))).key() == expected.key()
