"""Leases and expiry follow the database's clock, not the clock of the host asking: a host whose
clock runs minutes ahead must neither take over a live writer's range nor expire a resource early
(tests/e2e/test_multihost.py shows it with a second server under libfaketime)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from byterange_server.db import clock
from byterange_server.db.engine import Database
from byterange_server.db.ledger import jobs
from byterange_server.db.ledger import reservations
from byterange_server.db.ledger import resources
from byterange_server.errors import WriteInProgressError

AHEAD = 600.0  # seconds: far past any lease, short of the expiry below


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def host_ahead(monkeypatch):
    """Call it to become the other host, whose own clock (``time.time``, ``datetime.now``) runs
    ten minutes ahead of the one that wrote the rows so far."""
    real_time = time.time
    real_utcnow = clock.utcnow

    def jump() -> None:
        monkeypatch.setattr(time, "time", lambda: real_time() + AHEAD)
        monkeypatch.setattr(clock, "utcnow", lambda: real_utcnow() + dt.timedelta(seconds=AHEAD))

    return jump


def create(db: Database, resource_id: str, *, expires_in: float = 3600.0) -> None:
    with db.write() as conn:
        resources.insert_resource(
            conn,
            resource_id,
            length=100,
            content_type=None,
            filename=None,
            expected_digest=None,
            expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=expires_in),
        )


def test_the_database_clock_is_the_time(db) -> None:
    with db.read() as conn:
        now_ms, now = conn.execute(select(clock.NOW_MS.label("ms"), clock.NOW.label("at"))).one()
    assert abs(now_ms / 1000 - time.time()) < 5  # one machine here: the two clocks agree
    assert abs((clock.aware(now) - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5


def test_a_host_ahead_cannot_take_over_a_live_reservation(db, host_ahead) -> None:
    create(db, "r")
    with db.write() as conn:
        held = reservations.reserve(conn, "r", 0, 10, lease_seconds=30)
    host_ahead()
    with pytest.raises(WriteInProgressError) as caught, db.write() as conn:
        reservations.reserve(conn, "r", 5, 15, lease_seconds=30)
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 5
    with pytest.raises(WriteInProgressError), db.write() as conn:
        reservations.reserve_many(conn, "r", [(20, 30), (8, 12)], lease_seconds=30)
    with db.read() as conn:
        assert reservations.live(conn, [held]) == [held]
        assert reservations.has_live_writers(conn, "r")


def test_a_host_ahead_cannot_take_a_live_job_lease(db, host_ahead) -> None:
    with db.write() as conn:
        assert jobs.take_lease(conn, "expiry", "host-a", seconds=30)
    host_ahead()
    with db.write() as conn:
        assert not jobs.take_lease(conn, "expiry", "host-b", seconds=30)


def test_a_host_ahead_does_not_expire_a_resource_early(db, host_ahead) -> None:
    create(db, "r", expires_in=60.0)
    host_ahead()
    with db.read() as conn:
        record = resources.load_resource(conn, "r")  # not ResourceGoneError
        assert not record.is_expired()
        assert resources.expired_resource_ids(conn, limit=10) == []


def test_leases_and_expiry_run_out_on_the_database_clock(db, monkeypatch) -> None:
    create(db, "r", expires_in=60.0)
    with db.write() as conn:
        held = reservations.reserve(conn, "r", 0, 10, lease_seconds=30)
    monkeypatch.setattr(clock, "offset_ms", 61_000)
    with db.write() as conn:
        assert reservations.live(conn, [held]) == []
        assert resources.expired_resource_ids(conn, limit=10) == ["r"]
        taken = reservations.reserve(conn, "r", 0, 10, lease_seconds=30)
    assert taken != held
