"""The tus header parsers (protocol/tus.py): examples, strictness and properties."""

from __future__ import annotations

import base64
import hashlib

import pytest
from decoding import bytewise
from decoding import feed_three_ways
from decoding import run
from decoding import whole
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.errors import InvalidConcatError
from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import ProtocolError
from byterange_server.errors import UnsupportedChecksumError
from byterange_server.errors import UnsupportedVersionError
from byterange_server.protocol.digests import CHECKSUM_ALGORITHMS
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.ranges import ContentOffset
from byterange_server.protocol.raw import RawDecoder
from byterange_server.protocol.tus import MAX_METADATA_LENGTH
from byterange_server.protocol.tus import ConcatFinal
from byterange_server.protocol.tus import ConcatPartial
from byterange_server.protocol.tus import check_tus_resumable
from byterange_server.protocol.tus import format_metadata
from byterange_server.protocol.tus import format_upload_concat
from byterange_server.protocol.tus import parse_defer_length
from byterange_server.protocol.tus import parse_upload_checksum
from byterange_server.protocol.tus import parse_upload_concat
from byterange_server.protocol.tus import parse_upload_metadata

# Latin-1 text: what a WSGI server hands over for a header value.
header_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=80)
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=","),
    min_size=1,
    max_size=12,
)


# -- Tus-Resumable, Upload-Defer-Length --------------------------------------------------------------


def test_only_version_1_0_0_is_spoken():
    check_tus_resumable("1.0.0")
    check_tus_resumable(" 1.0.0\t")
    for value in ("1.0", "0.2.2", "1.0.0,0.2.2", "", "1.0.0.0", "v1.0.0"):
        with pytest.raises(UnsupportedVersionError) as caught:
            check_tus_resumable(value)
        assert caught.value.status == 412
        assert caught.value.headers == {"Tus-Version": "1.0.0"}


def test_defer_length_is_exactly_1():
    parse_defer_length("1")
    for value in ("0", "01", "true", "", "1 1", "2"):
        with pytest.raises(MalformedHeaderError):
            parse_defer_length(value)


# -- Upload-Metadata -----------------------------------------------------------------------------------


def test_metadata_examples():
    assert parse_upload_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential") == [
        ("filename", b"world_domination_plan.pdf"),
        ("is_confidential", b""),
    ]
    assert parse_upload_metadata("empty ,x") == [("empty", b""), ("x", b"")]
    assert parse_upload_metadata("a YQ==, b Yg==") == [("a", b"a"), ("b", b"b")]
    assert parse_upload_metadata("") == []
    assert parse_upload_metadata("  ") == []


@pytest.mark.parametrize(
    "value",
    [
        ",",
        "a YQ==,",
        ",a YQ==",
        "a YQ==,,b",
        "a YQ==,a Yg==",  # keys are unique
        "a YQ",  # unpadded
        "a YQ=",  # wrong padding
        "a Y Q==",
        "a  YQ==",  # two spaces
        "a YQ==\r\nX-Injected: 1",
        "a\tb YQ==",
        "k\x00 YQ==",
        "k\xe9 YQ==",
        "a -_8=",  # base64url is not base64
        "a " + "QUFB" * (MAX_METADATA_LENGTH // 4),
    ],
)
def test_malformed_metadata(value):
    with pytest.raises(MalformedHeaderError) as caught:
        parse_upload_metadata(value)
    assert caught.value.status == 400


@given(st.dictionaries(keys, st.binary(max_size=40), max_size=6))
def test_metadata_round_trip(mapping):
    pairs = list(mapping.items())
    assert parse_upload_metadata(format_metadata(pairs)) == pairs


@given(header_text)
def test_metadata_parser_accepts_only_what_it_can_echo(value):
    """Whatever is accepted is safe to reflect: printable ASCII, spaces and tabs only."""
    try:
        pairs = parse_upload_metadata(value)
    except MalformedHeaderError as error:
        assert error.status == 400
        return
    assert all(" " <= char <= "~" or char == "\t" for char in value.strip(" \t"))
    assert len({key for key, _ in pairs}) == len(pairs)


# -- Upload-Checksum -----------------------------------------------------------------------------------


def test_checksum_spec_example():
    assert parse_upload_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=") == (
        "sha1",
        hashlib.sha1(b"hello world").digest(),
    )


@given(st.sampled_from(sorted(CHECKSUM_ALGORITHMS)), st.binary(max_size=64))
def test_checksum_round_trip(algorithm, data):
    digest = hashlib.new(algorithm, data).digest()
    value = f"{algorithm} {base64.b64encode(digest).decode()}"
    assert parse_upload_checksum(value) == (algorithm, digest)


@pytest.mark.parametrize("value", ["crc32 AAAAAA==", "sha3-512 AAAA", "blake2b AAAA", "sha-256 AAAA"])
def test_unknown_checksum_algorithm_is_its_own_400(value):
    with pytest.raises(UnsupportedChecksumError) as caught:
        parse_upload_checksum(value)
    assert caught.value.status == 400
    assert caught.value.extra["supported"] == list(CHECKSUM_ALGORITHMS)


@pytest.mark.parametrize(
    "value",
    ["", "sha1", "sha1 ", "SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "sha1  Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
     "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0", "sha1 AAAA", "md5 Kq5sNclPz7QV2+lfQIuc6R7oRu0="],
)
def test_malformed_checksum(value):
    with pytest.raises(MalformedHeaderError):
        parse_upload_checksum(value)


@given(header_text)
def test_checksum_parser_raises_only_400s(value):
    try:
        algorithm, digest = parse_upload_checksum(value)
    except ProtocolError as error:
        assert error.status == 400
        return
    assert len(digest) == CHECKSUM_ALGORITHMS[algorithm]().digest_size


# -- Upload-Concat -------------------------------------------------------------------------------------


def test_concat_examples():
    assert parse_upload_concat("partial") == ConcatPartial()
    assert parse_upload_concat("final;/files/a http://x/files/b") == ConcatFinal(("/files/a", "http://x/files/b"))
    assert parse_upload_concat("final;/files/a /files/a") == ConcatFinal(("/files/a", "/files/a"))


@pytest.mark.parametrize(
    "value", ["", "Partial", "final", "final;", "final; /a", "final;/a\t/b", "final;/a  /b", "final:/a",
              "partial;/a", "final;/a\x00"],
)
def test_malformed_concat(value):
    with pytest.raises(InvalidConcatError) as caught:
        parse_upload_concat(value)
    assert caught.value.status == 400


@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
                min_size=1, max_size=5))
def test_concat_round_trip(urls):
    final = ConcatFinal(tuple(urls))
    assert parse_upload_concat(format_upload_concat(final)) == final


# Near misses as well as noise: a kind, a separator and URLs, each valid or not quite.
_ows = st.sampled_from(["", " ", "\t "])
concat_text = st.one_of(header_text, st.builds(
    lambda head, kind, separator, joiner, urls, tail: head + kind + separator + joiner.join(urls) + tail,
    _ows, st.sampled_from(["final", "partial", "Final", ""]), st.sampled_from([";", "", ":", "; "]),
    st.sampled_from([" ", "  ", "\t"]),
    st.lists(st.sampled_from(["/files/a", "http://x/b", "", "/\x00", "/é", "/\x7f"]), max_size=3), _ows,
))


@given(concat_text)
def test_concat_parser_raises_only_400s(value):
    """A refusal is a 400; what is accepted has one spelling, the one the server prints."""
    try:
        concat = parse_upload_concat(value)
    except InvalidConcatError as error:
        assert error.status == 400
        return
    assert format_upload_concat(concat) == value.strip(" \t")


# -- the PATCH body: one Content-Offset part, however the bytes arrive -----------------------------------


@given(st.integers(min_value=0, max_value=10**12), st.binary(min_size=1, max_size=300))
def test_tus_append_body_decodes_the_same_whole_bytewise_and_split(offset, data):
    # The part as uploads/tus.py builds it: the offset and the Content-Length, no fields.
    header = PartHeader.from_range(ContentOffset(offset), len(data))
    outcome = feed_three_ways(lambda: RawDecoder(header), data)
    assert outcome.parts == [((), data)]
    assert outcome.complete and outcome.error is None
    assert (header.start, header.stop) == (offset, offset + len(data))
    # The same through run() directly, one byte at a time and whole.
    assert run(RawDecoder(header), bytewise(data)).key() == run(RawDecoder(header), whole(data)).key()
