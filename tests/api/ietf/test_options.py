"""IETF discovery: Upload-Limit on every OPTIONS, and partial-upload in Accept-Patch for interop 8."""

from __future__ import annotations

import pytest

from byterange_server.protocol.ietf import parse_upload_limit

from ..helpers import MOUNT
from ..helpers import problem
from .helpers import MISSING
from .helpers import PARTIAL
from .helpers import count
from .helpers import create
from .helpers import v


@pytest.mark.parametrize("path", [MOUNT, MISSING])
@pytest.mark.parametrize("headers", [{}, v(6), v(8)])
def test_options_announces_upload_limit(client, path, headers):
    response = client.options(path, headers=headers)
    assert response.status_code == 204
    limit = parse_upload_limit(response.headers["Upload-Limit"])
    assert limit.max_size == 1024**4 and limit.min_size == 0


def test_options_accept_patch_lists_partial_upload_for_interop_8(client):
    assert PARTIAL in client.options(MOUNT, headers=v(8)).headers["Accept-Patch"]
    assert PARTIAL not in client.options(MOUNT, headers=v(7)).headers["Accept-Patch"]
    assert PARTIAL not in client.options(MOUNT).headers["Accept-Patch"]


class TestConfiguredLimit:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_RESOURCE_SIZE="5000")

    def test_limit_is_the_configured_one_and_413_carries_it(self, client, service):
        assert parse_upload_limit(client.options(MOUNT).headers["Upload-Limit"]).max_size == 5000
        response = create(client, length=5001, expect=413)
        problem(response, 413)
        assert parse_upload_limit(response.headers["Upload-Limit"]).max_size == 5000
        assert count(service) == 0
