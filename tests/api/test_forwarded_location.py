"""Behind our proxies, Location names the URL the client used; without trust, nobody can set it."""

from __future__ import annotations

from typing import Any

import pytest

from byterange_server import create_app

from .helpers import MOUNT

FORWARDED = 'for=203.0.113.9;proto=https;host="up.example"'


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "TRUSTED_PROXIES": "1"}


def test_location_follows_the_trusted_proxy(client):
    created = client.post(MOUNT, headers={"Upload-Length": "1", "Forwarded": FORWARDED})
    assert created.status_code == 201
    assert created.headers["Location"].startswith("https://up.example/files/")
    legacy = client.post(
        MOUNT, headers={"Upload-Length": "1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "up.example"}
    )
    assert legacy.headers["Location"].startswith("https://up.example/files/")


def test_without_trusted_proxies_the_headers_are_ignored(settings_overrides):
    app = create_app({**settings_overrides, "TRUSTED_PROXIES": "0"})
    try:
        created = app.test_client().post(MOUNT, headers={"Upload-Length": "1", "Forwarded": FORWARDED})
        assert created.headers["Location"].startswith("http://localhost/files/")
    finally:
        app.extensions["byterange"].db.dispose()
