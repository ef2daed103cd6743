"""Tests for :mod:`byterange_server.protocol.digests`: the hash registry, ``Content-Digest`` /
``Repr-Digest`` and ``Want-*-Digest``."""

from __future__ import annotations

import base64
import hashlib

import http_sf
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from strategies import ANY_TEXT
from strategies import only_client_errors

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.digests import CHECKSUM_ALGORITHMS
from byterange_server.protocol.digests import HASHES
from byterange_server.protocol.digests import SUPPORTED_DIGESTS
from byterange_server.protocol.digests import format_digest
from byterange_server.protocol.digests import parse_digest_field
from byterange_server.protocol.digests import parse_want_digest
from byterange_server.protocol.digests import pick_digest

P = pytest.param


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


def test_one_registry_names_every_hash_of_both_protocols():
    # RFC 9530 keys and tus checksum names are both looked up in HASHES (the request body is
    # hashed by either), so the two name sets must not collide and must both be in it.
    assert not set(SUPPORTED_DIGESTS) & set(CHECKSUM_ALGORITHMS)
    assert {**SUPPORTED_DIGESTS, **CHECKSUM_ALGORITHMS} == HASHES
    assert list(CHECKSUM_ALGORITHMS) == ["sha1", "sha256", "sha512", "md5"]  # Tus-Checksum-Algorithm
    assert HASHES["sha256"] is HASHES["sha-256"] is hashlib.sha256


# -- Want-Content-Digest / Want-Repr-Digest ------------------------------------------------------


def test_want_digest():
    assert parse_want_digest("sha-256=1, sha-512=3") == {"sha-256": 1, "sha-512": 3}
    assert parse_want_digest("sha-256=0") == {"sha-256": 0}
    for bad in ("sha-256=11", "sha-256=-1", "sha-256=?1", "sha-256=1.0", "sha-256"):
        with pytest.raises(MalformedHeaderError):
            parse_want_digest(bad)


@given(st.dictionaries(st.sampled_from(["sha-256", "sha-512", "md5", "crc32c"]),
                       st.integers(min_value=0, max_value=10)))
def test_want_digest_roundtrip(weights):
    if not weights:
        return
    assert parse_want_digest(http_sf.ser(weights)) == weights


# -- round trips ---------------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_digest_round_trip(d256, d512):
    text = f"{format_digest('sha-256', d256)}, {format_digest('sha-512', d512)}"
    parsed = parse_digest_field(text)
    assert parsed == {"sha-256": d256, "sha-512": d512}
    assert pick_digest(parsed) == ("sha-512", d512)


# -- robustness: arbitrary text ------------------------------------------------------------------


PARSERS = {
    "parse_digest_field": parse_digest_field,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    only_client_errors(PARSERS[name], text)
