"""What importing part of the package loads, seen from a fresh interpreter.

The test session has Flask and the rest loaded already, so the probe runs in a subprocess and
reports ``sys.modules``. Used by the sans-IO tests of protocol/, extents.py and auth/.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: A web framework, a database, a server, or the socket layer and what sits on it. (Not the C
#: module ``_socket``: typing_extensions, which http-sf uses, loads it for a type and no more.)
FORBIDDEN = frozenset({
    "flask", "werkzeug", "sqlalchemy", "alembic", "psycopg", "psycopg2", "gunicorn",
    "socket", "ssl", "select", "selectors", "asyncio", "http", "urllib.request",
})

_PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(*names: str) -> set[str]:
    """``sys.modules`` after importing each named module and, for a package, all of it."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *names], check=True, capture_output=True, text=True)
    return set(json.loads(done.stdout))


def io_modules(loaded: set[str]) -> set[str]:
    """The forbidden modules among ``loaded`` (a forbidden name forbids its submodules)."""
    return {name for name in loaded if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}


def ours(loaded: set[str]) -> set[str]:
    """The package's own modules among ``loaded``, the package root (no imports of its own) aside."""
    return {name for name in loaded if name.startswith("byterange_server.")}
