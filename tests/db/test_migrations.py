"""The schema comes only from Alembic; a drift between models and migrations fails here."""

from __future__ import annotations

import sqlalchemy
from alembic.script import ScriptDirectory

from byterange_server.db import migrate


def test_upgrade_head_matches_models(database_url: str) -> None:
    # database_url is already at head (copied from a migrated template); check compares
    # the live schema with the models and raises on any difference.
    migrate.check(database_url)
    assert migrate.current(database_url) == _head()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    migrate.downgrade(database_url, "base")
    engine = sqlalchemy.create_engine(database_url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()
    assert tables == set()
    migrate.upgrade(database_url)
    migrate.check(database_url)


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_constraints_reject_malformed_extents(database_url: str) -> None:
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO resources (id, status, created_at, updated_at) "
                "VALUES ('r' , 'incomplete', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        for start, stop in [(-1, 5), (5, 5), (6, 5)]:
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"INSERT INTO extents (resource_id, start, stop) VALUES ('r', {start}, {stop})"
                    )
            except sqlalchemy.exc.IntegrityError:
                continue
            raise AssertionError(f"extent [{start}, {stop}) was accepted")
    finally:
        engine.dispose()


def _head() -> str:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head
