"""tus discovery: what OPTIONS advertises (Tus-Version, Tus-Extension, Tus-Max-Size, ...)."""

from __future__ import annotations

import pytest

from ..helpers import MOUNT
from .helpers import TUS


@pytest.mark.parametrize("path", [MOUNT, MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"])
@pytest.mark.parametrize("headers", [{}, TUS, {"Tus-Resumable": "0.2.2"}])
def test_options_discovery(client, path, headers):
    # tus: the server ignores Tus-Resumable on OPTIONS, and always describes itself.
    response = client.options(path, headers=headers)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    extensions = response.headers["Tus-Extension"].split(",")
    for name in ("creation", "creation-with-upload", "creation-defer-length", "expiration",
                 "checksum", "termination", "concatenation", "concatenation-unfinished"):
        assert name in extensions
    assert int(response.headers["Tus-Max-Size"]) == 1024**4
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"md5", "sha1", "sha256", "sha512"}
    assert "message/byterange" in response.headers["Accept-Patch"]  # both dialects in one answer
