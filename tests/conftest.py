"""Shared fixtures.

``database_url`` is parametrized over ``sqlite`` and ``postgresql``: every API and end-to-end test
that uses it runs on both. The schema always comes from ``alembic upgrade head``; each database
is migrated once into a template and copied for every test, so tests are isolated and fast.
PostgreSQL is a real server started by :mod:`tests.support.pgcluster`; ``--databases=sqlite`` skips it
for a quick local run, and CI always runs both.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from byterange_server import create_app
from byterange_server.db import migrate

from .support.ceph import CephUnavailable
from .support.ceph import binaries as ceph_binaries
from .support.ceph import ceph_server as start_ceph
from .support.pgcluster import create_database
from .support.pgcluster import drop_database
from .support.pgcluster import postgres_cluster
from .support.seaweedfs import seaweed_server

DATABASES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated databases to run the database-backed tests on (default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" in metafunc.fixturenames:
        chosen = [name for name in metafunc.config.getoption("--databases").split(",") if name]
        unknown = set(chosen) - set(DATABASES)
        if unknown:
            raise pytest.UsageError(f"unknown databases: {sorted(unknown)}")
        # A module may narrow them (ONLY_DATABASES): see tests/s3/test_api_on_s3_tus.py.
        narrowed = getattr(metafunc.module, "ONLY_DATABASES", DATABASES)
        metafunc.parametrize("database", [name for name in chosen if name in narrowed], scope="session")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, Any]]:
    with postgres_cluster() as base_url:
        template = create_database(base_url, "byterange_template")
        migrate.upgrade(template)
        yield {"base_url": base_url, "template": "byterange_template", "counter": itertools.count()}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real SeaweedFS on loopback with one bucket (tests/support/seaweedfs.py), started on first use."""
    with seaweed_server() as server:
        yield server


@pytest.fixture(scope="session")
def ceph_server() -> Iterator[dict[str, str]]:
    """A real single-node Ceph with RGW on loopback (tests/support/ceph.py), started on first use.

    Skipped where Ceph's Debian packages are not installed, unless ``BYTERANGE_TEST_CEPH=1``
    (``.ci/run`` sets it), which makes a missing or failing Ceph an error instead.
    """
    required = os.environ.get("BYTERANGE_TEST_CEPH") == "1"
    try:
        ceph_binaries()
    except CephUnavailable as exc:
        if required:
            raise
        pytest.skip(f"{exc}; BYTERANGE_TEST_CEPH=1 makes this an error")
    with start_ceph() as server:
        yield server


@pytest.fixture
def database_url(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of the kind under test, dropped after the test."""
    if database == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "byterange.sqlite3"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"byterange_test_{next(server['counter'])}"
    yield create_database(server["base_url"], name, template=server["template"])
    drop_database(server["base_url"], name)


@pytest.fixture
def settings_overrides(database_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "LEASE_SECONDS": "5",
        # Authentication has tests of its own (tests/api/test_auth.py); the rest test the protocols.
        "AUTH": "off",
        # The periodic sweep would run in a thread of every test app; tests sweep by hand.
        "CLEANUP_INTERVAL": "0",
    }


@pytest.fixture
def app(settings_overrides: dict[str, Any]) -> Iterator[Any]:
    application = create_app(settings_overrides)
    application.config["TESTING"] = True
    yield application
    application.extensions["byterange"].db.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def service(app: Any) -> Any:
    return app.extensions["byterange"]
