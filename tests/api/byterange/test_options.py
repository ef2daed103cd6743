"""OPTIONS (PROTOCOL.md §6): Allow, Accept-Patch and the limits."""

from __future__ import annotations

import pytest

from ..helpers import MOUNT
from ..helpers import PATCH_TYPES
from ..helpers import allocate


def _tokens(value: str) -> set[str]:
    return {item.strip() for item in value.split(",") if item.strip()}


def test_options_on_resource(client):
    path = allocate(client)
    response = client.options(path)
    assert response.status_code in (200, 204)
    assert _tokens(response.headers["Allow"]) >= {"OPTIONS", "HEAD", "GET", "PATCH", "PUT", "DELETE"}
    assert "POST" not in _tokens(response.headers["Allow"])
    assert _tokens(response.headers["Accept-Patch"]) == set(PATCH_TYPES)
    limits = response.headers["Byterange-Limits"]
    assert "max-size=" in limits and "max-parts=" in limits and "max-part-header-bytes=" in limits


def test_options_on_unknown_resource_still_describes_the_endpoint(client):
    # Discovery needs no resource: an unknown id gets the same answer as an existing one.
    response = client.options(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 204
    assert response.get_data() == b"" and "Content-Type" not in response.headers
    known = client.options(allocate(client))
    volatile = {"X-Request-Id"}
    assert {k: v for k, v in response.headers.items() if k not in volatile} == {
        k: v for k, v in known.headers.items() if k not in volatile
    }
    assert response.headers["Allow"] == "OPTIONS, HEAD, GET, PATCH, PUT, DELETE"


class TestLimits:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_RESOURCE_SIZE="5000", MAX_PARTS="7", MAX_PART_HEADER_BYTES="1024")

    def test_limits_are_the_configured_ones(self, client):
        limits = client.options(allocate(client)).headers["Byterange-Limits"]
        assert "max-size=5000" in limits
        assert "max-parts=7" in limits
        assert "max-part-header-bytes=1024" in limits


def test_options_on_collection_allows_post(client):
    response = client.options(MOUNT)
    assert response.status_code in (200, 204)
    assert _tokens(response.headers["Allow"]) >= {"POST", "OPTIONS"}


def test_options_on_collection_reports_limits(client):
    response = client.options(MOUNT)
    assert response.status_code == 204
    assert "max-size=" in response.headers.get("Byterange-Limits", "")
    assert _tokens(response.headers.get("Accept-Patch", "")) == set(PATCH_TYPES)
    assert "Content-Type" not in response.headers
