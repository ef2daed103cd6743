"""The outbox on a real database (SQLite and PostgreSQL): one row per committed event and none
for a rolled-back change, leases that keep one worker per resource, strict order per resource
through retries, give-up, progress coalescing, pruning."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.db import clock
from byterange_server.errors import ContentMismatchError
from byterange_server.hooks import outbox as sql
from byterange_server.hooks.delivery import backoff
from byterange_server.uploads.lifecycle import EventSink
from byterange_server.uploads.values import Creator

from ..uploads.helpers import put


def test_a_committed_change_writes_exactly_one_row(outbox) -> None:
    state = outbox.service.allocate(length=4, creator=Creator(owner="token:alice"))
    rows = outbox.rows()
    assert [(row.kind, row.resource_id, row.status, row.attempts) for row in rows] == [
        ("created", state.id, "pending", 0)
    ]


def test_a_refused_write_writes_nothing(outbox) -> None:
    state = outbox.service.allocate(length=4)
    put(outbox.service, state.id, 0, b"ab", length=4)
    before = len(outbox.rows())
    with pytest.raises(ContentMismatchError):
        put(outbox.service, state.id, 0, b"xy", length=4)
    assert len(outbox.rows()) == before == 2


def test_a_rolled_back_change_writes_nothing(outbox) -> None:
    class Refuse(EventSink):
        def in_transaction(self, conn, event) -> None:
            raise RuntimeError("roll it back")

    outbox.service.events.subscribe(Refuse())  # after the outbox sink: its row was written
    with pytest.raises(RuntimeError):
        outbox.service.allocate(length=4)
    assert outbox.rows() == []


def test_events_are_delivered_once_each_in_order_through_failures(outbox) -> None:
    outbox.receiver.fail_first = 2
    state = outbox.service.allocate(length=8, filename="a.bin")
    put(outbox.service, state.id, 4, b"5678", length=8)
    put(outbox.service, state.id, 0, b"1234", length=8)
    outbox.service.delete(state.id)
    outbox.drain()
    received = outbox.receiver.received
    assert [body["type"] for body in received] == ["created", "progress", "progress", "completed", "deleted"]
    assert len({body["id"] for body in received}) == 5
    assert [body["sequence"] for body in received] == sorted(body["sequence"] for body in received)
    assert set(outbox.receiver.attempts.values()) == {3}
    assert received[0]["data"]["filename"] == "a.bin"
    assert received[2]["data"] == {"ranges": [[0, 4]], "offset": 8}
    assert all(row.status == "delivered" and row.attempts == 3 for row in outbox.rows())
    assert all(row.last_error is None and row.lease_holder is None for row in outbox.rows())


def test_a_failure_holds_back_the_resources_later_events_only(outbox) -> None:
    first = outbox.service.allocate(length=2)
    second = outbox.service.allocate(length=2)
    worker = outbox.make_worker()
    failing = {first.id}

    def target(row) -> None:
        if row.resource_id in failing:
            raise sql_error("down for this one")
        outbox.receiver(row)

    from byterange_server.hooks.delivery import DeliveryError as sql_error

    worker.targets["python"] = target
    put(outbox.service, first.id, 0, b"ab", length=2)
    put(outbox.service, second.id, 0, b"ab", length=2)
    worker.run_once()
    assert outbox.receiver.kinds(first.id) == []
    assert outbox.receiver.kinds(second.id) == ["created", "progress", "completed"]
    failing.clear()
    outbox.drain(worker)
    assert outbox.receiver.kinds(first.id) == ["created", "progress", "completed"]


def test_a_leased_head_is_not_claimed_by_another_worker(outbox) -> None:
    first = outbox.service.allocate(length=2)
    second = outbox.service.allocate(length=2)
    now = clock.utcnow()
    with outbox.service.db.write() as conn:
        a = sql.claim(conn, holder="a", lease_ms=60_000, now=now)
    with outbox.service.db.write() as conn:
        b = sql.claim(conn, holder="b", lease_ms=60_000, now=now)
    with outbox.service.db.write() as conn:
        c = sql.claim(conn, holder="c", lease_ms=60_000, now=now)
    assert a is not None and b is not None
    assert {a.resource_id, b.resource_id} == {first.id, second.id}
    assert c is None  # both heads leased; nothing else is a head


def test_later_events_of_a_resource_wait_for_its_head(outbox) -> None:
    state = outbox.service.allocate(length=4)
    put(outbox.service, state.id, 0, b"ab", length=4)
    now = clock.utcnow()
    with outbox.service.db.write() as conn:
        head = sql.claim(conn, holder="a", lease_ms=60_000, now=now)
    assert head is not None and head.kind == "created"
    with outbox.service.db.write() as conn:
        assert sql.claim(conn, holder="b", lease_ms=60_000, now=now) is None
    with outbox.service.db.write() as conn:
        assert sql.fail(conn, head, holder="a", error="boom", retry_at=now + dt.timedelta(hours=1))
    with outbox.service.db.write() as conn:
        # The head is pending in backoff: the progress behind it still waits.
        assert sql.claim(conn, holder="b", lease_ms=60_000, now=now) is None


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish(outbox) -> None:
    outbox.service.allocate(length=4)
    now = clock.utcnow()
    with outbox.service.db.write() as conn:
        stale = sql.claim(conn, holder="a", lease_ms=-1, now=now)  # expired at once
    with outbox.service.db.write() as conn:
        fresh = sql.claim(conn, holder="b", lease_ms=60_000, now=now)
    assert stale is not None and fresh is not None and fresh.event_id == stale.event_id
    with outbox.service.db.write() as conn:
        assert not sql.succeed(conn, stale, holder="a", now=now)
        assert not sql.fail(conn, stale, holder="a", error="late", retry_at=None)
        assert sql.succeed(conn, fresh, holder="b", now=now)
    assert [row.status for row in outbox.rows()] == ["delivered"]


def test_an_event_is_given_up_after_its_attempts_and_the_next_goes_out(
    outbox, hook_settings, caplog
) -> None:
    import dataclasses

    state = outbox.service.allocate(length=2)
    settings = dataclasses.replace(hook_settings, hook_max_attempts=2)
    calls: list[str] = []

    def target(row) -> None:
        calls.append(row.kind)
        if row.kind == "created":
            raise DeliveryError("never")

    from byterange_server.hooks.delivery import DeliveryError

    put(outbox.service, state.id, 0, b"ab", length=2)
    worker = outbox.make_worker(settings, target=target)
    with caplog.at_level(logging.WARNING):
        outbox.drain(worker)
    assert calls == ["created", "created", "progress", "completed"]
    rows = outbox.rows()
    assert [(row.kind, row.status, row.attempts) for row in rows] == [
        ("created", "abandoned", 2),
        ("progress", "delivered", 1),
        ("completed", "delivered", 1),
    ]
    assert rows[0].last_error == "never"
    assert "given up after 2 attempts" in caplog.text


def test_an_event_older_than_the_max_age_is_given_up_at_its_next_failure(outbox, hook_settings) -> None:
    import dataclasses

    from byterange_server.hooks.delivery import DeliveryError

    outbox.service.allocate(length=2)
    settings = dataclasses.replace(hook_settings, hook_max_age=0.0)

    def target(row) -> None:
        raise DeliveryError("down")

    outbox.drain(outbox.make_worker(settings, target=target))
    assert [(row.status, row.attempts) for row in outbox.rows()] == [("abandoned", 1)]


def test_progress_is_coalesced_and_released_by_the_next_event(outbox, hook_settings) -> None:
    outbox.sink.progress_interval = 3600.0  # held far longer than the test
    state = outbox.service.allocate(length=8)
    outbox.drain()
    put(outbox.service, outbox.service.allocate(length=2).id, 0, b"xy", length=2)
    put(outbox.service, state.id, 2, b"34", length=8)
    put(outbox.service, state.id, 6, b"78", length=8)
    put(outbox.service, state.id, 4, b"56", length=8)
    progress = [row for row in outbox.rows() if row.kind == "progress" and row.resource_id == state.id]
    assert len(progress) == 1
    worker = outbox.make_worker()
    worker.run_once()
    assert outbox.receiver.kinds(state.id) == ["created"]  # the progress is held
    put(outbox.service, state.id, 0, b"12", length=8)  # still merges, then completes: released
    outbox.drain(worker)
    assert outbox.receiver.kinds(state.id) == ["created", "progress", "completed"]
    progress_body = outbox.receiver.received[-2]
    assert progress_body["data"] == {"ranges": [[0, 8]], "offset": 8}
    assert progress_body["id"] == progress[0].event_id  # the key of the row it merged into


def test_a_progress_behind_a_failing_head_absorbs_later_progress(outbox) -> None:
    outbox.sink.progress_interval = 0.001
    state = outbox.service.allocate(length=6)
    from byterange_server.hooks.delivery import DeliveryError

    def down(row) -> None:
        raise DeliveryError("down")

    outbox.make_worker(target=down).run_once()
    put(outbox.service, state.id, 0, b"12", length=6)
    put(outbox.service, state.id, 4, b"56", length=6)
    assert [row.kind for row in outbox.rows()] == ["created", "progress"]
    outbox.drain()
    assert outbox.receiver.received[-1]["data"] == {"ranges": [[0, 2], [4, 6]], "offset": 2}


def test_workers_in_parallel_keep_each_resources_order(outbox, hook_settings) -> None:
    """Four workers (as four processes would) drain 12 resources concurrently: per resource,
    events arrive in order, each once, and never two of one resource at the same time."""
    in_flight: set[str] = set()
    overlaps: list[str] = []
    guard = threading.Lock()

    def target(row) -> None:
        with guard:
            if row.resource_id in in_flight:
                overlaps.append(row.resource_id)
            in_flight.add(row.resource_id)
        time.sleep(0.002)
        with guard:
            in_flight.discard(row.resource_id)
        outbox.receiver(row)

    ids = []
    for _ in range(12):
        state = outbox.service.allocate(length=4)
        put(outbox.service, state.id, 2, b"cd", length=4)
        put(outbox.service, state.id, 0, b"ab", length=4)
        outbox.service.delete(state.id)
        ids.append(state.id)
    workers = [outbox.make_worker(holder=f"w{n}", target=target) for n in range(4)]
    threads = [threading.Thread(target=worker.run_once) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlaps == []
    for resource_id in ids:
        kinds = outbox.receiver.kinds(resource_id)
        assert kinds == ["created", "progress", "progress", "completed", "deleted"]
    assert len(outbox.receiver.received) == len({body["id"] for body in outbox.receiver.received}) == 60


def test_finished_rows_are_pruned_after_the_retention(outbox) -> None:
    outbox.service.allocate(length=4)
    pending = outbox.service.allocate(length=4)
    with outbox.service.db.write() as conn:
        head = sql.claim(conn, holder="a", lease_ms=60_000, now=clock.utcnow())
        assert head is not None
        sql.succeed(conn, head, holder="a", now=clock.utcnow())
    with outbox.service.db.write() as conn:
        assert sql.prune(conn, before=clock.utcnow() - dt.timedelta(hours=1)) == 0
        assert sql.prune(conn, before=clock.utcnow() + dt.timedelta(seconds=1)) == 1
    assert [row.resource_id for row in outbox.rows()] == [pending.id]


def test_the_backoff_doubles_within_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (9, 60.0), (40, 60.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff(attempts, base=1.0, cap=60.0, rng=rng) <= ceiling


def test_merge_ranges_unites_and_joins_touching() -> None:
    assert sql.merge_ranges([[4, 6], [0, 2]], [[2, 3], [8, 9]], [[5, 8]]) == [[0, 3], [4, 9]]
    assert sql.merge_ranges([]) == []


def test_the_expiry_sweep_records_expired(outbox, monkeypatch) -> None:
    state = outbox.service.allocate(length=4)
    monkeypatch.setattr(clock, "offset_ms", (outbox.service.settings.expire_after + 1) * 1000)
    assert outbox.service.remove_expired() == 1
    rows = [(row.kind, row.resource_id) for row in outbox.rows()]
    assert rows == [("created", state.id), ("expired", state.id)]


RANGE = st.tuples(st.integers(0, 200), st.integers(1, 40)).map(lambda t: [t[0], t[0] + t[1]])


@given(st.lists(RANGE, max_size=12))
def test_merge_ranges_is_the_exact_union_as_disjoint_sorted_ranges(ranges) -> None:
    half = len(ranges) // 2
    merged = sql.merge_ranges(ranges[:half], ranges[half:])
    covered = {byte for start, stop in ranges for byte in range(start, stop)}
    assert {byte for start, stop in merged for byte in range(start, stop)} == covered
    assert all(start < stop for start, stop in merged)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))  # sorted, apart, not touching
