"""The clock every row is stamped with: the database's, so that hosts whose clocks disagree
still agree on which lease has run out and which resource has expired.

Every decision that compares a deadline with "now" (a reservation's or write slot's lease, a
job lease, a hook delivery lease, garbage due, a resource's expiry) evaluates "now" in SQL, in
the same statement that reads or writes the deadline: :data:`NOW_MS` (milliseconds since the
epoch, the unit of every ``*_ms`` column) and :data:`NOW` (an aware UTC timestamp). A host
whose clock runs minutes ahead therefore cannot take over a range whose writer still holds it,
nor expire a resource early. PostgreSQL evaluates ``clock_timestamp()`` on the primary; SQLite
reads the clock of its own (one) host through ``julianday('now')``, fixed for one statement.

:func:`utcnow` stays for stamps that decide nothing (event times, ``created_at``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import DateTime
from sqlalchemy import bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

#: Milliseconds added to the database's clock as this process reads it. Always 0 in service:
#: tests move time forward with it (``monkeypatch.setattr(clock, "offset_ms", ...)``), on
#: SQLite and PostgreSQL alike. Read at each execution, so cached statements follow it.
offset_ms = 0


def _offset() -> int:
    return offset_ms


def _offset_param(compiler: Any, **kw: Any) -> str:
    # Read at execution (``callable_``), never part of a statement's cache key.
    return compiler.process(bindparam("clock_offset_ms", callable_=_offset, type_=BigInteger()), **kw)


class _NowMs(ColumnElement[int]):
    """The database's clock in milliseconds since the epoch, plus ``offset_ms``."""

    type = BigInteger()
    inherit_cache = True


class _At(ColumnElement[dt.datetime]):
    """The database's clock ``after_ms`` from now, plus ``offset_ms``, as a timestamp."""

    type = DateTime(timezone=True)
    inherit_cache = True
    _traverse_internals = [("after_ms", InternalTraversal.dp_clauseelement)]

    def __init__(self, after_ms: int) -> None:
        self.after_ms = bindparam(None, after_ms, type_=BigInteger())


@compiles(_NowMs, "postgresql")
def _now_ms_postgresql(element: _NowMs, compiler: Any, **kw: Any) -> str:
    return "(CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT) + {})".format(
        _offset_param(compiler, **kw)
    )


@compiles(_NowMs, "sqlite")
def _now_ms_sqlite(element: _NowMs, compiler: Any, **kw: Any) -> str:
    # 2440587.5 is the Julian day of the Unix epoch.
    return "(CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) + {})".format(
        _offset_param(compiler, **kw)
    )


@compiles(_At, "postgresql")
def _at_postgresql(element: _At, compiler: Any, **kw: Any) -> str:
    return "(clock_timestamp() + ({} + {}) * interval '1 millisecond')".format(
        _offset_param(compiler, **kw), compiler.process(element.after_ms, **kw)
    )


@compiles(_At, "sqlite")
def _at_sqlite(element: _At, compiler: Any, **kw: Any) -> str:
    # The text form SQLAlchemy stores SQLite datetimes in (UTC, six fractional digits), so that
    # stored values and this compare as strings in time order.
    return "(strftime('%Y-%m-%d %H:%M:%f', julianday('now') + ({} + {}) / 86400000.0) || '000')".format(
        _offset_param(compiler, **kw), compiler.process(element.after_ms, **kw)
    )


#: The database's "now" in milliseconds since the epoch (a SQL expression).
NOW_MS: ColumnElement[int] = _NowMs()
#: The database's "now" as an aware UTC timestamp (a SQL expression).
NOW: ColumnElement[dt.datetime] = _At(0)


def ms_from_now(seconds: float) -> ColumnElement[int]:
    """The database's clock ``seconds`` from now, in milliseconds (a SQL expression)."""
    return NOW_MS + int(seconds * 1000)


def at_from_now(seconds: float) -> ColumnElement[dt.datetime]:
    """The database's clock ``seconds`` from now, as a timestamp (a SQL expression)."""
    return _At(int(seconds * 1000))


def utcnow() -> dt.datetime:
    """This host's clock: for stamps that decide nothing (event times, ``created_at``)."""
    return dt.datetime.now(dt.timezone.utc)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as an aware UTC datetime: SQLite returns naive ones; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
