"""The expiry sweep on a real database (both kinds) and real local storage: one holder of the job
lease at a time, and writers racing the sweep never leave an extent without its bytes, nor bytes
without their resource."""

from __future__ import annotations

import datetime as dt

import pytest

from byterange_server.db import clock
from byterange_server.db import models
from byterange_server.db.ledger import extents
from byterange_server.errors import ResourceGoneError
from byterange_server.errors import ResourceNotFoundError
from byterange_server.uploads.expiry import ExpirySweeper

from .helpers import put


@pytest.fixture
def later(service):
    """Put the expiry of everything created so far in the past (and nothing else: the leases
    of live writers keep running on the database's clock)."""

    def jump() -> None:
        with service.db.write() as conn:
            past = clock.utcnow() - dt.timedelta(seconds=5)
            conn.execute(models.resources.update().values(expires_at=past))

    return jump


def extents_of(service, resource_id):
    with service.db.read() as conn:
        return extents.extents_within(conn, resource_id, 0, 1 << 40)


def test_one_holder_at_a_time_and_a_dead_holders_lease_lapses(service, monkeypatch):
    first = ExpirySweeper(service, interval=10, holder="host-a:1")
    second = ExpirySweeper(service, interval=10, holder="host-b:2")
    assert first.run_once() == 0
    assert second.run_once() is None  # first holds it
    assert first.run_once() == 0  # renewing is fine
    # first dies: after three intervals its lease has run out and second takes over.
    monkeypatch.setattr(clock, "offset_ms", 31_000)
    assert second.run_once() == 0
    assert first.run_once() is None


def test_the_sweep_removes_rows_and_bytes(service, later):
    stale = service.allocate(length=8)
    put(service, stale.id, 0, b"abcd", length=8)
    done = service.allocate(length=2)
    put(service, done.id, 0, b"ok", length=2)
    later()
    assert ExpirySweeper(service, interval=10).run_once() == 1
    with pytest.raises(ResourceNotFoundError):
        service.state(stale.id)
    assert not service.storage.exists(stale.id) and extents_of(service, stale.id) == []
    assert service.state(done.id).complete  # complete resources never expire


def test_a_writer_racing_the_sweep_keeps_the_resource_until_it_is_done(service, later):
    resource = service.allocate(length=8)
    sweeper = ExpirySweeper(service, interval=10)
    swept: list[int | None] = []

    def mid_body(index: int) -> None:
        if index == 1:  # the resource expires while this write is in flight, and a sweep runs
            later()
            swept.append(sweeper.run_once())

    # The write began before the expiry: it may commit, but the resource is expired by the time
    # it answers.
    with pytest.raises(ResourceGoneError):
        put(service, resource.id, 0, b"abcd", length=8, on_chunk=mid_body)
    assert swept == [0]  # the sweep skipped it: a live writer held it
    assert [(e.start, e.stop) for e in extents_of(service, resource.id)] == [(0, 4)]
    with service.open_object(resource.id) as stored:
        assert stored.read_at(0, 4) == b"abcd"  # the committed extent has its bytes
    # Once the writer is gone, the next sweep removes rows and bytes together.
    assert sweeper.run_once() == 1
    assert not service.storage.exists(resource.id) and extents_of(service, resource.id) == []
    # A writer arriving now finds nothing, and creates no file.
    with pytest.raises((ResourceNotFoundError, ResourceGoneError)):
        put(service, resource.id, 4, b"efgh", length=8)
    assert not service.storage.exists(resource.id)


def test_a_writer_that_completes_during_the_sweep_wins(service, later):
    resource = service.allocate(length=8)
    put(service, resource.id, 0, b"abcd", length=8)
    sweeper = ExpirySweeper(service, interval=10)
    swept: list[int | None] = []

    def mid_body(index: int) -> None:
        if index == 1:
            later()
            swept.append(sweeper.run_once())

    state = put(service, resource.id, 4, b"efgh", length=8, on_chunk=mid_body)
    assert state.complete and swept == [0]
    assert sweeper.run_once() == 0
    with service.open_object(resource.id) as stored:
        assert stored.read_at(0, 8) == b"abcdefgh"
