"""Hook fixtures: an outbox subscribed to the real service, driven by hand (no thread)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from byterange_server.db.models import hook_events
from byterange_server.hooks import OutboxSink
from byterange_server.hooks.delivery import DeliveryError
from byterange_server.hooks.delivery import DeliveryWorker
from byterange_server.hooks.outbox import OutboxRow


class Receiver:
    """A target that records what it was sent and fails the first ``fail_first`` attempts of
    each event."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.attempts: dict[str, int] = {}
        self.received: list[dict[str, Any]] = []

    def __call__(self, row: OutboxRow) -> None:
        tries = self.attempts[row.event_id] = self.attempts.get(row.event_id, 0) + 1
        if tries <= self.fail_first:
            raise DeliveryError(f"refused attempt {tries}")
        self.received.append(row.body())

    def kinds(self, resource_id: str | None = None) -> list[str]:
        return [body["type"] for body in self.received if resource_id in (None, body["resource"]["id"])]


@dataclasses.dataclass
class Outbox:
    service: Any
    receiver: Receiver
    sink: OutboxSink
    make_worker: Callable[..., DeliveryWorker]

    def rows(self) -> list[Any]:
        with self.service.db.read() as conn:
            return list(conn.execute(select(hook_events).order_by(hook_events.c.id)).all())

    def drain(self, worker: DeliveryWorker | None = None, rounds: int = 50) -> None:
        """Run the worker until nothing is pending (retries are due at once: base 0)."""
        worker = worker or self.make_worker()
        for _ in range(rounds):
            worker.run_once()
            if all(row.status != "pending" for row in self.rows()):
                return
        raise AssertionError(f"still pending after {rounds} rounds: {self.rows()}")


@pytest.fixture
def hook_settings(service) -> Any:
    return dataclasses.replace(
        service.settings,
        hook_python="unused:unused",
        hook_retry_base=0.0,
        hook_retry_max_delay=0.0,
        hook_progress_interval=0.0,
    )


@pytest.fixture
def outbox(service, hook_settings) -> Outbox:
    receiver = Receiver()
    sink = OutboxSink(
        kinds=frozenset({"created", "progress", "completed", "deleted", "expired"}),
        targets=("python",),
        progress_interval=hook_settings.hook_progress_interval,
    )
    service.events.subscribe(sink)

    def make_worker(settings: Any = None, holder: str | None = None, target: Any = None) -> DeliveryWorker:
        return DeliveryWorker(
            service.db, settings or hook_settings, {"python": target or receiver}, holder=holder
        )

    return Outbox(service, receiver, sink, make_worker)
