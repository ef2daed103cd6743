"""Media types: the strict ``Content-Type`` parser and the choice of PATCH decoder."""

from __future__ import annotations

import pytest

from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import UnsupportedMediaTypeError
from byterange_server.protocol.binary import BinaryDecoder
from byterange_server.protocol.media import PATCH_MEDIA_TYPES
from byterange_server.protocol.media import decoder_for
from byterange_server.protocol.media import parse_media_type
from byterange_server.protocol.message import MessageDecoder
from byterange_server.protocol.multipart import MultipartDecoder

ACCEPT_PATCH = "message/byterange, multipart/byteranges, application/byteranges"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("message/byterange", ("message/byterange", {}), id="bare"),
        pytest.param("Message/ByteRange", ("message/byterange", {}), id="type-lower-cased"),
        pytest.param(
            "multipart/byteranges; boundary=SEP",
            ("multipart/byteranges", {"boundary": "SEP"}),
            id="token-param",
        ),
        pytest.param(
            "multipart/byteranges;BOUNDARY=SeP",
            ("multipart/byteranges", {"boundary": "SeP"}),
            id="name-lowered-value-kept",
        ),
        pytest.param(
            'multipart/byteranges; boundary="a b:c"',
            ("multipart/byteranges", {"boundary": "a b:c"}),
            id="quoted-string",
        ),
        pytest.param(
            r'text/plain; a="x\"y\\z\q"', ("text/plain", {"a": 'x"y\\zq'}), id="quoted-pairs"
        ),
        pytest.param('text/plain; a=""', ("text/plain", {"a": ""}), id="empty-quoted-string"),
        pytest.param(
            "text/plain \t; \tcharset=utf-8 ;format=flowed",
            ("text/plain", {"charset": "utf-8", "format": "flowed"}),
            id="ows-around-semicolons",
        ),
        pytest.param("  text/plain  ", ("text/plain", {}), id="ows-around-value"),
        pytest.param("text/plain;", ("text/plain", {}), id="empty-parameter-trailing"),
        pytest.param("text/plain;;a=b; ;", ("text/plain", {"a": "b"}), id="empty-parameters"),
        pytest.param("a/b; x=\"caf\xe9\"", ("a/b", {"x": "caf\xe9"}), id="obs-text-in-quoted"),
        pytest.param("!#$%&'*+-.^_`|~9/z", ("!#$%&'*+-.^_`|~9/z", {}), id="tchars"),
    ],
)
def test_parse_media_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_media_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("message", id="no-slash"),
        pytest.param("message/", id="no-subtype"),
        pytest.param("/byterange", id="no-type"),
        pytest.param("a/b/c", id="two-slashes"),
        pytest.param("a /b", id="space-before-slash"),
        pytest.param("a/b c", id="space-in-subtype"),
        pytest.param("a/b; c", id="param-without-value"),
        pytest.param("a/b; c=", id="empty-value"),
        pytest.param("a/b; c =d", id="space-before-equals"),
        pytest.param("a/b; c= d", id="space-after-equals"),
        pytest.param("a/b; c=d e", id="space-in-token-value"),
        pytest.param('a/b; c="d', id="unterminated-quote"),
        pytest.param('a/b; c="d"e', id="junk-after-quote"),
        pytest.param('a/b; c="d\x00"', id="control-in-quoted"),
        pytest.param('a/b; c="d\\', id="dangling-backslash"),
        pytest.param("a/b; c=d; c=e", id="duplicate-parameter"),
        pytest.param("a/b; C=d; c=e", id="duplicate-parameter-case"),
        pytest.param("a/b, c/d", id="list"),
        pytest.param("a/b; c=\u20ac", id="non-latin-1"),
        pytest.param("t\u00e9xt/plain", id="non-ascii-type"),
    ],
)
def test_parse_media_type_rejects(value: str) -> None:
    with pytest.raises(MalformedHeaderError) as info:
        parse_media_type(value)
    assert info.value.status == 400


def test_patch_media_types() -> None:
    assert ", ".join(PATCH_MEDIA_TYPES) == ACCEPT_PATCH


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("message/byterange", MessageDecoder),
        ("Message/ByteRange; charset=ignored", MessageDecoder),
        ("multipart/byteranges; boundary=SEP", MultipartDecoder),
        ('multipart/byteranges; boundary="SEP"', MultipartDecoder),
        ("application/byteranges", BinaryDecoder),
    ],
)
def test_decoder_for(content_type: str, kind: type) -> None:
    assert type(decoder_for(content_type)) is kind


def test_decoder_for_passes_limits_and_boundary() -> None:
    decoder = decoder_for(
        'Multipart/ByteRanges; Boundary="a b"', max_header_bytes=100, max_parts=7
    )
    assert isinstance(decoder, MultipartDecoder)
    assert (decoder.boundary, decoder.max_header_bytes, decoder.max_parts) == ("a b", 100, 7)
    message = decoder_for("message/byterange", max_header_bytes=55)
    assert isinstance(message, MessageDecoder) and message.max_header_bytes == 55
    binary = decoder_for("application/byteranges", max_header_bytes=66, max_parts=3)
    assert isinstance(binary, BinaryDecoder)
    assert (binary.max_header_bytes, binary.max_parts) == (66, 3)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("  ", id="blank"),
        pytest.param("application/octet-stream", id="octet-stream"),
        pytest.param("text/plain", id="text"),
        pytest.param("message/byteranges", id="plural-message-type"),
        pytest.param("multipart/x-byteranges; boundary=SEP", id="legacy-x-byteranges"),
        pytest.param("multipart/form-data; boundary=SEP", id="form-data"),
        pytest.param("message/byterange+bhttp", id="old-binary-name"),
        pytest.param("application/offset+octet-stream", id="tus"),
    ],
)
def test_decoder_for_unsupported(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        decoder_for(content_type)
    assert info.value.status == 415
    assert info.value.headers == {"Accept-Patch": ACCEPT_PATCH}


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("multipart/byteranges", id="no-boundary"),
        pytest.param("multipart/byteranges; charset=utf-8", id="other-param-only"),
        pytest.param('multipart/byteranges; boundary=""', id="empty-boundary"),
        pytest.param("multipart/byteranges; boundary=" + "x" * 71, id="boundary-over-70"),
        pytest.param(
            'multipart/byteranges; boundary="ends in space "', id="boundary-trailing-space"
        ),
        pytest.param('multipart/byteranges; boundary="a;b"', id="boundary-bad-char"),
        pytest.param("multipart/byteranges; boundary=a; boundary=b", id="boundary-twice"),
        pytest.param("multipart/byteranges boundary=a", id="malformed"),
        pytest.param("byteranges", id="not-a-media-type"),
    ],
)
def test_decoder_for_bad_header(content_type: str) -> None:
    with pytest.raises(MalformedHeaderError) as info:
        decoder_for(content_type)
    assert info.value.status == 400
