"""The extent ledger: every SQL statement about resources, extents and reservations, one module
per table.

- :mod:`.resources` — the ``resources`` rows: creation, lookup, the state snapshot, completion,
  deletion, the quota count;
- :mod:`.extents` — the committed ranges, kept coalesced;
- :mod:`.reservations` — what live writers hold under a lease: reservations and write slots;
- :mod:`.pieces` — the pieces of a tus final upload (``concat_sources``);
- :mod:`.jobs` — ``job_leases``: the expiry sweep's lease and the digest of a final's.

Callers import the module they use (``from ..db.ledger import reservations``); the time comes
from :mod:`byterange_server.db.clock`.

Theory of operation
-------------------
A write goes through three short transactions and never holds one while bytes stream:

1. **reserve** — lock the resource row, refuse if a *live* reservation overlaps the range
   (409 + ``Retry-After``), drop expired ones, insert ours with a lease, and read the committed
   extents inside the range (the writer compares those bytes instead of writing them).
2. **renew** — while streaming, push the lease forward; finding the reservation gone means the
   resource was deleted or the lease was lost, and the writer stops.
3. **commit** — after the storage ``sync()``: lock the resource row, check the reservations are
   still ours, fix the length, merge the new extents (coalescing with neighbours), drop the
   reservations.

On PostgreSQL the row lock is ``SELECT … FOR UPDATE``; on SQLite the write transaction starts
with ``BEGIN IMMEDIATE`` (see :mod:`byterange_server.db.engine`), which serialises writers the same way.
Readers (HEAD, GET) take no lock: extents are only ever added in one committed step.
"""
