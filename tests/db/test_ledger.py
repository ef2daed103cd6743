"""The ledger on its own: a few statements of each module, on SQLite and PostgreSQL, without the
service (its rows are inserted and read here directly)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from byterange_server.db import clock
from byterange_server.db.engine import Database
from byterange_server.db.ledger import extents
from byterange_server.db.ledger import jobs
from byterange_server.db.ledger import pieces
from byterange_server.db.ledger import reservations
from byterange_server.db.ledger import resources
from byterange_server.db.models import STATUS_COMPLETE
from byterange_server.db.models import STATUS_INCOMPLETE
from byterange_server.errors import LengthConflictError
from byterange_server.errors import ResourceExistsError
from byterange_server.errors import ResourceGoneError
from byterange_server.errors import ResourceNotFoundError
from byterange_server.errors import TooManyWritesError
from byterange_server.errors import WriteInProgressError
from byterange_server.extents import Extent
from byterange_server.storage.composed import Piece


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def create(db: Database, resource_id: str, *, length: int | None = None, **columns) -> None:
    columns.setdefault("expires_at", clock.utcnow() + dt.timedelta(hours=1))
    with db.write() as conn:
        resources.insert_resource(
            conn,
            resource_id,
            length=length,
            content_type=None,
            filename=None,
            expected_digest=None,
            **columns,
        )


# -- resources -----------------------------------------------------------------------------------


def test_a_resource_row_is_inserted_once_and_read_back(db) -> None:
    create(db, "r1", length=10, owner="alice", storage_key="r1~g1")
    with pytest.raises(ResourceExistsError), db.write() as conn:
        resources.insert_resource(
            conn, "r1", length=3, content_type=None, filename=None, expected_digest=None, expires_at=None
        )
    with db.read() as conn:
        record = resources.load_resource(conn, "r1")
        assert (record.length, record.owner, record.status) == (10, "alice", STATUS_INCOMPLETE)
        assert record.object_key == "r1~g1" and record.created_at.tzinfo is not None
        assert resources.resource_owner(conn, "r1") == (True, "alice")
        assert resources.resource_owner(conn, "nope") == (False, None)
        assert resources.object_keys(conn, ["r1", "nope"]) == {"r1": "r1~g1"}
        with pytest.raises(ResourceNotFoundError):
            resources.load_resource(conn, "nope")


def test_an_expired_resource_is_gone_unless_asked_for(db) -> None:
    create(db, "old", expires_at=clock.utcnow() - dt.timedelta(seconds=1))
    with db.read() as conn:
        with pytest.raises(ResourceGoneError):
            resources.load_resource(conn, "old")
        assert resources.load_resource(conn, "old", expired_ok=True).id == "old"
        assert resources.expired_resource_ids(conn, now=clock.utcnow(), limit=10) == ["old"]


def test_the_length_is_fixed_once_and_never_below_committed_bytes(db) -> None:
    create(db, "r")
    with db.write() as conn:
        extents.add_extents(conn, "r", [Extent(0, 8)])
        record = resources.load_resource(conn, "r", for_update=True)
        with pytest.raises(LengthConflictError):
            resources.set_length(conn, record, 5)  # bytes are committed up to 8
        record = resources.set_length(conn, record, 8)
        assert resources.set_length(conn, record, 8).length == 8
        with pytest.raises(LengthConflictError):
            resources.set_length(conn, record, 9)
    with db.read() as conn:
        assert resources.load_resource(conn, "r").length == 8


def test_completion_is_recorded_once_for_the_generation_hashed(db) -> None:
    create(db, "r", length=1, storage_key="r~g2")
    with db.write() as conn:
        assert not resources.mark_complete(conn, "r", b"x" * 32, failed=False, storage_key="r~g1")
        assert resources.mark_complete(conn, "r", b"x" * 32, failed=False, storage_key="r~g2")
        assert not resources.mark_complete(conn, "r", b"y" * 32, failed=False)
    with db.read() as conn:
        record = resources.load_resource(conn, "r")
        assert record.is_complete and record.sha256 == b"x" * 32 and record.completed_at is not None


def test_the_snapshot_reads_extents_while_they_fit(db) -> None:
    create(db, "r", length=100)
    with db.write() as conn:
        extents.add_extents(conn, "r", [Extent(0, 10), Extent(20, 30), Extent(40, 50)])
    with db.read() as conn:
        whole = resources.load_snapshot(conn, "r", limit=10)
        assert whole.extents == [Extent(0, 10), Extent(20, 30), Extent(40, 50)] and not whole.truncated
        first = resources.load_snapshot(conn, "r", limit=1)
        assert first.extents == [Extent(0, 10)] and first.truncated
        two = resources.load_snapshot(conn, "r", limit=10, fits=lambda extent: extent.start < 20)
        assert two.extents == [Extent(0, 10), Extent(20, 30)] and two.truncated


@pytest.mark.parametrize("count", [0, 1, 2, 7, 8, 9, 30])
def test_the_joined_snapshot_is_the_snapshot_or_asks_for_it(db, count) -> None:
    create(db, "r", length=1000)
    with db.write() as conn:
        extents.add_extents(conn, "r", [Extent(10 * i, 10 * i + 5) for i in range(count)])
    cases = [{"limit": 1}, {"limit": 3}, {"limit": 1024}, {"limit": 1024, "fits": lambda e: e.start < 40}]
    for case in cases:
        with db.single() as conn:
            joined = resources.load_snapshot_joined(conn, "r", **case)
        with db.read() as conn:
            both = resources.load_snapshot(conn, "r", **case)
        if joined is None:  # only when the statement could not tell, never for an offset alone
            assert count >= resources.JOINED_EXTENTS and case["limit"] + 1 > resources.JOINED_EXTENTS
            continue
        assert (joined.extents, joined.truncated) == (both.extents, both.truncated), case
        assert joined.resource == dataclasses.replace(both.resource, read_at=joined.resource.read_at)


def test_the_joined_snapshot_refuses_what_load_resource_refuses(db) -> None:
    create(db, "old", length=10, expires_at=clock.utcnow() - dt.timedelta(seconds=5))
    with db.single() as conn:
        with pytest.raises(ResourceNotFoundError):
            resources.load_snapshot_joined(conn, "none", limit=1)
        with pytest.raises(ResourceGoneError):
            resources.load_snapshot_joined(conn, "old", limit=1)


def test_deletion_takes_the_rows_of_the_resource_with_it(db) -> None:
    create(db, "r", length=10)
    with db.write() as conn:
        extents.add_extents(conn, "r", [Extent(0, 4)])
        reservations.reserve(conn, "r", 4, 10, lease_seconds=30)
        assert resources.delete_resource(conn, "r")
        assert not resources.delete_resource(conn, "r")
        assert extents.extents_within(conn, "r", 0, 10) == []
        assert not reservations.has_live_writers(conn, "r")
        assert not resources.resource_row_exists(conn, "r")


def test_a_principals_usage_counts_its_open_resources(db) -> None:
    create(db, "a", length=10, owner="alice")
    create(db, "b", owner="alice")  # no length yet: counts 0 bytes
    create(db, "c", length=99, owner="bob")
    with db.write() as conn:
        assert resources.principal_usage(conn, "alice") == (2, 10)
        resources.mark_complete(conn, "a", b"x" * 32, failed=False)
        assert resources.principal_usage(conn, "alice") == (1, 0)


# -- extents -------------------------------------------------------------------------------------


def test_extents_coalesce_and_are_read_by_range(db) -> None:
    create(db, "r")
    with db.write() as conn:
        assert extents.add_extents(conn, "r", [Extent(10, 20)]) == [Extent(10, 20)]
        assert extents.add_extents(conn, "r", [Extent(30, 40)]) == [Extent(30, 40)]
        # Touching one neighbour and overlapping the other: one extent remains.
        assert extents.add_extents(conn, "r", [Extent(20, 35)]) == [Extent(10, 40)]
        assert extents.add_extents(conn, "r", [Extent(50, 60)]) == [Extent(50, 60)]
    with db.read() as conn:
        assert extents.extent_count(conn, "r") == 2
        assert extents.extents_within(conn, "r", 15, 55) == [Extent(15, 40), Extent(50, 55)]
        ranges = [(0, 12), (38, 52), (60, 70)]
        assert extents.extents_within_many(conn, "r", ranges) == [
            extents.extents_within(conn, "r", start, stop) for start, stop in ranges
        ]
        assert extents.page_extents(conn, "r", after=0, limit=1) == ([Extent(10, 40)], True)
        assert extents.page_extents(conn, "r", after=40, limit=5) == ([Extent(50, 60)], False)
        assert extents.committed_stop(conn, "r") == 60
        assert extents.prefix_stop(conn, "r") == 0 and not extents.is_covered(conn, "r", 60)


def test_the_prefix_is_the_extent_at_zero(db) -> None:
    create(db, "r")
    with db.write() as conn:
        extents.add_extents(conn, "r", [Extent(5, 9), Extent(0, 5)])
    with db.read() as conn:
        assert extents.prefix_stop(conn, "r") == 9
        assert extents.is_covered(conn, "r", 9) and not extents.is_covered(conn, "r", 10)
        assert extents.is_covered(conn, "r", 0)


# -- reservations and write slots ----------------------------------------------------------------


def test_a_live_reservation_refuses_an_overlapping_one_and_a_lapsed_one_frees_its_range(db) -> None:
    create(db, "r", length=100)
    with db.write() as conn:
        live = reservations.reserve(conn, "r", 10, 20, lease_seconds=30)
        with pytest.raises(WriteInProgressError) as refused:
            reservations.reserve(conn, "r", 15, 25, lease_seconds=30)
        assert refused.value.headers["Retry-After"] == "5"  # never more than 5 s
        lapsed = reservations.reserve(conn, "r", 40, 50, lease_seconds=-1)
        taken = reservations.reserve(conn, "r", 45, 55, lease_seconds=30)  # drops the lapsed one
        assert reservations.reservation_flags(conn, [live, lapsed, taken]) == {live: False, taken: False}
        assert reservations.reservations_alive(conn, [live, taken])
        assert not reservations.reservations_alive(conn, [live, lapsed])


def test_a_batch_of_reservations_is_all_or_nothing(db) -> None:
    create(db, "r", length=100)
    with db.write() as conn:
        reservations.reserve(conn, "r", 50, 60, lease_seconds=30)
    with pytest.raises(WriteInProgressError), db.write() as conn:
        reservations.reserve_many(conn, "r", [(0, 10), (10, 20), (55, 56)], lease_seconds=30)
    with pytest.raises(WriteInProgressError), db.write() as conn:
        reservations.reserve_many(conn, "r", [(0, 10), (5, 15)], lease_seconds=30)  # each other
    with db.write() as conn:
        ids = reservations.reserve_many(conn, "r", [(0, 10), (10, 20)], lease_seconds=30)
        assert len(ids) == 2 and reservations.live(conn, ids) != []
        reservations.release(conn, ids)
        assert reservations.live(conn, ids) == []


def test_a_revoked_reservation_is_never_renewed(db) -> None:
    create(db, "r", length=100)
    with db.write() as conn:
        revocable = reservations.reserve(conn, "r", 0, 10, lease_seconds=30, revocable=True)
        other = reservations.reserve(conn, "r", 10, 20, lease_seconds=30)
        assert reservations.renew(conn, [revocable, other], lease_seconds=30)
        assert reservations.revoke_writes(conn, "r") == [revocable]
        assert reservations.reservation_flags(conn, [revocable, other]) == {revocable: True, other: False}
        assert reservations.any_revoked(conn, [revocable]) and not reservations.any_revoked(conn, [other])
        assert not reservations.renew(conn, [revocable, other], lease_seconds=30)
        reservations.end_reservations(conn, "r")
        assert reservations.reservation_flags(conn, [revocable, other]) == {}


def test_write_slots_count_live_writes_per_resource_and_per_principal(db) -> None:
    create(db, "a", length=10)
    create(db, "b", length=10)
    limits = {"lease_seconds": 30, "max_per_resource": 1, "max_per_principal": 2}
    with db.write() as conn:
        first = reservations.take_write_slot(conn, "a", "alice", **limits)
        with pytest.raises(TooManyWritesError):
            reservations.take_write_slot(conn, "a", "bob", **limits)  # one per resource
        reservations.take_write_slot(conn, "b", "alice", **limits)
        assert reservations.has_live_writers(conn, "a")
    with pytest.raises(TooManyWritesError), db.write() as conn:
        # A third write of alice's, where no per-resource limit applies.
        reservations.take_write_slot(conn, "b", "alice", **{**limits, "max_per_resource": 0})
    with db.write() as conn:
        reservations.release_write_slot(conn, first)
        assert not reservations.has_live_writers(conn, "a")
        reservations.take_write_slot(conn, "a", "bob", **limits)


# -- pieces of final uploads ---------------------------------------------------------------------


def test_the_pieces_of_a_final_and_what_deletion_asks_of_them(db) -> None:
    create(db, "p1", length=3, concat="partial")
    create(db, "p2", length=2, concat="partial")
    create(db, "final", length=8, concat="final")
    with db.write() as conn:
        joined = [Piece(0, "p1", 0, 3), Piece(1, "p2", 3, 2), Piece(2, "p1", 5, 3)]
        pieces.insert_pieces(conn, "final", joined)
        assert pieces.load_pieces(conn, "final") == joined
        assert pieces.load_pieces(conn, "p1") == []
        assert pieces.finals_reading(conn, "p1") == ["final"]
        resources.mark_complete(conn, "p1", b"x" * 32, failed=False)
        assert pieces.source_statuses(conn, ["p1", "p2"]) == {"p1": STATUS_COMPLETE, "p2": STATUS_INCOMPLETE}
        resources.mark_terminated(conn, "p1")  # hidden while the final reads it
        with pytest.raises(ResourceNotFoundError):
            resources.load_resource(conn, "p1")
        assert pieces.unreferenced_terminated(conn, ["p1", "p2"]) == []
        resources.delete_resource(conn, "final")
        assert pieces.unreferenced_terminated(conn, ["p1", "p2"]) == ["p1"]


# -- job leases ----------------------------------------------------------------------------------


def test_one_holder_of_a_job_lease_at_a_time(db, monkeypatch) -> None:
    with db.write() as conn:
        assert jobs.take_lease(conn, "expiry", "a", seconds=10)  # the first lease inserts the row
        assert not jobs.take_lease(conn, "expiry", "b", seconds=10)
        assert jobs.take_lease(conn, "expiry", "a", seconds=10)  # renewing
    monkeypatch.setattr(clock, "offset_ms", 11_000)  # the database's clock: a's lease has run out
    with db.write() as conn:
        assert jobs.take_lease(conn, "expiry", "b", seconds=10)
        jobs.release_job_lease(conn, "expiry", "a")  # not a's any more: nothing happens
        assert not jobs.take_lease(conn, "expiry", "a", seconds=10)
        jobs.release_job_lease(conn, "expiry", "b")
        assert jobs.take_lease(conn, "expiry", "a", seconds=10)


def test_a_digest_job_name_fits_its_column() -> None:
    assert jobs.digest_job("abc") == "digest:abc"
    long = jobs.digest_job("x" * 64)
    assert len(long) <= 64 and long.startswith("digest:") and long != jobs.digest_job("y" * 64)
