"""PostgreSQL: a pooled connection is pinged before use only after it idled in the pool (a
just-returned one is not: that was a round trip of every request), and one the server ended
meanwhile is replaced without the request seeing an error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from byterange_server.db import engine as engine_module
from byterange_server.db.engine import Database

ONLY_DATABASES = ("postgresql",)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def test_only_an_idle_pooled_connection_is_pinged(db, database_url, monkeypatch) -> None:
    pings: list[object] = []
    ping = db.engine.dialect.do_ping

    def counted(connection: object) -> bool:
        pings.append(connection)
        return ping(connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    with db.read() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with db.read() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == backend
    assert pings == []  # just returned: used as it is
    # The server ends the connection while it idles in the pool.
    other = Database(database_url)
    try:
        with other.write() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    finally:
        other.dispose()
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)
    time.sleep(0.05)
    with db.read() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != backend
    assert len(pings) == 1
