"""Alembic environment: the URL comes from the caller (``byterange_server.db.migrate``) or from
``BYTERANGE_DATABASE_URL`` when the ``alembic`` command is run by hand."""

from __future__ import annotations

from alembic import context

from byterange_server.config import Settings
from byterange_server.db import models  # noqa: F401  (registers the tables on Base.metadata)
from byterange_server.db.engine import Base
from byterange_server.db.engine import create_db_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_db_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    is_postgresql = connection.dialect.name == "postgresql"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if is_postgresql:
            # Two hosts running "db upgrade" at once during a deploy must not interleave.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7243215)")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
