"""The names the package itself offers (loaded on first use) resolve."""

from __future__ import annotations

import byterange_server
from byterange_server.uploads.service import UploadService


def test_every_lazy_name_of_the_package_resolves() -> None:
    for name in [*byterange_server.__all__, "EXTENSION_KEY"]:
        assert getattr(byterange_server, name) is not None, name
    assert byterange_server.UploadService is UploadService
