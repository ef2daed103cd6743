"""The clock every row is stamped with: aware UTC datetimes, and milliseconds for leases.

One place to read the time, so a test (or, later, a database-side clock) replaces it for every
module at once: callers use ``clock.utcnow()`` through the module, not a copied name.
"""

from __future__ import annotations

import datetime as dt
import time


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def now_ms() -> int:
    """Milliseconds since the epoch: the unit of every ``lease_expires_ms`` column."""
    return int(time.time() * 1000)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as an aware UTC datetime: SQLite returns naive ones; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
