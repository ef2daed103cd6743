"""protocol/ stays sans-IO: importing all of it reaches no web framework, database, server or socket."""

from __future__ import annotations

from tests.support.sans_io import io_modules
from tests.support.sans_io import modules_loaded_by
from tests.support.sans_io import ours


def test_importing_protocol_reaches_no_io() -> None:
    loaded = modules_loaded_by("byterange_server.protocol")
    assert io_modules(loaded) == set()
    # Below protocol/ there is only the exception tree.
    assert {name for name in ours(loaded) if not name.startswith("byterange_server.protocol")} == {
        "byterange_server.errors"
    }
