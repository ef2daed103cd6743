"""The write session against a real database (both kinds) and the real local storage.

These pin the invariants the HTTP layer cannot see directly: bytes are synced before the extent
row that claims them is committed, a write takes three short transactions, reservations
conflict and expire, a lost lease stops a writer, interruptions keep what the transaction mode
says, and parts are reserved in batches.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from types import SimpleNamespace

import hypothesis
import pytest
from hypothesis import strategies as st
from sqlalchemy import event

from byterange_server.config import Settings
from byterange_server.db import models
from byterange_server.db.ledger import extents
from byterange_server.db.ledger import reservations
from byterange_server.errors import ContentMismatchError
from byterange_server.errors import LimitExceededError
from byterange_server.errors import OverlappingPartsError
from byterange_server.errors import TruncatedBodyError
from byterange_server.errors import WriteInProgressError
from byterange_server.extents import Extent
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.raw import RawDecoder
from byterange_server.uploads.values import WriteOptions
from byterange_server.uploads.writes import WriteSession
from byterange_server.uploads.writes import _Part

from .helpers import ListBody
from .helpers import multipart
from .helpers import multipart_decoder
from .helpers import put
from .helpers import with_settings


def test_bytes_are_synced_before_the_extent_commits(service, monkeypatch) -> None:
    resource = service.allocate(length=8)
    events: list[str] = []
    real_open = service.storage.open

    def tracking_open(resource_id):
        stored = real_open(resource_id)
        real_sync = stored.sync

        def sync():
            events.append("sync")
            real_sync()

        stored.sync = sync
        return stored

    real_add = extents.add_extents

    def tracking_add(conn, resource_id, new):
        events.append("commit-extents")
        return real_add(conn, resource_id, new)

    monkeypatch.setattr(service.storage, "open", tracking_open)
    monkeypatch.setattr(extents, "add_extents", tracking_add)
    put(service, resource.id, 0, b"abcd", 8)
    assert events == ["sync", "commit-extents"]


def _transactions(statements: list[str]) -> list[tuple[str, list[str]]]:
    """SQLite statements grouped per transaction: (synchronous setting in force, statements)."""
    synchronous, groups = "FULL", []
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            synchronous = statement.partition("=")[2]
        elif statement.startswith("BEGIN"):
            groups.append((synchronous, []))
        elif groups:
            groups[-1][1].append(statement)
    return groups


def test_a_write_takes_two_transactions_and_only_its_commit_is_durable(service) -> None:
    """The early read (one statement, outside any transaction), the reservation (no fsync: it
    means nothing after a crash), and the durable commit, which also reads the state for the
    response."""
    if service.db.dialect != "sqlite":
        pytest.skip("BEGIN and PRAGMA synchronous are SQLite statements")
    resource = service.allocate(length=8)
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(service.db.engine, "before_cursor_execute", before)
    try:
        state = put(service, resource.id, 0, b"abcd", 8)
    finally:
        event.remove(service.db.engine, "before_cursor_execute", before)
    assert state.extents == [Extent(0, 4)] and state.offset == 4
    groups = _transactions(statements)
    assert len(groups) == 2, statements
    (reserve_sync, reserve), (commit_sync, commit) = groups
    read = statements[: statements.index("BEGIN IMMEDIATE")]
    assert [sql.split()[0] for sql in read] == ["SELECT", "PRAGMA"], read
    assert reserve_sync == "NORMAL" and any(sql.startswith("INSERT INTO reservations") for sql in reserve)
    assert commit_sync == "FULL" and any(sql.startswith("INSERT INTO extents") for sql in commit)
    # Durable again for whatever uses the connection next.
    with service.db.write() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_overlapping_live_reservation_conflicts_with_retry_after(service) -> None:
    resource = service.allocate(length=100)
    with service.db.write() as conn:
        reservations.reserve(conn, resource.id, 10, 20, lease_seconds=30)
    with pytest.raises(WriteInProgressError) as info:
        put(service, resource.id, 15, b"x" * 10, 100)
    assert 1 <= int(info.value.headers["Retry-After"]) <= 30
    # Disjoint ranges proceed.
    put(service, resource.id, 20, b"y" * 10, 100)
    assert service.state(resource.id).extents == [Extent(20, 30)]


def test_expired_reservation_frees_its_range(service) -> None:
    resource = service.allocate(length=100)
    with service.db.write() as conn:
        reservations.reserve(conn, resource.id, 0, 100, lease_seconds=0.05)
    time.sleep(0.1)
    put(service, resource.id, 0, b"z" * 100, 100)
    assert service.state(resource.id).complete


def test_writer_that_lost_its_lease_commits_nothing(service) -> None:
    resource = service.allocate(length=10)

    def steal(index: int) -> None:
        if index == 0:
            return  # the reservation is taken once the first chunk has arrived
        # Another request took over the range after our lease ran out.
        with service.db.write() as conn:
            conn.execute(models.reservations.delete())

    with pytest.raises(WriteInProgressError):
        put(service, resource.id, 0, b"0123456789", 10, on_chunk=steal)
    assert service.state(resource.id).extents == []


def test_interrupted_write_keeps_the_prefix_under_persist(service) -> None:
    resource = service.allocate(length=10)
    fields = (("content-range", "bytes 0-9/10"),)
    with pytest.raises(TruncatedBodyError):
        service.write(
            resource.id, RawDecoder(PartHeader.from_fields(fields)), ListBody([b"0123"], interrupted=True)
        )
    assert service.state(resource.id).extents == [Extent(0, 4)]


def test_interrupted_write_keeps_nothing_under_atomic(service) -> None:
    resource = service.allocate(length=10)
    fields = (("content-range", "bytes 0-9/10"),)
    with pytest.raises(TruncatedBodyError):
        service.write(
            resource.id,
            RawDecoder(PartHeader.from_fields(fields)),
            ListBody([b"0123"], interrupted=True),
            WriteOptions(transaction="atomic"),
        )
    assert service.state(resource.id).extents == []
    # and its reservation is released, so a retry proceeds at once
    put(service, resource.id, 0, b"0123456789", 10)


def test_mismatch_applies_nothing_and_keeps_committed_bytes(service) -> None:
    resource = service.allocate(length=10)
    put(service, resource.id, 0, b"01234", 10)
    with pytest.raises(ContentMismatchError):
        put(service, resource.id, 0, b"0123X56789", 10)
    assert service.state(resource.id).extents == [Extent(0, 5)]
    with service.open_object(resource.id) as stored:
        assert stored.read_at(0, 5) == b"01234"


def test_extents_coalesce(service) -> None:
    resource = service.allocate()
    for start in (0, 20, 10, 5, 15):
        put(service, resource.id, start, b"x" * 5)
    assert service.state(resource.id).extents == [Extent(0, 25)]


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 12), st.booleans(), st.integers(0, 12)),
        max_size=25,
    )
)
def test_overlapping_parts_are_found_as_by_comparing_every_pair(spans) -> None:
    """The bisect index of ended parts (_overlapping_part) answers as the pairwise check did:
    a new part ``[start, limit)`` meets an earlier part when ``start < earlier stop`` and
    ``earlier start < limit``, where an earlier part without a declared end stops where its
    bytes did (possibly empty)."""

    session = WriteSession(SimpleNamespace(settings=Settings(), db=None), "x", WriteOptions())
    for start, size, declared, received in spans:
        limit = start + size + 1
        stop = limit if declared else None
        pairwise = [
            part.start
            for part in session.parts
            if start < (part.stop if part.stop is not None else part.start + part.received)
            and part.start < limit
        ]
        found = session._overlapping_part(start, limit)
        assert (found is not None) == bool(pairwise)
        assert found is None or found in pairwise
        if found is None:
            got = limit - start if declared else min(received, limit - start)
            session.parts.append(_Part(None, start, limit, stop, "r", [], received=got))  # type: ignore[arg-type]


def _chunks(body: bytes) -> list[bytes]:
    """As the body reader reads: 16 KiB first, then up to 1 MiB at a time."""
    out = [body[: 16 * 1024]]
    for offset in range(16 * 1024, len(body), 1024 * 1024):
        out.append(body[offset : offset + 1024 * 1024])
    return out


def _count_transactions(service):
    began: list[int] = []

    def on_begin(conn):
        began.append(1)

    event.listen(service.db.engine, "begin", on_begin)
    return began, lambda: event.remove(service.db.engine, "begin", on_begin)


def test_many_tiny_parts_take_a_transaction_per_batch_not_per_part(service) -> None:
    parts = 3000
    resource = service.allocate(length=parts)
    data = bytes(65 + i % 26 for i in range(parts))
    body = multipart([(i, data[i : i + 1]) for i in range(parts)], parts)
    began, stop = _count_transactions(service)
    try:
        state = service.write(resource.id, multipart_decoder(), ListBody(_chunks(body)))
    finally:
        stop()
    assert state.complete and state.record.sha256 == hashlib.sha256(data).digest()
    # Batches of at most 256 parts (and one per chunk): 12 here, plus the early read, the
    # commit and the completion's reads and writes. One per part was 3000+.
    assert len(began) <= 30, len(began)


def test_an_over_limit_request_is_refused_before_its_excess_is_reserved(service) -> None:
    """Sent as the body reader reads it: the batches of the chunks before the one that holds
    part 601 are reserved (parts the client sent in good faith), part 601 and the parts
    decoded with it never are; nothing is committed."""

    limited = with_settings(service, max_parts=600)
    resource = limited.allocate(length=601)
    body = multipart([(i, b"x") for i in range(601)], 601)
    inserted: list[int] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO reservations"):
            inserted.append(len(parameters) if executemany else 1)

    event.listen(limited.db.engine, "before_cursor_execute", before)
    try:
        with pytest.raises(LimitExceededError) as info:
            limited.write(resource.id, multipart_decoder(), ListBody(_chunks(body)))
    finally:
        event.remove(limited.db.engine, "before_cursor_execute", before)
    assert info.value.extra == {"max-parts": 600}
    first_chunk_parts = _chunks(body)[0].count(b"Content-Range")
    assert sum(inserted) <= first_chunk_parts < 600, inserted
    assert limited.state(resource.id).extents == []
    with limited.db.read() as conn:
        assert conn.execute(models.reservations.select()).all() == []


def test_an_over_limit_request_in_one_chunk_reserves_nothing(service) -> None:
    limited = with_settings(service, max_parts=50)
    resource = limited.allocate(length=100)
    body = multipart([(i, b"x") for i in range(51)], 100)
    began, stop = _count_transactions(limited)
    try:
        with pytest.raises(LimitExceededError):
            limited.write(resource.id, multipart_decoder(), ListBody([body]))
    finally:
        stop()
    assert len(began) == 1  # the early read: no reservation, no commit
    assert limited.state(resource.id).extents == []


def test_a_conflict_in_a_later_batch_applies_nothing_of_the_request(service) -> None:
    parts = 600
    resource = service.allocate(length=parts)
    with service.db.write() as conn:
        reservations.reserve(conn, resource.id, 500, 501, lease_seconds=30)  # another live writer
    body = multipart([(i, b"y") for i in range(parts)], parts)
    with pytest.raises(WriteInProgressError) as info:
        service.write(resource.id, multipart_decoder(), ListBody(_chunks(body)))
    assert info.value.extra == {"first": 500, "last": 500}
    assert 1 <= int(info.value.headers["Retry-After"]) <= 5
    assert service.state(resource.id).extents == []
    with service.db.read() as conn:
        left = conn.execute(models.reservations.select()).all()
    assert [(row.start, row.stop) for row in left] == [(500, 501)]  # only the other writer's


def test_overlapping_parts_within_one_batch_are_422(service) -> None:
    resource = service.allocate(length=100)
    body = multipart([(0, b"ab"), (10, b"cd"), (11, b"e")], 100)
    with pytest.raises(OverlappingPartsError):
        service.write(resource.id, multipart_decoder(), ListBody([body]))
    assert service.state(resource.id).extents == []


def test_an_interrupted_batch_commits_the_prefix_of_every_part(service) -> None:
    """Parts queued in the unreserved batch when the body ends early are reserved and written
    before the prefixes commit, as if each had been reserved on its own."""
    resource = service.allocate(length=1000)
    body = multipart([(i * 10, b"0123456789") for i in range(100)], 1000)
    cut = body.index(b"Content-Range: bytes 500-509") + 40  # inside part 51's bytes
    with pytest.raises(TruncatedBodyError):
        service.write(resource.id, multipart_decoder(), ListBody([body[:cut]], interrupted=True))
    # 50 whole parts and the 3 bytes of the 51st that arrived.
    assert service.state(resource.id).extents == [Extent(0, 503)]
    with service.open_object(resource.id) as stored:
        assert stored.read_at(0, 503) == b"0123456789" * 50 + b"012"


def _disjoint(rng, count: int, space: int, *, touching: bool) -> list[tuple[int, int]]:
    """Up to ``count`` random disjoint ranges in [0, space) (not even touching, unless asked)."""
    out: list[tuple[int, int]] = []
    for _ in range(count):
        start = rng.randrange(space)
        stop = min(space, start + rng.randint(1, 8))
        gap = 0 if touching else 1
        if all(stop + gap <= s or e + gap <= start for s, e in out):
            out.append((start, stop))
    return out


def test_batched_reservations_answer_as_one_at_a_time(service) -> None:
    """``reserve_many`` and ``extents_within_many`` agree with ``reserve`` and
    ``extents_within`` called per range, in order: the same first conflict (or none), the same
    lapsed reservations dropped, the same committed extents, through the batch reads and their
    per-range fallbacks for crowded spans."""

    rng = random.Random(20261203)
    resource = service.allocate(length=1000)
    seen = set()

    def outcome(conn, tag: str, run) -> tuple[str, object]:
        inner = conn.begin_nested()
        try:
            run()
            left = conn.execute(
                models.reservations.select().where(models.reservations.c.id.like(f"{tag}-%"))
            ).all()
            result: tuple[str, object] = ("ok", sorted(row.id for row in left))
        except WriteInProgressError as error:
            result = ("409", error.extra)
        inner.rollback()
        return result

    def one_at_a_time(conn, ranges):
        for start, stop in ranges:
            reservations.reserve(conn, resource.id, start, stop, lease_seconds=30)

    with service.db.write() as conn:
        for case in range(150):
            outer = conn.begin_nested()
            now = int(time.time() * 1000)  # this host is the database's too
            crowded = case % 5 == 0  # more rows than the batch bound: the per-range fallback
            existing = _disjoint(rng, 160 if crowded else 12, 300, touching=True)
            for index, (start, stop) in enumerate(existing):
                conn.execute(
                    models.reservations.insert().values(
                        id=f"r{case}-{index}",
                        resource_id=resource.id,
                        start=start,
                        stop=stop,
                        lease_expires_ms=now + (30_000 if rng.random() < 0.3 else -1_000),
                    )
                )
            for start, stop in _disjoint(rng, 160 if crowded else 12, 300, touching=False):
                conn.execute(models.extents.insert().values(resource_id=resource.id, start=start, stop=stop))
            starts = [rng.randrange(300) for _ in range(rng.randint(1, 4))]
            ranges = [(start, min(300, start + rng.randint(1, 6))) for start in starts]
            reserve_many = functools.partial(
                reservations.reserve_many, conn, resource.id, ranges, lease_seconds=30
            )
            batched = outcome(conn, f"r{case}", reserve_many)
            assert batched == outcome(conn, f"r{case}", functools.partial(one_at_a_time, conn, ranges)), case
            seen.add(batched[0])
            assert extents.extents_within_many(conn, resource.id, ranges) == [
                extents.extents_within(conn, resource.id, start, stop) for start, stop in ranges
            ], case
            outer.rollback()
    assert seen == {"ok", "409"}
