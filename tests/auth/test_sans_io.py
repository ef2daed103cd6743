"""auth/ stays IO-free: tokens and signed URLs are checked without a framework, database or socket."""

from __future__ import annotations

from ..support.sans_io import io_modules
from ..support.sans_io import modules_loaded_by
from ..support.sans_io import ours


def test_importing_auth_reaches_no_io() -> None:
    loaded = modules_loaded_by("byterange_server.auth")
    assert io_modules(loaded) == set()
    # Below auth/: the exception tree and the settings it reads its keys from.
    assert {name for name in ours(loaded) if not name.startswith("byterange_server.auth")} == {
        "byterange_server.errors", "byterange_server.config", "byterange_server.units"
    }
