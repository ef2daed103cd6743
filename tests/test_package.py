"""The names the package itself offers (loaded on first use) resolve, setup.cfg ships it all, the
wheel holds it, and the client runs without the server's dependencies."""

from __future__ import annotations

import configparser
import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import byterange_server
from byterange_server.cli import SERVER_MODULES
from byterange_server.uploads.service import UploadService

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "byterange_server"


def test_every_lazy_name_of_the_package_resolves() -> None:
    for name in [*byterange_server.__all__, "EXTENSION_KEY"]:
        assert getattr(byterange_server, name) is not None, name
    assert byterange_server.UploadService is UploadService


def test_setup_cfg_lists_every_package() -> None:
    """setup.cfg lists the packages (find: cannot see the mapped migrations/): a package left
    out would be missing from the wheel while an editable install still finds it."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    root = REPO / "byterange_server"
    found = {
        ".".join(("byterange_server", *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py")
    }
    found |= {"byterange_server.migrations", "byterange_server.migrations.versions"}
    assert listed == found


def _listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_the_client_needs_none_of_the_server_dependencies() -> None:
    base = [r for r in importlib.metadata.requires("byterange-server") or [] if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_") for r in base}
    assert names == {"http_sf", "click", "urllib3", "tqdm"}
    server = [r for r in importlib.metadata.requires("byterange-server") or [] if 'extra == "server"' in r]
    assert {r.split(">")[0].lower().replace("-", "_") for r in server} == set(SERVER_MODULES)


# A subprocess in which the server's dependencies cannot be imported, as in a client-only install.
BLOCKER = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {SERVER_MODULES!r}:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Blocker())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name in {SERVER_MODULES!r} else _find(name, *a)
"""


def _without_server(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=60)


def test_the_byterange_command_runs_without_the_server_dependencies() -> None:
    done = _without_server(
        "from byterange_server.client.cli import main\n"
        "main(['--help'], prog_name='byterange', standalone_mode=False)\n"
        "import byterange_server.client, byterange_server.conformance.cli\n"
    )
    assert done.returncode == 0, done.stderr
    assert "upload" in done.stdout and "conformance" in done.stdout


def test_the_server_command_says_what_to_install_when_its_dependencies_are_missing() -> None:
    done = _without_server(
        "from byterange_server.cli import main\nmain(['db', 'current'], prog_name='byterange-server')\n"
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: the server's dependencies are not installed (flask, werkzeug, sqlalchemy, alembic, "
        "gunicorn, prometheus_client): pip install 'byterange-server[server]' "
        "(the client, byterange, needs none of them)"
    ]


@pytest.mark.slow
def test_the_wheel_holds_every_package_the_migrations_and_the_license(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("byterange_server-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _listed_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    migrations = {
        Path(name).name for name in names if name.startswith("byterange_server/migrations/versions/")
    }
    assert migrations >= {path.name for path in (REPO / "migrations" / "versions").glob("*.py")}
    assert "byterange_server/migrations/script.py.mako" in names
    static = {path.relative_to(REPO).as_posix() for path in (PACKAGE / "static").rglob("*") if path.is_file()}
    assert static and static <= names  # the browser uploader's pages and modules
    assert any(
        name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names
    )
