"""The extent map's data: the committed-ranges document lists the ranges in flight (live
reservations) beside the committed ones, behind the same authentication and ownership checks."""

from __future__ import annotations

from typing import Any

import pytest

from byterange_server import create_app
from byterange_server.db import clock
from byterange_server.db.ledger import reservations

from .helpers import MOUNT
from .helpers import allocate
from .helpers import committed_link
from .helpers import problem
from .helpers import write


def reserve(service: Any, path: str, start: int, stop: int, *, lease_seconds: float = 30.0) -> str:
    """Hold ``[start, stop)`` as a live writer would, without a request."""
    with service.db.write() as conn:
        return reservations.reserve(conn, path.rsplit("/", 1)[1], start, stop, lease_seconds=lease_seconds)


def document(client: Any, path: str, query: str = "") -> dict[str, Any]:
    response = client.get(committed_link(client.head(path).headers) + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_in_flight_lists_live_reservations_merged_and_in_order(client, service):
    path = allocate(client, 100)
    write(client, path, 0, b"x" * 10, 100)
    reserve(service, path, 60, 80)
    reserve(service, path, 20, 30)
    reserve(service, path, 30, 40)  # touching: one range
    body = document(client, path)
    assert body["ranges"] == [[0, 9]]
    assert body["in_flight"] == [[20, 39], [60, 79]]


def test_in_flight_is_empty_without_writers(client):
    path = allocate(client, 100)
    assert document(client, path)["in_flight"] == []


def test_an_expired_reservation_is_not_in_flight(client, service, monkeypatch):
    path = allocate(client, 100)
    reserve(service, path, 0, 50, lease_seconds=1)
    monkeypatch.setattr(clock, "offset_ms", 2000)  # the database's clock: the lease has run out
    assert document(client, path)["in_flight"] == []


def test_in_flight_follows_the_page_it_is_on(client, service):
    path = allocate(client, 100)
    for offset in (0, 20, 40):
        write(client, path, offset, b"y", 100)
    reserve(service, path, 10, 15)
    reserve(service, path, 50, 60)
    first = document(client, path, "?limit=2")
    assert first["ranges"] == [[0, 0], [20, 20]] and first["in_flight"] == [[10, 14], [50, 59]]
    second = client.get(first["next"]).get_json()
    assert second["ranges"] == [[40, 40]] and second["in_flight"] == [[50, 59]]


def test_a_finished_write_leaves_nothing_in_flight(client):
    path = allocate(client, 100)
    write(client, path, 0, b"z" * 100, 100)
    assert document(client, path) == {"ranges": [[0, 99]], "next": None, "in_flight": []}


ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789abc"


@pytest.fixture
def auth_app(settings_overrides: dict[str, Any]) -> Any:
    app = create_app({**settings_overrides, "AUTH": "required", "TOKENS": f"alice:{ALICE} bob:{BOB}"})
    yield app
    app.extensions["byterange"].db.dispose()


def test_in_flight_respects_authentication_and_ownership(auth_app):
    client, service = auth_app.test_client(), auth_app.extensions["byterange"]
    alice = {"Authorization": f"Bearer {ALICE}"}
    created = client.post(MOUNT, headers={**alice, "Upload-Length": "100"})
    assert created.status_code == 201
    path = created.headers["Location"].split("//", 1)[1].split("/", 1)[1]
    path = "/" + path
    reserve(service, path, 0, 50)
    url = path + "/committed-ranges"
    problem(client.get(url), 401)
    problem(client.get(url, headers={"Authorization": f"Bearer {BOB}"}), 403)
    assert client.get(url, headers=alice).get_json()["in_flight"] == [[0, 49]]
