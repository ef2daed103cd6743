"""The credentials (sans-IO): token and key entries, bearer parsing, constant-time lookup, and the
id a signed creation URL derives -- plus the command-line side (token, sign, serve)."""

from __future__ import annotations

import hmac
import time
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.auth import tokens as auth_module
from byterange_server.auth.signing import signed_url
from byterange_server.auth.signing import verify
from byterange_server.auth.tokens import Credentials
from byterange_server.auth.tokens import parse_entries
from byterange_server.cli import main
from byterange_server.errors import AmbiguousCredentialsError
from byterange_server.errors import InvalidCredentialsError
from byterange_server.errors import MissingCredentialsError

SECRET = "0123456789abcdef-secret"


def credentials() -> Credentials:
    return Credentials(
        tokens={"alice": SECRET, "ops": SECRET[::-1]}, signing_keys={"k1": "k" * 20}, admin_tokens=["ops"]
    )


def authenticate(creds: Credentials, authorization=None, query=None, method="POST", path="/files"):
    return creds.authenticate(authorization=authorization, query=query or {}, method=method, path=path,
                              now=time.time())


def test_entries_parse_from_settings_and_files():
    assert parse_entries(f"a:{SECRET}, b:{SECRET}x\n# comment\nc:{SECRET}y", what="token") == {
        "a": SECRET, "b": SECRET + "x", "c": SECRET + "y"}
    for bad in (f"a {SECRET}", f"a:{SECRET} a:{SECRET}", "a:short", f"bad/name:{SECRET}", f":{SECRET}"):
        with pytest.raises(ValueError):
            parse_entries(bad, what="token")


def test_bearer_tokens():
    creds = credentials()
    assert authenticate(creds, f"Bearer {SECRET}").id == "token:alice"
    assert authenticate(creds, f"bearer {SECRET}").id == "token:alice"  # the scheme is case-insensitive
    admin = authenticate(creds, f"Bearer {SECRET[::-1]}")
    assert admin.admin and admin.may_access("token:anyone")
    alice = authenticate(creds, f"Bearer {SECRET}")
    assert alice.may_access("token:alice") and not alice.may_access("token:bob")
    assert not alice.may_access(None)
    with pytest.raises(MissingCredentialsError):
        authenticate(creds)
    for wrong in (f"Bearer {SECRET}0", f"Basic {SECRET}", "Bearer ", f"Bearer {SECRET} {SECRET}"):
        with pytest.raises(InvalidCredentialsError):
            authenticate(creds, wrong)
    with pytest.raises(AmbiguousCredentialsError):
        authenticate(creds, f"Bearer {SECRET}", {"br-sig": "x"})


def test_every_configured_token_is_compared_whatever_matches(monkeypatch):
    """No early exit: the position of the matching token does not change the work done."""
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    tokens = {f"t{n}": f"{n:02d}-{SECRET}" for n in range(10)}
    creds = Credentials(tokens=tokens, signing_keys={})
    for presented in (f"00-{SECRET}", f"09-{SECRET}", "not-a-configured-token"):
        calls.clear()
        try:
            authenticate(creds, f"Bearer {presented}")
        except InvalidCredentialsError:
            pass
        assert len(calls) == 10


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43,
               max_size=43))
def test_derived_ids_are_valid_resource_ids_and_differ_per_signature(signature):
    from byterange_server.auth.signing import Grant
    from byterange_server.auth.tokens import Principal
    from byterange_server.storage.base import validate_resource_id

    creds = credentials()
    grant = Grant("k1", frozenset({"POST"}), "/files", 10, 10)
    one = creds.resource_id_for(Principal("signed:k1", grant=grant, signature=signature))
    other = creds.resource_id_for(Principal("signed:k1", grant=grant, signature=signature[::-1]))
    assert validate_resource_id(one) == one
    assert one != other or signature == signature[::-1]


def test_the_token_command_prints_a_usable_entry():
    result = CliRunner().invoke(main, ["token", "backend"])
    assert result.exit_code == 0
    name, secret = result.output.strip().split(":", 1)
    assert name == "backend" and len(secret) >= 43
    assert parse_entries(result.output, what="token") == {"backend": secret}
    assert CliRunner().invoke(main, ["token", "no/slash"]).exit_code != 0


def test_the_sign_command_mints_what_the_server_verifies(monkeypatch):
    monkeypatch.setenv("BYTERANGE_SIGNING_KEYS", f"web:{SECRET} old:{SECRET}x")
    result = CliRunner().invoke(main, ["sign", "https://up.example/files", "-m", "post", "-e", "15m",
                                       "--max-size", "10MiB"])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    query = dict(parse_qsl(urlsplit(url).query))
    grant = verify(query, method="POST", path="/files", keys={"web": SECRET.encode()}, now=time.time())
    assert grant.key_id == "web" and grant.max_size == 10 * 1024 * 1024
    assert 14 * 60 < grant.expires - time.time() <= 15 * 60
    other = CliRunner().invoke(main, ["sign", "https://up.example/files", "--key", "old"])
    assert "br-key=old" in other.output
    assert CliRunner().invoke(main, ["sign", "https://up.example/files", "--key", "nope"]).exit_code == 1
    assert CliRunner().invoke(main, ["sign", "https://up.example/files", "-e", "soon"]).exit_code == 1


def test_the_sign_command_mints_a_new_grant_on_every_call(monkeypatch):
    """Audit: two calls in the same second with the same arguments printed
    the same URL, and so handed two holders the one resource it creates."""
    monkeypatch.setenv("BYTERANGE_SIGNING_KEYS", f"web:{SECRET}")
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)  # the same second, for sure
    args = ["sign", "https://up.example/files", "-m", "POST", "-e", "1h", "--max-size", "1MiB"]
    urls = {CliRunner().invoke(main, args).output.strip() for _ in range(3)}
    assert len(urls) == 3
    creds = Credentials(tokens={}, signing_keys={"web": SECRET})
    created = {
        creds.resource_id_for(authenticate(creds, query=dict(parse_qsl(urlsplit(url).query))))
        for url in urls
    }
    assert len(created) == 3  # three grants, three resources


def test_a_signed_principal_is_its_grant_not_its_key():
    creds = credentials()

    def principal(path: str, method: str = "POST"):
        url = signed_url(path, key_id="k1", secret=b"k" * 20, methods=[method], expires=int(time.time()) + 60,
                         max_size=1)
        query = dict(parse_qsl(urlsplit(url).query))
        resource_id = path.rsplit("/", 1)[1] if path.count("/") > 1 else None
        return creds.authenticate(authorization=None, query=query, method=method, path=path, now=time.time(),
                                  resource_id=resource_id)

    one, other = principal("/files"), principal("/files")
    assert one.id == f"signed:k1:{creds.resource_id_for(one)}" and one.id != other.id
    assert principal("/files/AAAAAAAAAAAAAAAAAAAAAA", "GET").id == "signed:k1:AAAAAAAAAAAAAAAAAAAAAA"


def test_serve_refuses_to_start_without_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("BYTERANGE_DATA_DIR", str(tmp_path))
    for name in ("BYTERANGE_AUTH", "BYTERANGE_TOKENS", "BYTERANGE_SIGNING_KEYS"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "no credentials are configured" in result.output
    monkeypatch.setenv("BYTERANGE_TOKENS", "alice:short")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "at least 16 characters" in result.output
