"""The lease keeper: one thread renews the leases of slow writes, lets an idle one lapse, and
fences the writers of a deleted resource within a tick (they never reach its recreation)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from sqlalchemy import event

from byterange_server.db import models
from byterange_server.errors import ResourceNotFoundError
from byterange_server.errors import WriteInProgressError
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.raw import RawDecoder
from byterange_server.uploads.leases import LeaseKeeper
from byterange_server.uploads.values import Creator
from byterange_server.uploads.values import WriteOptions

from .helpers import ListBody
from .helpers import multipart
from .helpers import multipart_decoder
from .helpers import put
from .helpers import with_settings


def test_deleting_a_resource_ends_its_live_writer(service) -> None:
    resource = service.allocate(length=10)

    def delete_midway(index: int) -> None:
        if index == 1:
            service.delete(resource.id)

    with pytest.raises(ResourceNotFoundError):
        put(service, resource.id, 0, b"0123456789", 10, on_chunk=delete_midway)
    assert not service.storage.exists(resource.id)


def test_slow_live_writer_keeps_its_range(service) -> None:
    # Body chunks arrive slower than the lease lasts: only the keeper thread's renewals hold it.
    quick = with_settings(service, lease_seconds=0.6)
    resource = quick.allocate(length=10)
    probes: list[str] = []

    def stall(index: int) -> None:
        if index == 1:
            time.sleep(1.5)
            try:
                put(quick, resource.id, 0, b"0", 10)
                probes.append("accepted")
            except WriteInProgressError:
                probes.append("409")

    put(quick, resource.id, 0, b"0123456789", 10, on_chunk=stall)
    assert probes == ["409"]
    assert quick.state(resource.id).complete


def test_streaming_writes_share_one_keeper_thread(service) -> None:
    """Three bodies stalled mid-stream are kept by one thread, not a thread per request."""
    resource = service.allocate(length=30)
    others = set(threading.enumerate())  # other services' keepers (each app has its own)
    arrived = threading.Barrier(4, timeout=30)
    go = threading.Event()

    def stall(index: int) -> None:
        if index == 1:
            arrived.wait()
            go.wait(30)

    writers = [
        threading.Thread(
            target=put, args=(service, resource.id, 10 * n, b"x" * 10, 30), kwargs={"on_chunk": stall}
        )
        for n in range(3)
    ]
    for writer in writers:
        writer.start()
    arrived.wait()
    keepers = [
        thread for thread in set(threading.enumerate()) - others if thread.name.startswith("byterange-lease")
    ]
    go.set()
    for writer in writers:
        writer.join(30)
    assert len(keepers) == 1
    assert service.state(resource.id).complete


def test_idle_writer_loses_its_range_and_writes_nothing_after(service) -> None:
    quick = with_settings(service, lease_seconds=0.6, write_idle_seconds=0.2)
    resource = quick.allocate(length=10)

    def stall(index: int) -> None:
        if index == 1:
            time.sleep(1.5)  # idle: the keeper stops renewing and the lease lapses
            put(quick, resource.id, 0, b"01234XXXXX", 10)  # another writer takes the range

    with pytest.raises(WriteInProgressError):
        put(quick, resource.id, 0, b"0123456789", 10, on_chunk=stall)
    with quick.open_object(resource.id) as stored:
        assert stored.read_at(0, 10) == b"01234XXXXX"  # the late writer overwrote nothing
    assert quick.state(resource.id).complete


@pytest.mark.parametrize("keeper", ["polling", "late"])
def test_a_write_whose_resource_was_deleted_never_reaches_its_recreation(service, monkeypatch, keeper):
    """The audit's sequence: a multipart PATCH reserves [0, 100000) with only its fields sent;
    the resource is deleted and created again under the same (derived) id; another writer
    completes it; then the first writer's bytes arrive. Whether the keeper fenced the first
    writer already or not yet ("late"), they never reach the new resource."""

    if keeper == "late":
        monkeypatch.setattr(LeaseKeeper, "_poll", lambda self, sessions: None, raising=False)
    creator = Creator(resource_id="signed-derived-id-0123")
    length = 100_000
    first, second = b"1" * length, b"2" * length
    service.allocate(length=length, creator=creator)
    body = multipart([(0, first)], length)
    fields_end = body.index(b"\r\n\r\n") + 4
    happened: list[str] = []

    def meanwhile(index: int) -> None:
        if index == 1:  # the fields arrived and [0, 100000) is reserved: the bytes have not
            service.delete(creator.resource_id)
            service.allocate(length=length, creator=creator)
            state = put(service, creator.resource_id, 0, second, length)
            happened.append("second writer completed" if state.complete else "incomplete")

    with pytest.raises(ResourceNotFoundError):
        service.write(
            creator.resource_id,
            multipart_decoder(),
            ListBody([body[:fields_end], body[fields_end:]], on_chunk=meanwhile),
        )
    assert happened == ["second writer completed"]
    state = service.state(creator.resource_id)
    assert state.complete and state.record.sha256 == hashlib.sha256(second).digest()
    with service.open_object(creator.resource_id) as stored:
        assert stored.read_at(0, length) == second
    with service.db.read() as conn:
        assert conn.execute(models.reservations.select()).all() == []


def test_delete_fences_a_stalled_writer_at_once(service) -> None:
    """The DELETE's own transaction ends the reservations; the keeper sees it within a tick and
    cuts the body (``on_stale``), whatever the lease, and the write answers 404 having written
    nothing more."""
    resource = service.allocate(length=10)
    cut = threading.Event()

    def stall(index: int) -> None:
        if index == 1:
            service.delete(resource.id)
            # Released by the keeper's cut; the bound only keeps a broken build from hanging.
            cut.wait(30)

    body = ListBody([b"01234", b"56789"], on_chunk=stall)
    with pytest.raises(ResourceNotFoundError) as info:
        service.write(
            resource.id,
            RawDecoder(PartHeader.from_fields((("content-range", "bytes 0-9/10"),))),
            body,
            WriteOptions(on_stale=cut.set),
        )
    assert cut.is_set(), "the keeper never cut the body of the deleted resource's writer"
    assert "deleted while this request was writing" in info.value.detail


def test_the_keeper_polls_all_its_writes_in_one_statement(service) -> None:
    """Three stalled writers on three resources: the keeper asks about all three in one
    statement per tick, not one each."""
    resources = [service.allocate(length=10) for _ in range(3)]
    arrived = threading.Barrier(4, timeout=30)
    go = threading.Event()
    polls: list[str] = []

    def stall(index: int) -> None:
        if index == 1:
            arrived.wait()
            go.wait(30)

    def before(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "byterange-leases" and statement.lstrip().startswith("SELECT"):
            polls.append(statement + " " + str(parameters))

    writers = [
        threading.Thread(target=put, args=(service, r.id, 0, b"x" * 10, 10), kwargs={"on_chunk": stall})
        for r in resources
    ]
    event.listen(service.db.engine, "before_cursor_execute", before)
    try:
        for writer in writers:
            writer.start()
        arrived.wait()
        with service.db.read() as conn:
            ids = [row.id for row in conn.execute(models.reservations.select()).all()]
        assert len(ids) == 3
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(all(rid in poll for rid in ids) for poll in polls):
            time.sleep(0.05)
        time.sleep(1.0)  # a few more ticks, all three writes still kept
        seen = list(polls)
    finally:
        go.set()
        for writer in writers:
            writer.join(30)
        event.remove(service.db.engine, "before_cursor_execute", before)
    covering = [index for index, poll in enumerate(seen) if all(rid in poll for rid in ids)]
    assert covering, seen
    # From then on every statement of the keeper's that names one of them names all three.
    later = [poll for poll in seen[covering[0] :] if any(rid in poll for rid in ids)]
    assert len(later) >= 2 and all(all(rid in poll for rid in ids) for poll in later), later
    assert all(service.state(r.id).complete for r in resources)
