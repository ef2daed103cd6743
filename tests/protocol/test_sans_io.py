"""protocol/ stays sans-IO: importing all of it reaches no web framework, database, server or socket."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: this test session has Flask and the rest loaded already.
_PROBE = """
import importlib, json, pkgutil, sys
import byterange_server.protocol as protocol
for info in pkgutil.iter_modules(protocol.__path__):
    importlib.import_module("byterange_server.protocol." + info.name)
print(json.dumps(sorted(sys.modules)))
"""

_FORBIDDEN = {"flask", "werkzeug", "sqlalchemy", "alembic", "psycopg", "gunicorn", "socket", "ssl", "http"}


def test_importing_protocol_reaches_no_io() -> None:
    loaded = json.loads(subprocess.run([sys.executable, "-c", _PROBE], check=True,
                                       capture_output=True, text=True).stdout)
    assert not {name for name in loaded if name.split(".")[0] in _FORBIDDEN}
    ours = {name for name in loaded if name.startswith("byterange_server.")}
    # Below protocol/ there is only the exception tree.
    assert {name for name in ours if not name.startswith("byterange_server.protocol")} == {
        "byterange_server.errors"
    }
