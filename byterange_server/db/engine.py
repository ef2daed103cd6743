"""Engine, declarative base and the two kinds of transaction the service uses.

- :meth:`Database.read` — a plain transaction. On SQLite in WAL mode readers never wait for
  writers; on PostgreSQL they read committed data without locks. HEAD and GET use only these.
- :meth:`Database.write` — a short write transaction. On SQLite it starts with
  ``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read lock; on PostgreSQL the
  caller locks the resource row (``SELECT … FOR UPDATE``). No write transaction is ever held
  while request bytes stream in: they reserve, then stream, then commit.

SQLite runs with ``synchronous=FULL`` so a commit is on disk when it returns: the extent table is
the record of what is durable. ``write(durable=False)`` is for rows that mean nothing after a
crash (reservations, leases, write slots): on SQLite it commits with ``synchronous=NORMAL``, which
in WAL mode skips the ``fsync``. The WAL is one append-only file, so the next durable commit's
``fsync`` makes it durable too, and a crash that loses it also ends every process that could act
on it (SQLite lives on the application's own host). PostgreSQL commits every write durably.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import MetaData
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase

from ..errors import ByterangeError

# Every constraint has a name, so Alembic (SQLite batch mode included) can drop it.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: ``Connection.info`` key under which ``Database.write`` collects the :func:`after_commit`
#: callbacks of its transaction.
_AFTER_COMMIT_KEY = "byterange_after_commit"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DatabaseUnavailableError(ByterangeError):
    status = 503
    code = "database-unavailable"
    title = "Database unavailable"


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the connection settings this project relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


#: A pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """``pool_pre_ping``, but only for a connection that sat in the pool for more than
    :data:`PING_AFTER_IDLE` seconds: one just returned by the request before answered a moment
    ago, and a ping per checkout was a round trip of every HEAD. A server that went away within
    that second fails the request's statement instead; the error marks the connection
    disconnected (the pool drops it), and the request answers 503 with Retry-After."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["byterange_returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("byterange_returned")
        if returned is None or time.monotonic() - returned <= PING_AFTER_IDLE:
            return  # just opened (info is cleared when a connection is replaced) or just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one).
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


#: SQLite result codes after which a connection may be stuck in a state that a fresh one would not
#: share (read-only fallback, a file replaced or unlinked, an I/O error on the WAL or its index).
_SQLITE_STALE_CONNECTION_ERRORS = ("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_NOTADB")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        record.info["opened"] = time.monotonic()  # see _on_checkin
        # Let SQLAlchemy's "begin" event, not the driver, decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    # A connection that met a read-only or failing database file must not be reused, nor may
    # any other connection of this process that was open then: SQLite shares one shared-memory
    # index (the WAL's -shm file) among all connections of a process, and when it could only
    # open it read-only (SQLITE_READONLY_*: the file was not writable at the time) every new
    # connection inherits that until all of them are closed. A pool that kept any of them
    # would answer 503 long after the file is writable again. So such an error closes this
    # connection (reported as a disconnect), the idle ones, and every other one at its
    # check-in; the next transaction opens afresh.
    stale = {"before": 0.0}

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        if not _is_stale_sqlite_error(context.original_exception):
            return
        # The failed statement's cursor would keep the connection open after close (SQLite
        # defers closing a connection with unfinalized statements; the traceback holds them).
        cursor = getattr(context, "cursor", None) or getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()
        context.is_disconnect = True
        stale["before"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record.dbapi_connection is not None and record.info.get("opened", 0.0) <= stale["before"]:
            record.invalidate()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("byterange_single", False):
            return  # Database.single: the statement runs in the driver's autocommit
        immediate = options.get("byterange_write", False)
        if immediate:
            # Set outside the transaction, and only when it changes (it is per connection).
            synchronous = "FULL" if options.get("byterange_durable", True) else "NORMAL"
            if connection.info.get("byterange_synchronous", "FULL") != synchronous:
                connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
                connection.info["byterange_synchronous"] = synchronous
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns the engine of one app; see the module docstring for the transaction kinds."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_db_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with _translate_errors(self.engine), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def single(self) -> Iterator[Connection]:
        """A connection for exactly one read statement, outside a transaction: one SELECT
        reads one consistent snapshot on both databases by itself, so the ``BEGIN`` and
        ``COMMIT`` round trips of :meth:`read` would buy nothing."""
        with _translate_errors(self.engine), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # The driver is in autocommit already (see _configure_sqlite); only our "begin"
                # listener must not open a transaction. (SQLAlchemy's AUTOCOMMIT level would
                # reset the driver's isolation_level at check-in.)
                yield conn.execution_options(byterange_single=True)
            else:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction; callbacks queued with :func:`after_commit` run after it
        commits, and are dropped if it rolls back. ``durable=False``: see the module
        docstring."""
        with _translate_errors(self.engine), self.engine.connect() as conn:
            conn = conn.execution_options(byterange_write=True, byterange_durable=durable)
            # conn.info lives with the pooled DBAPI connection: set and cleared per transaction.
            callbacks: list[Callable[[], None]] = []
            conn.info[_AFTER_COMMIT_KEY] = callbacks
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop(_AFTER_COMMIT_KEY, None)
        for callback in callbacks:
            callback()

    def ping(self) -> None:
        """Health check: one round trip to the database.

        :raises DatabaseUnavailableError: if it does not answer.
        """
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``conn`` has committed, never if it rolls back
    (the lifecycle events' effects outside the database). On a connection that is not a
    :meth:`Database.write` transaction it runs at once."""
    pending = conn.info.get(_AFTER_COMMIT_KEY)
    if pending is None:
        callback()
    else:
        pending.append(callback)


@contextlib.contextmanager
def _translate_errors(engine: Engine) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if _is_stale_sqlite_error(exc.orig):
            # The failed connection is closed by now (see _configure_sqlite); the idle ones go
            # too, all at once: reopening them one by one while the others stay open would
            # inherit their read-only shared memory forever.
            engine.pool.dispose()
        # No SQL or connection strings reach the client; the log has the cause.
        raise DatabaseUnavailableError(headers={"Retry-After": "1"}) from exc


def _is_stale_sqlite_error(error: BaseException | None) -> bool:
    name = getattr(error, "sqlite_errorname", None) or ""
    return name.startswith(_SQLITE_STALE_CONNECTION_ERRORS)
