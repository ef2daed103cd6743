"""Signed upload URLs: each credential accepted, each forgery refused (sans-IO, no server)."""

from __future__ import annotations

import base64
import dataclasses
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.auth.signing import PARAMS
from byterange_server.auth.signing import Grant
from byterange_server.auth.signing import sign
from byterange_server.auth.signing import signed_url
from byterange_server.auth.signing import verify
from byterange_server.errors import InvalidCredentialsError
from byterange_server.errors import SignatureScopeError

SECRET = b"0123456789abcdef-the-shared-secret"
KEYS = {"k1": SECRET, "k2": b"another-secret-of-enough-bytes"}
NOW = 1_800_000_000
GRANT = Grant("k1", frozenset({"POST", "PATCH", "HEAD"}), "/files", NOW + 3600, 10 * 1024**3)


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def check(query, *, method="POST", path="/files", now=NOW, keys=KEYS):
    return verify(query, method=method, path=path, keys=keys, now=now)


def test_a_signed_url_is_accepted_for_each_allowed_method():
    url = signed_url("https://up.example/files?tenant=7", key_id="k1", secret=SECRET,
                     methods=["post", "PATCH", "HEAD"], expires=NOW + 3600, max_size=10 * 1024**3)
    assert url.startswith("https://up.example/files?tenant=7&br-key=k1&br-methods=HEAD.PATCH.POST&")
    for method in ("POST", "PATCH", "HEAD"):
        # The same grant, but for the nonce this URL drew.
        assert dataclasses.replace(check(query_of(url), method=method), nonce=GRANT.nonce) == GRANT


def test_two_mints_of_the_same_grant_are_two_grants():
    """Audit: identical arguments in the same second gave the identical URL,
    so two holders shared the resource it creates. Each mint now draws its own nonce."""
    options = dict(key_id="k1", secret=SECRET, methods=["POST"], expires=NOW + 60, max_size=10)
    first = signed_url("https://up.example/files", **options)
    second = signed_url("https://up.example/files", **options)
    assert first != second
    one, other = check(query_of(first)), check(query_of(second))
    assert one.nonce != other.nonce and len(one.nonce) == 22
    assert query_of(first)["br-sig"] != query_of(second)["br-sig"]
    # The caller that must mint the same URL again (the server's Location) passes the nonce.
    assert signed_url("https://up.example/files", nonce=one.nonce, **options) == first


def test_a_version_1_url_without_a_nonce_is_refused():
    query = sign(GRANT, SECRET)
    del query["br-nonce"]
    with pytest.raises(InvalidCredentialsError, match="br-nonce"):
        check(query)


def test_key_rotation_keeps_both_keys_valid():
    for key_id, secret in KEYS.items():
        query = sign(Grant(key_id, frozenset({"POST"}), "/files", NOW + 1, 5), secret)
        assert check(query).key_id == key_id


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("br-key", "k2"),  # a key that exists, but did not sign this
        ("br-methods", "HEAD.PATCH.POST.PUT"),  # more methods
        ("br-methods", "POST"),  # fewer methods: still a different grant
        ("br-expires", str(NOW + 7200)),  # a later expiry
        ("br-max-size", str(100 * 1024**3)),  # a larger size
        ("br-max-size", "0"),  # any other size
        ("br-sig", "A" * 43),  # a made-up signature
        ("br-nonce", "B" * 22),  # another grant's nonce
    ],
)
def test_each_altered_parameter_is_refused(name, value):
    query = sign(GRANT, SECRET)
    query[name] = value
    with pytest.raises(InvalidCredentialsError):
        check(query)


def test_wrong_secret_is_refused():
    with pytest.raises(InvalidCredentialsError, match="does not match"):
        check(sign(GRANT, b"not-the-shared-secret-at-all"))


def test_replay_on_another_path_or_resource_is_refused():
    resource = Grant("k1", frozenset({"PATCH", "HEAD"}), "/files/AAAAAAAAAAAAAAAAAAAAAA", NOW + 60, 100)
    query = sign(resource, SECRET)
    assert check(query, method="PATCH", path="/files/AAAAAAAAAAAAAAAAAAAAAA")
    for other in ("/files/BBBBBBBBBBBBBBBBBBBBBB", "/files", "/files/AAAAAAAAAAAAAAAAAAAAAA/", "/"):
        with pytest.raises(InvalidCredentialsError):
            check(query, method="PATCH", path=other)


def test_expired_is_forbidden_not_unauthorized():
    query = sign(GRANT, SECRET)
    check(query, now=GRANT.expires - 0.001)
    with pytest.raises(SignatureScopeError) as caught:
        check(query, now=GRANT.expires)
    assert caught.value.status == 403 and caught.value.extra["expires"] == GRANT.expires


def test_a_method_outside_the_grant_is_forbidden():
    with pytest.raises(SignatureScopeError) as caught:
        check(sign(GRANT, SECRET), method="DELETE")
    assert caught.value.extra["methods"] == ["HEAD", "PATCH", "POST"]


@pytest.mark.parametrize("missing", PARAMS)
def test_each_missing_parameter_is_unauthorized(missing):
    query = sign(GRANT, SECRET)
    del query[missing]
    with pytest.raises(InvalidCredentialsError) as caught:
        check(query)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("br-key", "unknown"),
        ("br-key", "k 1"),
        ("br-key", "x" * 65),
        ("br-expires", "-1"),
        ("br-expires", "1e9"),
        ("br-expires", "1" * 16),
        ("br-max-size", "١٢"),  # non-ASCII digits
        ("br-methods", "post"),
        ("br-methods", "POST..PATCH"),
        ("br-methods", ""),
        ("br-sig", "short"),
        ("br-sig", "=" * 43),
        ("br-sig", base64.urlsafe_b64encode(b"x" * 32).decode()),  # padded: not canonical
        ("br-nonce", "A" * 21),
        ("br-nonce", "A" * 23),
        ("br-nonce", "A" * 21 + "="),
        ("br-nonce", "A" * 21 + "+"),  # base64url only
    ],
)
def test_malformed_parameters_are_unauthorized(name, value):
    query = sign(GRANT, SECRET)
    query[name] = value
    with pytest.raises(InvalidCredentialsError):
        check(query)


@pytest.mark.parametrize("name", ["br-expires", "br-max-size"])
def test_leading_zeros_are_not_a_second_spelling_of_the_grant(name):
    # Found by python -m fuzz: int("0123") == 123, so a zero-padded number verified.
    query = sign(GRANT, SECRET)
    query[name] = "0" + query[name]
    with pytest.raises(InvalidCredentialsError):
        check(query)


def test_the_spare_bits_of_the_signature_are_not_a_second_spelling():
    # Found by python -m fuzz: 43 base64 characters carry 258 bits for 256; decoding ignored the
    # last 2, so each signature had four spellings that all verified.
    query = sign(GRANT, SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(query["br-sig"][-1])
    for spare in (1, 2, 3):
        query["br-sig"] = query["br-sig"][:-1] + alphabet[last ^ spare]
        with pytest.raises(InvalidCredentialsError):
            check(query)


def test_unsorted_methods_are_not_a_second_spelling_of_the_grant():
    query = sign(GRANT, SECRET)
    query["br-methods"] = "POST.PATCH.HEAD"
    with pytest.raises(InvalidCredentialsError):
        check(query)


def test_minting_refuses_nonsense():
    with pytest.raises(ValueError, match="16 bytes"):
        sign(GRANT, b"short")
    with pytest.raises(ValueError):
        Grant("k1", frozenset(), "/files", NOW, 1)
    with pytest.raises(ValueError):
        Grant("k1", frozenset({"POST"}), "files", NOW, 1)
    with pytest.raises(ValueError):
        Grant("bad key", frozenset({"POST"}), "/files", NOW, 1)
    with pytest.raises(ValueError, match="nonce"):
        Grant("k1", frozenset({"POST"}), "/files", NOW, 1, "short")
    with pytest.raises(ValueError, match="already signed"):
        options = dict(key_id="k1", secret=SECRET, methods=["POST"], expires=NOW, max_size=1)
        signed_url(signed_url("http://h/files", **options), **options)


grants = st.builds(
    Grant,
    key_id=st.sampled_from(sorted(KEYS)),
    methods=st.frozensets(st.sampled_from(["GET", "HEAD", "PATCH", "POST", "PUT", "DELETE"]), min_size=1),
    path=st.from_regex(r"/files(/[A-Za-z0-9_-]{1,22})?", fullmatch=True),
    expires=st.integers(NOW + 1, NOW + 10**6),
    max_size=st.integers(0, 10**14),
    nonce=st.from_regex(r"[A-Za-z0-9_-]{22}", fullmatch=True),
)


@given(grants, st.sampled_from(PARAMS[:-1]), st.text(min_size=1, max_size=20))
def test_any_change_to_a_signed_field_is_refused(grant, name, replacement):
    query = sign(grant, KEYS[grant.key_id])
    method = min(grant.methods)
    assert verify(query, method=method, path=grant.path, keys=KEYS, now=NOW) == grant
    if replacement == query[name]:
        return
    query[name] = replacement
    with pytest.raises((InvalidCredentialsError, SignatureScopeError)):
        verify(query, method=method, path=grant.path, keys=KEYS, now=NOW)
