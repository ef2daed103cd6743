"""The service layer against a real database (both kinds) and the real local storage.

These pin the invariants the HTTP layer cannot see directly: bytes are synced before the extent
row that claims them is committed, reservations conflict and expire, a lost lease or a deleted
resource stops a writer, and completion survives a crash between commit and hashing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import hypothesis
import pytest
from hypothesis import strategies as st
from sqlalchemy import event

from byterange_server import ledger
from byterange_server.errors import ContentMismatchError
from byterange_server.errors import ResourceGoneError
from byterange_server.errors import ResourceNotFoundError
from byterange_server.errors import TruncatedBodyError
from byterange_server.errors import WriteInProgressError
from byterange_server.extents import Extent
from byterange_server.protocol.raw import RawDecoder
from byterange_server.service import WriteOptions


class ListBody:
    """A BodySource over a list of chunks; ``interrupted`` simulates a short body."""

    def __init__(self, chunks: list[bytes], *, interrupted: bool = False, on_chunk=None) -> None:
        self.chunks = chunks
        self.interrupted = interrupted
        self.on_chunk = on_chunk

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.on_chunk is not None:
                self.on_chunk(index)
            yield chunk

    def digest(self, algorithm: str) -> bytes:
        return hashlib.new(algorithm.replace("-", ""), b"".join(self.chunks)).digest()


def put(service, resource_id: str, start: int, data: bytes, length: int | str = "*", **kwargs):
    fields = (("content-range", f"bytes {start}-{start + len(data) - 1}/{length}"),)
    middle = len(data) // 2
    chunks = [data[:middle], data[middle:]] if middle else [data]
    return service.write(resource_id, RawDecoder(fields), ListBody(chunks, **kwargs))


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

    real_add = ledger.add_extents

    def tracking_add(conn, resource_id, new):
        events.append("commit-extents")
        return real_add(conn, resource_id, new)

    monkeypatch.setattr(service.storage, "open", tracking_open)
    monkeypatch.setattr(ledger, "add_extents", tracking_add)
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


def test_a_write_takes_three_transactions_and_only_its_commit_is_durable(service) -> None:
    """The early read, the reservation (no fsync: it means nothing after a crash), and the
    durable commit, which also reads the state for the response."""
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
    assert len(groups) == 3, statements
    (_, read), (reserve_sync, reserve), (commit_sync, commit) = groups
    assert not any(sql.startswith(("INSERT", "UPDATE", "DELETE")) for sql in read)
    assert reserve_sync == "NORMAL" and any(sql.startswith("INSERT INTO reservations") for sql in reserve)
    assert commit_sync == "FULL" and any(sql.startswith("INSERT INTO extents") for sql in commit)
    # Durable again for whatever uses the connection next.
    with service.db.write() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_overlapping_live_reservation_conflicts_with_retry_after(service) -> None:
    resource = service.allocate(length=100)
    with service.db.write() as conn:
        ledger.reserve(conn, resource.id, 10, 20, lease_seconds=30)
    with pytest.raises(WriteInProgressError) as info:
        put(service, resource.id, 15, b"x" * 10, 100)
    assert 1 <= int(info.value.headers["Retry-After"]) <= 30
    # Disjoint ranges proceed.
    put(service, resource.id, 20, b"y" * 10, 100)
    assert service.state(resource.id).extents == [Extent(20, 30)]


def test_expired_reservation_frees_its_range(service) -> None:
    resource = service.allocate(length=100)
    with service.db.write() as conn:
        ledger.reserve(conn, resource.id, 0, 100, lease_seconds=0.05)
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
            conn.execute(ledger.reservations.delete())

    with pytest.raises(WriteInProgressError):
        put(service, resource.id, 0, b"0123456789", 10, on_chunk=steal)
    assert service.state(resource.id).extents == []


def test_deleting_a_resource_ends_its_live_writer(service) -> None:
    resource = service.allocate(length=10)

    def delete_midway(index: int) -> None:
        if index == 1:
            service.delete(resource.id)

    with pytest.raises(ResourceNotFoundError):
        put(service, resource.id, 0, b"0123456789", 10, on_chunk=delete_midway)
    assert not service.storage.exists(resource.id)


def test_interrupted_write_keeps_the_prefix_under_persist(service) -> None:
    resource = service.allocate(length=10)
    fields = (("content-range", "bytes 0-9/10"),)
    with pytest.raises(TruncatedBodyError):
        service.write(resource.id, RawDecoder(fields), ListBody([b"0123"], interrupted=True))
    assert service.state(resource.id).extents == [Extent(0, 4)]


def test_interrupted_write_keeps_nothing_under_atomic(service) -> None:
    resource = service.allocate(length=10)
    fields = (("content-range", "bytes 0-9/10"),)
    with pytest.raises(TruncatedBodyError):
        service.write(
            resource.id,
            RawDecoder(fields),
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


def test_completion_survives_a_crash_before_hashing(service, monkeypatch) -> None:
    resource = service.allocate(length=4)
    monkeypatch.setattr(type(service), "_finalize", lambda self, resource_id: None)
    put(service, resource.id, 0, b"abcd", 4)
    monkeypatch.undo()
    state = service.state(resource.id)  # the next reader finishes the job
    assert state.complete
    assert state.record.sha256 == hashlib.sha256(b"abcd").digest()


def test_extents_coalesce(service) -> None:
    resource = service.allocate()
    for start in (0, 20, 10, 5, 15):
        put(service, resource.id, start, b"x" * 5)
    assert service.state(resource.id).extents == [Extent(0, 25)]


def test_expired_incomplete_resources_are_gone_then_removed(app, service) -> None:
    resource = service.allocate(length=10)
    put(service, resource.id, 0, b"01", 10)
    with service.db.write() as conn:
        conn.execute(
            ledger.resources.update().values(expires_at=ledger.utcnow().replace(year=2000))
        )
    with pytest.raises(ResourceGoneError):
        service.state(resource.id)
    assert service.remove_expired() == 1
    with pytest.raises(ResourceNotFoundError):
        service.state(resource.id)
    assert not service.storage.exists(resource.id)


def _with_settings(service, **changes):
    from dataclasses import replace

    from byterange_server.service import UploadService

    return UploadService(replace(service.settings, **changes), service.db, service.storage)


def test_slow_live_writer_keeps_its_range(service) -> None:
    # Body chunks arrive slower than the lease lasts: only the keeper thread's renewals hold it.
    quick = _with_settings(service, lease_seconds=0.6)
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
    quick = _with_settings(service, lease_seconds=0.6, write_idle_seconds=0.2)
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
    from types import SimpleNamespace

    from byterange_server.config import Settings
    from byterange_server.service import _Part
    from byterange_server.service import _WriteSession

    session = _WriteSession(SimpleNamespace(settings=Settings(), db=None), "x", WriteOptions())
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
