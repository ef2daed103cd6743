"""What is particular to an object store behind the API (BYTERANGE_STORAGE=s3, a real
SeaweedFS): pieces cut on the block grid and mapped by segments, reads of incomplete and
complete resources from the pieces, assembly into one object of equal parts, concatenation by
reference, and garbage -- writes cut short, DELETE, expiry, replaced pieces -- collected by
the sweep with nothing left behind."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from sqlalchemy import update

from byterange_server.db.models import resources
from byterange_server.uploads.expiry import ExpirySweeper
from tests.api.helpers import MOUNT
from tests.api.helpers import BodyStream
from tests.api.helpers import allocate
from tests.api.helpers import head_state
from tests.api.helpers import read_all
from tests.api.helpers import read_range
from tests.api.helpers import send_stream
from tests.api.helpers import write
from tests.api.tus.helpers import partial
from tests.api.tus.test_concat import final_path

from .conftest import BLOCK_SIZE
from .helpers import assert_consistent
from .helpers import garbage_rows
from .helpers import make_garbage_due
from .helpers import segment_rows
from .helpers import stored_objects

MESSAGE = "message/byterange"


def sweep(service) -> None:
    make_garbage_due(service.db)
    service.collect_garbage()
    make_garbage_due(service.db)  # a lapsed writer's garbage waits one grace period more
    service.collect_garbage()


def test_writes_store_pieces_on_the_block_grid(client, service):
    data = os.urandom(2 * BLOCK_SIZE + 1000)
    path = allocate(client, len(data))
    write(client, path, 100, data[100 : BLOCK_SIZE + 7], len(data))
    rows = segment_rows(service.db)
    assert [(r.start, r.stop) for r in rows] == [(100, BLOCK_SIZE), (BLOCK_SIZE, BLOCK_SIZE + 7)]
    assert_consistent(service.storage, service.db)
    # Committed ranges of an incomplete resource are served from the pieces.
    assert read_range(client, path, 100, BLOCK_SIZE + 6) == data[100 : BLOCK_SIZE + 7]
    assert garbage_rows(service.db) == []  # the commit claimed every piece it stored


def test_retry_over_committed_bytes_stores_nothing_new(client, service):
    data = os.urandom(300_000)
    path = allocate(client, len(data))
    write(client, path, 0, data[:200_000], len(data))
    before = stored_objects(service.storage)
    write(client, path, 100_000, data[100_000:], len(data))  # overlaps the committed bytes
    after = stored_objects(service.storage)
    assert len(after) == len(before) + 1
    response = client.patch(
        path,
        data=b"Content-Range: bytes 0-9/300000\r\n\r\n" + b"x" * 10,
        headers={"Content-Type": MESSAGE},
    )
    assert response.status_code == 409  # different bytes over committed ones: compared, refused
    sweep(service)
    assert_consistent(service.storage, service.db)


def test_complete_resource_is_read_from_its_pieces_then_from_its_assembly(client, service):
    data = os.urandom(2 * BLOCK_SIZE + 12345)
    path = allocate(client, len(data))
    cuts = [0, 1000, BLOCK_SIZE, 2 * BLOCK_SIZE, len(data)]  # block 0 fragmented, 1 and 2 whole
    for start, stop in reversed(list(zip(cuts, cuts[1:], strict=False))):
        write(client, path, start, data[start:stop], len(data))
    assert head_state(client, path)["complete"] is True
    assert read_all(client, path) == data  # from the pieces
    assert service.assemble_pending() == 1
    assert service.storage.last_assembly == {"copied": 2, "uploaded": 1}
    rows = segment_rows(service.db)
    assert [(r.start, r.stop, r.object_offset) for r in rows] == [(0, len(data), 0)]
    assert read_all(client, path) == data  # from the assembled object
    assert read_range(client, path, BLOCK_SIZE - 5, BLOCK_SIZE + 5) == data[BLOCK_SIZE - 5 : BLOCK_SIZE + 6]
    storage = service.storage
    head = storage.client.head_object(Bucket=storage.bucket, Key=rows[0].object_key, PartNumber=1)
    assert head["PartsCount"] == 3 and head["ContentLength"] == BLOCK_SIZE
    assert service.assemble_pending() == 0
    assert len(stored_objects(service.storage)) == 5  # the pieces wait out the grace for readers
    sweep(service)
    assert list(stored_objects(service.storage)) == [rows[0].object_key]
    assert_consistent(service.storage, service.db)
    assert garbage_rows(service.db) == []


def test_delete_collects_every_object(client, service):
    path = allocate(client, 1000)
    write(client, path, 0, b"a" * 500, 1000)
    assert stored_objects(service.storage)
    assert client.delete(path).status_code == 204
    assert stored_objects(service.storage) == {}  # at once
    assert len(garbage_rows(service.db)) == 1  # and once more after the grace
    sweep(service)
    assert garbage_rows(service.db) == []


def test_expiry_collects_every_object(client, service):
    path = allocate(client, 1000)
    write(client, path, 0, b"a" * 500, 1000)
    with service.db.write() as conn:
        conn.execute(update(resources).values(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
    sweeper = ExpirySweeper(service, 60)
    assert sweeper.run_once() == 1
    sweep(service)
    assert stored_objects(service.storage) == {}
    assert garbage_rows(service.db) == []


def test_a_write_cut_by_delete_leaves_nothing_after_the_sweep(client, service):
    path = allocate(client, 2 * BLOCK_SIZE)
    data = os.urandom(BLOCK_SIZE + (2 << 20))
    body = f"Content-Range: bytes 0-{len(data) - 1}/{2 * BLOCK_SIZE}\r\n\r\n".encode() + data
    deleted: list[int] = []
    positions: list[int] = []

    def on_read(position: int) -> None:
        positions.append(position)
        if position >= BLOCK_SIZE and not deleted:
            deleted.append(client.delete(path).status_code)

    stream = BodyStream(body, chunk=1 << 20, on_read=on_read)
    response = send_stream(client, "PATCH", path, stream, len(body), {"Content-Type": MESSAGE})
    assert deleted == [204], positions
    assert response.status_code in (404, 409, 410)
    sweep(service)
    assert stored_objects(service.storage) == {}
    assert segment_rows(service.db) == []
    assert garbage_rows(service.db) == []


def test_an_interrupted_write_keeps_its_stored_prefix(client, service):
    path = allocate(client, 2 * BLOCK_SIZE)
    data = os.urandom(BLOCK_SIZE + 100)
    body = f"Content-Range: bytes 0-{2 * BLOCK_SIZE - 1}/{2 * BLOCK_SIZE}\r\n\r\n".encode() + data
    stream = BodyStream(body, chunk=1 << 20)
    response = send_stream(client, "PATCH", path, stream, len(body) + 1000, {"Content-Type": MESSAGE})
    assert response.status_code == 400
    assert head_state(client, path)["ranges"] == [(0, len(data))]
    assert read_range(client, path, 0, len(data) - 1) == data
    sweep(service)
    assert_consistent(service.storage, service.db)


def test_concatenation_copies_nothing(client, service):
    data = os.urandom(BLOCK_SIZE + 3)
    a = partial(client, data[:1000])
    b = partial(client, data[1000:])
    before = stored_objects(service.storage)
    path = final_path(client, [a, b])
    assert stored_objects(service.storage) == before  # the final has no objects of its own
    assert read_all(client, path) == data
    assert read_range(client, path, 990, 1009) == data[990:1010]


def test_parallel_writers_of_one_resource(client, service):
    data = os.urandom(4 * BLOCK_SIZE)
    path = allocate(client, len(data))
    step = len(data) // 8
    errors: list[BaseException] = []

    def send(first: int) -> None:
        try:
            write(client.application.test_client(), path, first, data[first : first + step], len(data))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(first,)) for first in range(0, len(data), step)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert read_all(client, path) == data
    assert service.assemble_pending() == 1
    assert service.storage.last_assembly["uploaded"] == 4  # a seam in every block
    assert read_all(client, path) == data
    sweep(service)
    assert_consistent(service.storage, service.db)


@pytest.mark.parametrize("length", [0, 17])
def test_small_and_empty_resources(client, service, length):
    data = os.urandom(length)
    path = allocate(client, length)
    if length:
        write(client, path, 0, data, length)
    assert read_all(client, path) == data
    service.assemble_pending()
    assert read_all(client, path) == data
    assert MOUNT in path
