"""The CORS policy as a browser meets it (sans-IO): preflights and actual requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.protocol.cors import CorsPolicy
from byterange_server.protocol.cors import merge_vary

APP = "https://app.example"
POLICY = CorsPolicy(origins=(APP, "http://localhost:5173"))


def test_a_browser_preflight_for_a_tus_patch_is_granted():
    # What Chrome sends before tus-js-client's PATCH.
    headers = POLICY.preflight(APP, "PATCH", "content-type,tus-resumable,upload-offset")
    assert headers is not None
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "PATCH" in headers["Access-Control-Allow-Methods"].split(", ")
    assert "Upload-Offset" in headers["Access-Control-Allow-Headers"]
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.parametrize(
    ("origin", "method", "asked"),
    [
        ("https://evil.example", "PATCH", None),  # origin not listed
        ("https://app.example:8443", "PATCH", None),  # another port is another origin
        ("http://app.example", "PATCH", None),  # another scheme too
        ("null", "POST", None),  # sandboxed iframe, file: page
        (None, "POST", None),
        (APP, "TRACE", None),  # method not allowed
        (APP, "PATCH", "x-secret-header"),  # header not allowed
        (APP, "PATCH", "upload-offset, bad header"),
    ],
)
def test_refused_preflights_get_no_cors_headers(origin, method, asked):
    assert POLICY.preflight(origin, method, asked) is None


def test_safelisted_headers_need_no_listing():
    assert POLICY.preflight(APP, "GET", "Accept, accept-language") is not None


def test_actual_responses_expose_what_resumable_clients_read():
    headers = POLICY.actual(APP)
    exposed = headers["Access-Control-Expose-Headers"].split(", ")
    for name in ("Location", "Upload-Offset", "Committed-Ranges", "Upload-Complete", "Tus-Resumable", "ETag"):
        assert name in exposed
    assert headers["Access-Control-Allow-Origin"] == APP and headers["Vary"] == "Origin"
    assert POLICY.actual("https://evil.example") == {"Vary": "Origin"}


def test_any_origin_without_credentials_is_a_star():
    policy = CorsPolicy(origins=("*",))
    assert policy.actual("https://x.example")["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in policy.actual("https://x.example")
    assert policy.actual("null") == {}


def test_credentials_echo_the_origin_never_a_star():
    policy = CorsPolicy(origins=("*",), allow_credentials=True)
    headers = policy.actual("https://x.example")
    assert headers["Access-Control-Allow-Origin"] == "https://x.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    preflight = policy.preflight("https://x.example", "PUT", "authorization")
    assert preflight is not None and preflight["Access-Control-Allow-Origin"] == "https://x.example"


def test_off_by_default():
    policy = CorsPolicy()
    assert not policy.enabled
    assert policy.actual(APP) == {} and policy.preflight(APP, "GET", None) is None


def test_preflight_detection():
    assert POLICY.is_preflight("OPTIONS", APP, "PATCH")
    assert not POLICY.is_preflight("OPTIONS", APP, None)  # a protocol's discovery OPTIONS
    assert not POLICY.is_preflight("PATCH", APP, "PATCH")


def test_from_setting_and_validation():
    policy = CorsPolicy.from_setting(" https://a.example, http://localhost:3000  https://b.example ")
    assert policy.origins == ("https://a.example", "http://localhost:3000", "https://b.example")
    for bad in ("app.example", "https://a.example/path", "https://", "HTTPS://A.EXAMPLE"):
        with pytest.raises(ValueError):
            CorsPolicy(origins=(bad,))
    with pytest.raises(ValueError):
        CorsPolicy(origins=(APP,), max_age=-1)


def test_merge_vary():
    assert merge_vary(None, ["Origin"]) == "Origin"
    assert merge_vary("Accept-Encoding, origin", ["Origin", "Range"]) == "Accept-Encoding, origin, Range"


@given(st.text(max_size=40))
def test_arbitrary_origins_are_allowed_only_when_listed(origin):
    listed = origin in POLICY.origins
    assert (POLICY.actual(origin).get("Access-Control-Allow-Origin") is not None) == listed
    granted = POLICY.preflight(origin, "POST", None)
    assert (granted is not None) == listed
