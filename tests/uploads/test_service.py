"""The service: completion survives a crash between commit and hashing, expired resources are
gone and then removed, and a derived id is created once."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlalchemy import event

from byterange_server.db import clock
from byterange_server.db import models
from byterange_server.db.ledger import resources
from byterange_server.errors import ResourceExistsError
from byterange_server.errors import ResourceGoneError
from byterange_server.errors import ResourceNotFoundError
from byterange_server.uploads.values import Creator

from ..support.stored import objects_of
from .helpers import put


def test_completion_survives_a_crash_before_hashing(service, monkeypatch) -> None:
    resource = service.allocate(length=4)
    # Completion does nothing, as if the process died before hashing: neither the write's own
    # step (its context's finalize) nor the state read that follows it.
    monkeypatch.setattr(type(service), "_finalize", lambda self, resource_id, storage_key=None: None)
    skip = dataclasses.replace(service.context, finalize=lambda resource_id, storage_key=None: None)
    monkeypatch.setattr(service, "context", skip)
    put(service, resource.id, 0, b"abcd", 4)
    monkeypatch.undo()
    state = service.state(resource.id)  # the next reader finishes the job
    assert state.complete
    assert state.record.sha256 == hashlib.sha256(b"abcd").digest()


def test_expired_incomplete_resources_are_gone_then_removed(app, service) -> None:
    resource = service.allocate(length=10)
    put(service, resource.id, 0, b"01", 10)
    with service.db.write() as conn:
        conn.execute(
            models.resources.update().values(expires_at=clock.utcnow().replace(year=2000))
        )
    with pytest.raises(ResourceGoneError):
        service.state(resource.id)
    assert service.remove_expired() == 1
    with pytest.raises(ResourceNotFoundError):
        service.state(resource.id)
    assert not service.storage.exists(resource.id)


def test_a_derived_id_is_taken_by_its_row_not_by_its_stored_object(service) -> None:
    """Replays of a signed creation URL are told by the database row: a second creation is
    refused while the row exists, and once it is deleted the id is free again even if a crash
    left the old generation's object behind (today's main answered 409 resource-exists to that
    URL for ever)."""

    creator = Creator(resource_id="signed-derived-id-4567")
    service.allocate(length=4, creator=creator)
    with pytest.raises(ResourceExistsError):
        service.allocate(length=4, creator=creator)
    [old_key] = objects_of(service.storage, creator.resource_id)
    with service.db.write() as conn:  # a crash between the row's removal and the object's
        resources.delete_resource(conn, creator.resource_id)
    service.allocate(length=4, creator=creator)
    assert len(objects_of(service.storage, creator.resource_id)) == 2
    put(service, creator.resource_id, 0, b"abcd", 4)
    with service.open_object(creator.resource_id) as stored:
        assert stored.read_at(0, 4) == b"abcd"
    with service.storage.open(old_key) as orphan:
        assert orphan.read_at(0, 4) == b""  # the orphan was never written


def test_racing_replays_create_one_resource_and_leave_no_object(service, monkeypatch) -> None:
    """Two replays that both pass the early check: the unique id decides, and the loser deletes
    the object it created first."""

    creator = Creator(resource_id="signed-derived-id-89ab")
    service.allocate(length=4, creator=creator)
    created: list[str] = []
    real_create = service.storage.create
    monkeypatch.setattr(service, "_id_taken", lambda resource_id: False, raising=False)
    monkeypatch.setattr(service.storage, "create", lambda key: (created.append(key), real_create(key))[1])
    with pytest.raises(ResourceExistsError):
        service.allocate(length=4, creator=creator)
    assert created and not service.storage.exists(created[0])


def test_a_state_read_is_one_statement_outside_a_transaction(service) -> None:
    """A HEAD's state of a resource with few extents: one SELECT, no BEGIN or COMMIT around it
    (one statement is one snapshot by itself on both databases)."""
    resource = service.allocate(length=10)
    put(service, resource.id, 0, b"0123", 10)
    seen: list[tuple[str, bool]] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        driver = conn.connection.dbapi_connection
        if service.db.dialect == "sqlite":
            open_transaction = driver.in_transaction
        else:
            open_transaction = driver.info.transaction_status != 0  # psycopg's IDLE
        seen.append((statement.split()[0], open_transaction))

    event.listen(service.db.engine, "after_cursor_execute", after)
    try:
        state = service.state(resource.id, ranges_budget=4096)
    finally:
        event.remove(service.db.engine, "after_cursor_execute", after)
    assert state.offset == 4 and not state.complete
    assert seen == [("SELECT", False)]
