"""Assembly starts right after the request that completed a resource (not at the next sweep),
GET serves the resource from its pieces until the assembled object replaces them, and an
assembly that did not happen there (a process killed, a store that failed) is left to the
sweep, which finds every complete resource not yet assembled."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from byterange_server import create_app
from byterange_server.db.ledger import jobs
from byterange_server.db.models import resources as resources_table
from byterange_server.errors import StorageError
from byterange_server.uploads import assembly
from tests.api.helpers import allocate
from tests.api.helpers import read_all
from tests.api.helpers import write
from tests.e2e.conftest import GunicornServer
from tests.e2e.conftest import running

from .conftest import BLOCK_SIZE
from .helpers import segment_rows
from .helpers import stored_objects


def assembled_at(db: Any, resource_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(
            select(resources_table.c.assembled_at).where(resources_table.c.id == resource_id)
        ).scalar_one()


@pytest.mark.e2e
def test_assembly_starts_after_the_completing_request_and_gets_work_throughout(
    database_url: str, tmp_path: Path, s3_settings: dict[str, Any]
) -> None:
    # An hour between sweeps: only the completing request can have started the assembly.
    env = {f"BYTERANGE_{name}": value for name, value in s3_settings.items()}
    env["BYTERANGE_CLEANUP_INTERVAL"] = "3600"
    server = GunicornServer(database_url, tmp_path / "server", workers=2, threads=2, extra_env=env)
    length = 3 * BLOCK_SIZE + 1234
    data = os.urandom(length)
    digest = hashlib.sha256(data).hexdigest()
    inspect = create_app(
        dict(s3_settings, DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "inspect"), AUTH="off",
             CLEANUP_INTERVAL="0", S3_ASSEMBLE_ON_COMPLETION="false")
    ).extensions["byterange"]
    with running(server):
        url = server.allocate(length)
        resource_id = url.rsplit("/", 1)[1]
        assert server.patch_segment(url, BLOCK_SIZE, data[BLOCK_SIZE:], length).status == 204
        assert server.patch_segment(url, 0, data[:BLOCK_SIZE], length).status == 204  # completes it
        gets = 0
        deadline = time.monotonic() + 90  # generous: a loaded 2-core machine
        while assembled_at(inspect.db, resource_id) is None and time.monotonic() < deadline:
            response, got = server.sha256_of(url)  # from the pieces, or the object once swapped
            assert response.status_code == 200 and got == digest
            gets += 1
        assert assembled_at(inspect.db, resource_id) is not None, "not assembled 90 s after completion"
        rows = segment_rows(inspect.db)
        assert [(r.start, r.stop) for r in rows] == [(0, length)]
        assert "/whole/" in rows[0].object_key
        response, got = server.sha256_of(url)
        assert response.status_code == 200 and got == digest
    # The pieces it replaced wait out BYTERANGE_S3_GC_GRACE for reads that began on them.
    assert rows[0].object_key in stored_objects(inspect.storage)
    print(f"\n{gets} whole GETs before the assembled object replaced the pieces")


def test_an_assembly_that_failed_after_completion_is_left_to_the_sweep(
    settings_overrides: dict[str, Any], monkeypatch: Any
) -> None:
    app = create_app(dict(settings_overrides, S3_ASSEMBLE_ON_COMPLETION="true"))
    app.config["TESTING"] = True
    client, service = app.test_client(), app.extensions["byterange"]
    real = service.storage.assemble

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("The object store could not assemble an object.", status=503)

    monkeypatch.setattr(service.storage, "assemble", failing)
    data = os.urandom(2 * BLOCK_SIZE + 99)
    path = allocate(client, len(data))
    write(client, path, 0, data, len(data))  # completes it: the assembly starts and fails
    service.assembler.drain(timeout=60)
    resource_id = path.rsplit("/", 1)[1]
    assert assembled_at(service.db, resource_id) is None
    assert read_all(client, path) == data  # served from the pieces
    monkeypatch.setattr(service.storage, "assemble", real)
    assert service.assemble_pending() == 1  # the sweep's part of it
    assert assembled_at(service.db, resource_id) is not None
    assert read_all(client, path) == data
    app.extensions["byterange"].db.dispose()


def test_completion_queues_its_assembly_at_once(settings_overrides: dict[str, Any]) -> None:
    app = create_app(dict(settings_overrides, S3_ASSEMBLE_ON_COMPLETION="true"))
    app.config["TESTING"] = True
    client, service = app.test_client(), app.extensions["byterange"]
    data = os.urandom(BLOCK_SIZE + 5)
    path = allocate(client, len(data))
    write(client, path, 0, data, len(data))
    service.assembler.drain(timeout=60)
    assert assembled_at(service.db, path.rsplit("/", 1)[1]) is not None
    assert service.assemble_pending() == 0
    assert read_all(client, path) == data
    app.extensions["byterange"].db.dispose()


def test_a_running_assembly_renews_its_lease(settings_overrides: dict[str, Any], monkeypatch: Any) -> None:
    # A short lease, so a lapse would show in seconds; the renewals keep it while the store works.
    monkeypatch.setattr(assembly, "_ATTEMPT_LEASE", 3.0)
    monkeypatch.setattr(assembly, "_RENEW_EVERY", 0.2)
    app = create_app(settings_overrides)
    app.config["TESTING"] = True
    client, service = app.test_client(), app.extensions["byterange"]
    data = os.urandom(BLOCK_SIZE + 5)
    path = allocate(client, len(data))
    write(client, path, 0, data, len(data))
    resource_id = path.rsplit("/", 1)[1]
    real, started = service.storage.assemble, threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        started.set()
        time.sleep(6.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(service.storage, "assemble", slow)
    worker = threading.Thread(target=service.assembler.assemble, args=(resource_id,))
    worker.start()
    assert started.wait(60)
    time.sleep(4.0)  # past the lease it took
    with service.db.write() as conn:
        assert not jobs.take_lease(conn, assembly.assembly_job(resource_id), "another host", seconds=3.0)
    worker.join(60)
    assert assembled_at(service.db, resource_id) is not None
    app.extensions["byterange"].db.dispose()


def test_a_resource_of_unknown_length_is_cut_on_the_smallest_block(client: Any, service: Any) -> None:
    # Before its length is known its blocks are the smallest (a write holds two at most), not
    # the size that would keep the 1 TiB maximum under 10,000 of them.
    path = allocate(client)
    resource_id = path.rsplit("/", 1)[1]
    with service.db.read() as conn:
        block = conn.execute(
            select(resources_table.c.block_size).where(resources_table.c.id == resource_id)
        ).scalar_one()
    assert block == BLOCK_SIZE
    data = os.urandom(2 * BLOCK_SIZE + 777)
    write(client, path, 0, data[: BLOCK_SIZE + 10])  # length still unknown
    write(client, path, BLOCK_SIZE + 10, data[BLOCK_SIZE + 10 :], len(data))  # declares it: complete
    rows = segment_rows(service.db)
    assert all(row.start // BLOCK_SIZE == (row.stop - 1) // BLOCK_SIZE for row in rows)
    assert service.assemble_pending() == 1
    assert read_all(client, path) == data
