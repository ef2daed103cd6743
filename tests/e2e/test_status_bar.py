"""``byterange status URL``: the one-line extent map, with the ranges in flight, against gunicorn."""

from __future__ import annotations

import json

import pytest

from byterange_server.db.engine import Database
from byterange_server.db.ledger import reservations

from .conftest import MiB
from .test_client import run_cli

#: The client is what these tests exercise; the server's behaviour on both databases is the API and
#: server end-to-end suites' job. Once, on SQLite, keeps CI inside its 30 minutes.
ONLY_DATABASES = ("sqlite",)

pytestmark = pytest.mark.e2e


def test_status_draws_committed_in_flight_and_holes(gunicorn_server, tmp_path):
    size = 4 * MiB
    url = gunicorn_server.allocate(size)
    assert gunicorn_server.put_segment(url, 0, b"x" * MiB, size).ok
    # A live writer on the third MiB, as a request streaming it would hold.
    database = Database(gunicorn_server.database_url)
    try:
        with database.write() as conn:
            reservations.reserve(conn, url.rsplit("/", 1)[1], 2 * MiB, 3 * MiB, lease_seconds=60)
    finally:
        database.dispose()
    shown = run_cli("status", url, state_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("  map ")]
    cells = line.split()[1]
    quarter = len(cells) // 4
    assert cells == "█" * quarter + "░" * quarter + "▒" * quarter + "░" * (len(cells) - 3 * quarter), line
    as_json = json.loads(run_cli("status", url, "--json", state_dir=tmp_path).stdout)
    assert as_json["in_flight"] == [[2 * MiB, 3 * MiB - 1]]
    assert as_json["committed"] == [[0, MiB - 1]]


def test_status_of_a_complete_resource_is_a_full_bar(gunicorn_server, tmp_path):
    url = gunicorn_server.allocate(MiB)
    assert gunicorn_server.put_segment(url, 0, b"y" * MiB, MiB).ok
    shown = run_cli("status", url, state_dir=tmp_path)
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("  map ")]
    assert set(line.split()[1]) == {"█"}
    assert json.loads(run_cli("status", url, "--json", state_dir=tmp_path).stdout)["in_flight"] is None
