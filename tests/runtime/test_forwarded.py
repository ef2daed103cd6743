"""Trusting our own proxies' Forwarded / X-Forwarded-* headers, and nobody else's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.errors import MalformedHeaderError
from byterange_server.runtime.forwarded import ForwardedMiddleware
from byterange_server.runtime.forwarded import parse_forwarded


@pytest.mark.parametrize(
    ("raw", "elements"),
    [
        (
            'for=192.0.2.60;proto=https;host="up.example"',
            [{"for": "192.0.2.60", "proto": "https", "host": "up.example"}],
        ),
        ("for=1.1.1.1, for=10.0.0.1;proto=http", [{"for": "1.1.1.1"}, {"for": "10.0.0.1", "proto": "http"}]),
        ('For="[2001:db8:cafe::17]:4711"', [{"for": "[2001:db8:cafe::17]:4711"}]),
        ("for=unknown;by=_hidden", [{"for": "unknown", "by": "_hidden"}]),
        ('host="a\\"b"', [{"host": 'a"b'}]),
        ("", []),
    ],
)
def test_parse_forwarded(raw, elements):
    assert parse_forwarded([raw]) == elements


@pytest.mark.parametrize(
    "raw", ["for", "for=", "for=a b", "for=a;for=b", "for=a:b", "=x", 'for="open', "for=a;;"]
)
def test_parse_forwarded_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_forwarded([raw])


def seen_by_app(hops: int, headers: dict[str, str]) -> dict[str, Any]:
    captured: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        captured.update(environ)
        start_response("204 No Content", [])
        return []

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/files",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "backend",
        "SERVER_PORT": "8080",
        "HTTP_HOST": "backend:8080",
        "REMOTE_ADDR": "10.0.0.2",
        "wsgi.url_scheme": "http",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    ForwardedMiddleware(app, hops)(environ, lambda *args: None)
    return captured


def view(environ: dict[str, Any]) -> tuple[str, str, str]:
    return environ["wsgi.url_scheme"], environ["HTTP_HOST"], environ["REMOTE_ADDR"]


def test_one_trusted_proxy_with_forwarded():
    headers = {"Forwarded": 'for=203.0.113.9;proto=https;host="up.example"'}
    assert view(seen_by_app(1, headers)) == ("https", "up.example", "203.0.113.9")


def test_a_client_cannot_forge_what_our_proxy_appends():
    # The client sent its own Forwarded; our one proxy appended the truth after it.
    headers = {
        "Forwarded": 'for=6.6.6.6;proto=https;host="evil.example", for=203.0.113.9;proto=http;host=up.example'
    }
    assert view(seen_by_app(1, headers)) == ("http", "up.example", "203.0.113.9")


def test_two_trusted_proxies_use_the_outer_ones_record():
    headers = {
        "Forwarded": "for=203.0.113.9;proto=https;host=up.example, for=10.0.0.5;proto=http;host=lb.internal"
    }
    assert view(seen_by_app(2, headers)) == ("https", "up.example", "203.0.113.9")


def test_fewer_hops_than_trusted_proxies_trusts_nothing():
    headers = {"Forwarded": "for=203.0.113.9;proto=https;host=up.example"}
    assert view(seen_by_app(2, headers)) == ("http", "backend:8080", "10.0.0.2")


@pytest.mark.parametrize(
    "forwarded",
    [
        'proto=javascript;host="up.example/evil"',
        'host="a b"',
        'host="x@y"',
        "proto=ftp",
        "for=unknown",
        "for=_secret",
    ],
)
def test_unusable_values_are_ignored_not_reflected(forwarded):
    scheme, host, address = view(seen_by_app(1, {"Forwarded": forwarded}))
    assert scheme == "http" and address == "10.0.0.2"
    assert host in ("backend:8080",)


def test_malformed_forwarded_is_ignored_whole():
    assert view(seen_by_app(1, {"Forwarded": "proto=https;;;host"})) == ("http", "backend:8080", "10.0.0.2")


def test_x_forwarded_headers_when_there_is_no_forwarded():
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "up.example",
        "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
    }
    assert view(seen_by_app(1, headers)) == ("https", "up.example", "203.0.113.9")


def test_ipv6_client_address():
    headers = {"Forwarded": 'for="[2001:db8::17]:4711";proto=https'}
    assert seen_by_app(1, headers)["REMOTE_ADDR"] == "2001:db8::17"


def test_at_least_one_hop():
    with pytest.raises(ValueError):
        ForwardedMiddleware(lambda e, s: [], 0)


@given(st.text(max_size=60))
def test_parser_never_fails_otherwise(raw):
    try:
        elements = parse_forwarded([raw])
    except MalformedHeaderError:
        return
    assert all(isinstance(k, str) and k == k.lower() for element in elements for k in element)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Found by python -m fuzz: a prefix without "/" became the host of every Location, and
        # Werkzeug's IDNA encoding of it raised outside every error handler (a bare 500).
        ({"X-Forwarded-Prefix": "sh\xf7a?-25}6=:@AAA:"}, ("http", "backend:8080", "")),
        ({"X-Forwarded-Prefix": "@evil.example"}, ("http", "backend:8080", "")),
        ({"X-Forwarded-Prefix": "/up/\xe9"}, ("http", "backend:8080", "")),
        ({"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "a b"}, ("http", "backend:8080", "")),
        (
            {"X-Forwarded-Prefix": "/uploads/v1", "X-Forwarded-Host": "up.example"},
            ("http", "up.example", "/uploads/v1"),
        ),
    ],
)
def test_unusable_x_forwarded_values_are_ignored_not_reflected(headers, expected):
    environ = seen_by_app(1, headers)
    assert (environ["wsgi.url_scheme"], environ["HTTP_HOST"], environ["SCRIPT_NAME"]) == expected


def test_a_bad_x_forwarded_prefix_is_not_a_500(tmp_path):
    from byterange_server import create_app
    from byterange_server.db import migrate

    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate.upgrade(url)
    app = create_app({"DATABASE_URL": url, "DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": "1", "AUTH": "off"})
    try:
        response = app.test_client().post(
            "/files", headers={"Upload-Length": "1", "X-Forwarded-Prefix": "sh\xf7a?-25}6=:@AAA:"}
        )
        assert response.status_code == 201
        assert response.headers["Location"].startswith("http://localhost/files/")
    finally:
        app.extensions["byterange"].db.dispose()
