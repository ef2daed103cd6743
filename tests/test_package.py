"""The names the package itself offers (loaded on first use) resolve, and setup.cfg ships it all."""

from __future__ import annotations

import configparser
from pathlib import Path

import byterange_server
from byterange_server.uploads.service import UploadService

REPO = Path(__file__).resolve().parents[1]


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
