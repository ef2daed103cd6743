"""Lifecycle events: published inside the transaction that makes them true, delivered after it
commits, never for a change that rolled back (real database, both kinds)."""

from __future__ import annotations

import datetime as dt

import pytest

from byterange_server.db import clock
from byterange_server.db.ledger import resources
from byterange_server.errors import ContentMismatchError
from byterange_server.uploads.lifecycle import EventSink
from byterange_server.uploads.values import Creator

from .helpers import put


class Recorder(EventSink):
    def __init__(self) -> None:
        self.in_tx: list[tuple[str, str, dict]] = []
        self.committed: list[tuple[str, str, dict]] = []
        self.fail_in_tx = False

    def in_transaction(self, conn, event) -> None:
        # The change is visible on the connection the event arrives with.
        if event.kind in ("created", "progress", "completed"):
            resources.load_resource(conn, event.resource_id, expired_ok=True)
        self.in_tx.append((event.kind, event.resource_id, dict(event.data)))
        if self.fail_in_tx:
            raise RuntimeError("sink refuses")

    def after_commit(self, event) -> None:
        self.committed.append((event.kind, event.resource_id, dict(event.data)))


@pytest.fixture
def recorder(service) -> Recorder:
    sink = Recorder()
    service.events.subscribe(sink)
    return sink


def test_the_life_of_a_resource(service, recorder) -> None:
    state = service.allocate(length=8, creator=Creator(owner="token:alice"))
    put(service, state.id, 4, b"5678", length=8)
    put(service, state.id, 0, b"1234", length=8)
    service.delete(state.id)
    kinds = [(kind, data.get("ranges"), data.get("offset")) for kind, _, data in recorder.committed]
    assert kinds == [
        ("created", None, None),
        ("progress", [[4, 8]], 0),
        ("progress", [[0, 4]], 8),
        ("completed", None, None),
        ("deleted", None, None),
    ]
    assert recorder.in_tx == recorder.committed
    assert {resource_id for _, resource_id, _ in recorder.committed} == {state.id}


def test_the_owner_travels_with_every_event(service) -> None:
    owners: list[str | None] = []

    class Owners(EventSink):
        def after_commit(self, event) -> None:
            owners.append(event.owner)

    service.events.subscribe(Owners())
    state = service.allocate(length=2, creator=Creator(owner="token:alice"))
    put(service, state.id, 0, b"ab", length=2)
    assert owners == ["token:alice"] * 3


def test_no_event_for_a_refused_write(service, recorder) -> None:
    state = service.allocate(length=4)
    put(service, state.id, 0, b"ab", length=4)
    with pytest.raises(ContentMismatchError):
        put(service, state.id, 0, b"xy", length=4)
    assert [kind for kind, _, _ in recorder.committed] == ["created", "progress"]


def test_a_sink_failing_in_the_transaction_rolls_the_change_back(service, recorder) -> None:
    recorder.fail_in_tx = True
    with pytest.raises(RuntimeError):
        service.allocate(length=4)
    assert recorder.committed == []
    with service.db.read() as conn:
        assert resources.expired_resource_ids(conn, now=clock.utcnow() + dt.timedelta(days=9), limit=9) == []


def test_a_sink_failing_after_commit_does_not_undo_the_change(service, caplog) -> None:
    class Broken(EventSink):
        def after_commit(self, event) -> None:
            raise RuntimeError("down")

    service.events.subscribe(Broken())
    state = service.allocate(length=4)
    assert service.state(state.id).id == state.id
    assert "event sink" in caplog.text


def test_the_sweep_publishes_expired(service, recorder, monkeypatch) -> None:
    state = service.allocate(length=4)
    monkeypatch.setattr(clock, "offset_ms", (service.settings.expire_after + 1) * 1000)
    assert service.remove_expired() == 1
    assert [kind for kind, _, _ in recorder.committed] == ["created", "expired"]
    assert recorder.committed[-1][1] == state.id


def test_counters_alone_do_not_cost_the_offset_query(service) -> None:
    seen: list[dict] = []

    class Counter(EventSink):
        def after_commit(self, event) -> None:
            seen.append(dict(event.data))

    service.events.subscribe(Counter())
    assert not service.events.recorded
    state = service.allocate(length=4)
    put(service, state.id, 0, b"ab", length=4)
    assert seen[-1] == {"ranges": [[0, 2]], "offset": None}
