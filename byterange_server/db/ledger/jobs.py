"""The ``job_leases`` rows: work that one holder at a time does, across workers and hosts.

Two kinds of job hold such a lease: the periodic expiry sweep (``expiry``, see
:mod:`byterange_server.uploads.expiry`) and the hashing of a final concatenation on its first
read (``digest:<id>``, see :mod:`byterange_server.uploads.concat`). Taking a lease is one
compare-and-set ``UPDATE`` (free, expired, or already ours), so on SQLite and PostgreSQL alike
exactly one holder wins; a holder that dies frees it when its lease runs out.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..models import job_leases


def digest_job(final_id: str) -> str:
    """The job of the one reader that hashes a final (ids are at most 64 characters, the
    column too: a longer id is hashed down)."""
    name = f"digest:{final_id}"
    return name if len(name) <= 64 else "digest:" + hashlib.sha256(final_id.encode()).hexdigest()[:48]


def take_lease(conn: Connection, name: str, holder: str, *, seconds: float) -> bool:
    """Take or renew the lease of job ``name``; False while another holder's lease is live."""
    # Both sides of the comparison are the database's clock: a host whose own clock runs ahead
    # cannot see a live lease of another host as run out.
    expires = clock.ms_from_now(seconds)
    free_or_ours = or_(job_leases.c.lease_expires_ms <= clock.NOW_MS, job_leases.c.holder == holder)
    taken = conn.execute(
        update(job_leases)
        .where(job_leases.c.name == name, free_or_ours)
        .values(holder=holder, lease_expires_ms=expires)
    )
    if taken.rowcount == 1:
        return True
    try:
        with conn.begin_nested():  # the first lease ever of this job: the row does not exist yet
            conn.execute(insert(job_leases).values(name=name, holder=holder, lease_expires_ms=expires))
    except IntegrityError:
        return False  # it exists, and another holder's lease is live
    return True


def release_job_lease(conn: Connection, name: str, holder: str | None = None) -> None:
    """Drop the lease row of job ``name`` (only if ``holder`` still holds it, when given)."""
    condition = job_leases.c.name == name
    if holder is not None:
        condition = condition & (job_leases.c.holder == holder)
    conn.execute(delete(job_leases).where(condition))
