"""CORS through the app (PROTOCOL.md §2 clients in browsers): preflights as browsers send them,
and CORS headers on successes and errors alike, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from byterange_server import create_app

from .helpers import MOUNT

APP = "https://app.example"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "CORS_ORIGINS": f"{APP}, http://localhost:5173"}


def preflight(client, path, method, headers="", origin=APP):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            **({"Access-Control-Request-Headers": headers} if headers else {}),
        },
    )


def test_preflight_for_a_byterange_patch(client):
    created = client.post(MOUNT, headers={"Upload-Length": "4", "Origin": APP})
    url = created.headers["Location"]
    response = preflight(client, url, "PATCH", "content-type,content-digest")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Digest" in response.headers["Access-Control-Allow-Headers"]
    assert "Tus-Resumable" not in response.headers  # not a tus OPTIONS: no protocol discovery


def test_preflight_for_tus_and_ietf_creation(client):
    tus = preflight(client, MOUNT, "POST", "tus-resumable,upload-length,upload-metadata")
    ietf = preflight(client, MOUNT, "POST", "upload-complete,upload-draft-interop-version,content-type")
    for response in (tus, ietf):
        assert response.status_code == 204 and response.headers["Access-Control-Allow-Origin"] == APP


def test_refused_preflights_carry_no_permission(client):
    for response in (
        preflight(client, MOUNT, "POST", origin="https://evil.example"),
        preflight(client, MOUNT, "POST", "x-unknown-header"),
        preflight(client, MOUNT, "TRACE"),
    ):
        assert response.status_code == 204
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers


def test_actual_responses_and_errors_expose_the_upload_headers(client):
    created = client.post(MOUNT, headers={"Upload-Length": "4", "Origin": APP})
    assert created.status_code == 201
    exposed = created.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "Upload-Offset", "Committed-Ranges", "Upload-Complete"):
        assert name in exposed
    assert created.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in created.headers["Vary"]
    # A problem document must be readable by the page too.
    missing = client.head(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA", headers={"Origin": APP})
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == APP


def test_other_origins_get_no_cors_headers(client):
    response = client.post(MOUNT, headers={"Upload-Length": "4", "Origin": "https://evil.example"})
    assert response.status_code == 201  # CORS is the browser's check; the server only informs
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["Vary"] == "Origin"


def test_a_protocol_options_without_a_request_method_is_not_a_preflight(client):
    response = client.options(MOUNT, headers={"Origin": APP, "Tus-Resumable": "1.0.0"})
    assert response.headers.get("Tus-Version")  # tus discovery answered as before
    assert response.headers["Access-Control-Allow-Origin"] == APP


def test_cors_is_off_unless_configured(settings_overrides):
    settings = {**settings_overrides, "CORS_ORIGINS": ""}
    app = create_app(settings)
    try:
        response = app.test_client().post(MOUNT, headers={"Upload-Length": "1", "Origin": APP})
        assert "Access-Control-Allow-Origin" not in response.headers and "Vary" not in response.headers
    finally:
        app.extensions["byterange"].db.dispose()


def test_a_malformed_origin_setting_stops_start_up(settings_overrides):
    with pytest.raises(ValueError, match="origin"):
        create_app({**settings_overrides, "CORS_ORIGINS": "app.example"})


def test_methods_and_headers_are_configurable(settings_overrides):
    app = create_app({
        **settings_overrides,
        "CORS_METHODS": "post, patch head",
        "CORS_ALLOW_HEADERS": "X-Trace-Id",
        "CORS_EXPOSE_HEADERS": "X-Request-Id",
    })
    client = app.test_client()
    try:
        assert preflight(client, MOUNT, "POST", "x-trace-id,upload-length").status_code == 204
        granted = preflight(client, MOUNT, "POST", "x-trace-id")
        assert granted.headers["Access-Control-Allow-Methods"] == "POST, PATCH, HEAD"
        assert "X-Trace-Id" in granted.headers["Access-Control-Allow-Headers"]
        refused = preflight(client, f"{MOUNT}/abcdefghijklmnop", "DELETE")
        assert "Access-Control-Allow-Origin" not in refused.headers
        actual = client.post(MOUNT, headers={"Origin": APP})
        exposed = actual.headers["Access-Control-Expose-Headers"]
        assert "X-Request-Id" in exposed and "Upload-Offset" in exposed and "Location" in exposed
    finally:
        app.extensions["byterange"].db.dispose()
    with pytest.raises(ValueError, match="not a method or header name"):
        create_app({**settings_overrides, "CORS_ALLOW_HEADERS": "bad header:"})
