"""Tests for :mod:`byterange_server.protocol.headers`: ``Prefer``, digests and
``Content-Disposition``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.headers import SUPPORTED_DIGESTS
from byterange_server.protocol.headers import format_content_disposition
from byterange_server.protocol.headers import format_digest
from byterange_server.protocol.headers import parse_content_disposition_filename
from byterange_server.protocol.headers import parse_digest_field
from byterange_server.protocol.headers import parse_prefer
from byterange_server.protocol.headers import pick_digest
from byterange_server.protocol.headers import transaction_preference

P = pytest.param

# -- Prefer --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("transaction=atomic", {"transaction": "atomic"}, id="one"),
        P("respond-async", {"respond-async": None}, id="no-value"),
        P("respond-async, wait=100", {"respond-async": None, "wait": "100"}, id="two"),
        P("Transaction=atomic", {"transaction": "atomic"}, id="name-case-insensitive"),
        P("transaction=ATOMIC", {"transaction": "ATOMIC"}, id="value-kept-as-sent"),
        P('transaction="atomic"', {"transaction": "atomic"}, id="quoted"),
        P('foo="a,b;c\\"d"', {"foo": 'a,b;c"d'}, id="quoted-specials"),
        P("transaction = atomic", {"transaction": "atomic"}, id="bws-around-equals"),
        P("transaction=atomic; foo=bar;baz", {"transaction": "atomic"}, id="params-ignored"),
        P("transaction=atomic;;", {"transaction": "atomic"}, id="empty-params"),
        P('transaction=atomic; x="1,2"', {"transaction": "atomic"}, id="param-with-comma"),
        P("transaction=atomic, transaction=persist", {"transaction": "atomic"},
          id="first-wins"),
        P('foo=""', {"foo": None}, id="empty-quoted-is-no-value"),
        P("foo=", {"foo": None}, id="empty-is-no-value"),
        P(",, foo ,", {"foo": None}, id="empty-elements"),
        P("", {}, id="empty"),
        P(["wait=10", "transaction=atomic, wait=20"], {"wait": "10", "transaction": "atomic"},
          id="several-field-lines"),
        P([], {}, id="no-field-lines"),
    ],
)
def test_parse_prefer(raw, expected):
    assert parse_prefer(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("transaction atomic", id="missing-equals"),
        P("=atomic", id="no-name"),
        P('foo="unterminated', id="unterminated-quote"),
        P("foo=a b", id="space-in-value"),
        P("foo=a=b", id="two-equals"),
        P("fóo=1", id="non-token-name"),
        P("foo;=1", id="param-without-name"),
        P(["ok", "bad bad"], id="bad-second-line"),
    ],
)
def test_parse_prefer_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_prefer(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("", "persist", id="absent"),
        P("transaction=atomic", "atomic", id="atomic"),
        P("transaction=Atomic", "atomic", id="atomic-case"),
        P("transaction=persist", "persist", id="persist"),
        P("transaction=bogus", "persist", id="unknown"),
        P("transaction", "persist", id="no-value"),
        P("respond-async", "persist", id="other-preference"),
    ],
)
def test_transaction_preference(raw, expected):
    assert transaction_preference(parse_prefer(raw)) == expected


# -- digests -------------------------------------------------------------------------------------

EMPTY_SHA256 = base64.b64decode("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
WXYZ_SHA256 = hashlib.sha256(b"wxyz").digest()
WXYZ_SHA512 = hashlib.sha512(b"wxyz").digest()


def b64(data):
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", {"sha-256": EMPTY_SHA256},
          id="rfc9530-empty-vector"),
        P(f"sha-256=:{b64(WXYZ_SHA256)}:, sha-512=:{b64(WXYZ_SHA512)}:",
          {"sha-256": WXYZ_SHA256, "sha-512": WXYZ_SHA512}, id="two"),
        P("md5=:AAAA:", {"md5": b"\0\0\0"}, id="unsupported-any-length"),
        P(f"sha-256=:{b64(WXYZ_SHA256)}:;foo=1", {"sha-256": WXYZ_SHA256},
          id="params-ignored"),
        P("", {}, id="empty"),
    ],
)
def test_parse_digest_field(raw, expected):
    assert parse_digest_field(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("sha-256", id="bare-key"),
        P("sha-256=abc", id="token-member"),
        P('sha-256="abc"', id="string-member"),
        P("sha-256=1", id="integer-member"),
        P("sha-256=(:AAAA:)", id="inner-list"),
        P("sha-256=:AAAA:", id="sha-256-wrong-length"),
        P("sha-256=:not base64:", id="bad-base64"),
        P("SHA-256=:AAAA:", id="upper-case-key"),
        P("sha-256=:AAAA:,", id="trailing-comma"),
        P("sha-256=:AAAA:é", id="non-ascii"),
    ],
)
def test_parse_digest_field_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_digest_field(raw, field="Repr-Digest")


@pytest.mark.parametrize(
    ("parsed", "expected"),
    [
        P({}, None, id="empty"),
        P({"md5": b"x", "crc32c": b"y"}, None, id="none-supported"),
        P({"md5": b"x", "sha-256": b"a"}, ("sha-256", b"a"), id="sha-256"),
        P({"sha-256": b"a", "sha-512": b"b"}, ("sha-512", b"b"), id="strongest"),
    ],
)
def test_pick_digest(parsed, expected):
    assert pick_digest(parsed) == expected


def test_format_digest_round_trip():
    text = format_digest("sha-256", hashlib.sha256(b"wxyz").digest())
    assert text == "sha-256=:F/SI92jbj756QIqUaSA8YeA7X+QyFLlaAOfAxS0v2TM=:"
    assert parse_digest_field(text) == {"sha-256": WXYZ_SHA256}


def test_supported_digests_are_hash_constructors():
    assert SUPPORTED_DIGESTS["sha-256"](b"").digest() == EMPTY_SHA256
    assert set(SUPPORTED_DIGESTS) == {"sha-256", "sha-512"}


# -- Content-Disposition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P('attachment; filename="x.txt"', "x.txt", id="quoted"),
        P("attachment; filename=x.txt", "x.txt", id="token"),
        P("inline;filename=x.txt", "x.txt", id="inline-no-space"),
        P('ATTACHMENT; FileName="x.txt"', "x.txt", id="case-insensitive"),
        P('attachment; filename="a\\"b\\\\c"', 'a"b\\c', id="quoted-pairs"),
        P("attachment; filename*=UTF-8''na%C3%AFve.txt", "naïve.txt", id="ext-utf8"),
        P("attachment; filename*=utf-8'en'%E2%82%AC.txt", "€.txt", id="ext-language"),
        P("attachment; filename*=ISO-8859-1''%E9.txt", "é.txt", id="ext-latin1"),
        P("attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC.txt", "€.txt",
          id="ext-preferred-after"),
        P("attachment; filename*=UTF-8''%E2%82%AC.txt; filename=\"fallback.txt\"", "€.txt",
          id="ext-preferred-before"),
        P("attachment; filename=\"fallback.txt\"; filename*=KOI8-R''%C1", "fallback.txt",
          id="unknown-charset-falls-back"),
        P("attachment; filename*=KOI8-R''%C1", None, id="unknown-charset-only"),
        P('attachment; filename="caf\xc3\xa9.txt"', "café.txt", id="raw-utf8-octets"),
        P('attachment; filename="caf\xe9.txt"', "café.txt", id="raw-latin1-octets"),
        P("attachment", None, id="no-filename"),
        P("attachment; size=10", None, id="other-params"),
        P('attachment; filename=""', None, id="empty-filename"),
        P('attachment; filename="../../etc/passwd"', "../../etc/passwd", id="path-kept"),
    ],
)
def test_parse_content_disposition_filename(raw, expected):
    assert parse_content_disposition_filename(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P('; filename="x"', id="no-type"),
        P('attachment filename="x"', id="missing-semicolon"),
        P("attachment;", id="trailing-semicolon"),
        P("attachment; filename", id="param-without-value"),
        P('attachment; filename="x"; filename="y"', id="repeated-param"),
        P('attachment; filename="x"; FILENAME="y"', id="repeated-param-case"),
        P('attachment; filename="x', id="unterminated-quote"),
        P("attachment; filename=a b", id="space-in-token"),
        P("attachment; filename*=\"UTF-8''x\"", id="quoted-ext-value"),
        P("attachment; filename*=x.txt", id="ext-without-charset"),
        P("attachment; filename*=UTF-8''%E2%82", id="ext-truncated-utf8"),
        P("attachment; filename*=UTF-8''%ZZ", id="ext-bad-escape"),
        P("attachment; filename*=UTF-8''%00x", id="ext-nul"),
        P('attachment; filename="a\tb"', id="tab"),
    ],
)
def test_parse_content_disposition_filename_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_content_disposition_filename(raw)


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        P("x.txt", 'attachment; filename="x.txt"', id="ascii"),
        P('a"b\\c', 'attachment; filename="a\\"b\\\\c"', id="escaped"),
        P("100%.txt", 'attachment; filename="100%.txt"', id="percent-ascii"),
        P("naïve.txt", "attachment; filename=\"na_ve.txt\"; filename*=UTF-8''na%C3%AFve.txt",
          id="non-ascii"),
        P("€ 1'2.txt", "attachment; filename=\"_ 1'2.txt\"; filename*=UTF-8''%E2%82%AC%201%272.txt",
          id="space-and-apostrophe-encoded"),
    ],
)
def test_format_content_disposition(filename, text):
    assert format_content_disposition(filename) == text
    assert parse_content_disposition_filename(text) == filename


def test_format_content_disposition_inline():
    assert format_content_disposition("x", "inline") == 'inline; filename="x"'


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        P("", "attachment", id="empty"),
        P("a\r\nSet-Cookie: x", "attachment", id="header-injection"),
        P("a\x00b", "attachment", id="nul"),
        P("x", "attach ment", id="bad-disposition"),
    ],
)
def test_format_content_disposition_rejects(filename, disposition):
    with pytest.raises(ValueError):
        format_content_disposition(filename, disposition)
