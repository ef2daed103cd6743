"""DELETE (PROTOCOL.md §6): 204; bytes and rows gone; later requests 404."""

from __future__ import annotations

import os

import pytest

from ..helpers import MESSAGE
from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import allocate
from ..helpers import extent_rows
from ..helpers import patch_message
from ..helpers import problem
from ..helpers import put_range
from ..helpers import send_stream
from ..helpers import upload
from ..helpers import write


def _resource_id(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _files_under(root: str) -> list[str]:
    found = []
    for folder, _dirs, files in os.walk(root):
        found.extend(os.path.join(folder, name) for name in files)
    return found


def test_delete_incomplete_resource(client, service, settings_overrides):
    path = allocate(client, 100)
    write(client, path, 0, b"secret bytes")
    resource_id = _resource_id(path)
    assert service.storage.exists(resource_id)
    response = client.delete(path)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert not service.storage.exists(resource_id)
    assert not any(resource_id in name for name in _files_under(settings_overrides["DATA_DIR"]))
    assert extent_rows(service, path) == []

    assert client.head(path).status_code == 404
    problem(client.get(path), 404, "not-found")
    problem(client.get(path, headers={"Range": "bytes=0-3"}), 404)
    problem(patch_message(client, path, 0, b"more"), 404, "not-found")
    problem(put_range(client, path, 0, b"more"), 404)
    problem(client.get(path + "/committed-ranges"), 404)
    problem(client.delete(path), 404)


def test_delete_complete_resource(client, service):
    path = upload(client, b"finished file")
    assert client.delete(path).status_code == 204
    assert not service.storage.exists(_resource_id(path))
    problem(client.get(path), 404)


def test_delete_unknown_resource_is_404(client):
    problem(client.delete(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not-found")


def test_delete_with_if_match(client):
    path = upload(client, b"abc")
    etag = client.head(path).headers["ETag"]
    problem(client.delete(path, headers={"If-Match": '"other"'}), 412)
    assert client.head(path).status_code == 200
    assert client.delete(path, headers={"If-Match": etag}).status_code == 204
    assert client.head(path).status_code == 404


def test_delete_does_not_touch_other_resources(client):
    keep = upload(client, b"keep me")
    gone = upload(client, b"drop me")
    assert client.delete(gone).status_code == 204
    assert client.get(keep).get_data() == b"keep me"


class TestDeleteDuringWrite:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, CHUNK_SIZE="16")

    def test_live_write_ends_and_commits_nothing(self, client, service):
        path = allocate(client, 200)
        body = b"Content-Range: bytes 0-99/200\r\n\r\n" + b"x" * 100
        deleted = []

        def on_read(position):
            if position >= 64 and not deleted:
                deleted.append(client.delete(path).status_code)

        stream = BodyStream(body, chunk=16, on_read=on_read)
        response = send_stream(client, "PATCH", path, stream, len(body), {"Content-Type": MESSAGE})
        assert deleted == [204]
        assert response.status_code in (404, 409, 410), response.get_data()
        problem(response, response.status_code)
        assert client.head(path).status_code == 404
        assert extent_rows(service, path) == []
        assert not service.storage.exists(_resource_id(path))


def _expire(service, path):
    from sqlalchemy import update

    from byterange_server.db import clock
    from byterange_server.db.models import resources

    with service.db.write() as conn:
        conn.execute(
            update(resources)
            .where(resources.c.id == _resource_id(path))
            .values(expires_at=clock.utcnow().replace(year=2000))
        )


def test_expired_incomplete_resource_is_removed_with_its_bytes(client, service):
    path = allocate(client, 100)
    write(client, path, 0, b"abandoned")
    done = upload(client, b"complete files never expire")
    _expire(service, path)
    _expire(service, done)
    assert client.head(path).status_code == 410
    assert service.remove_expired() == 1
    assert client.head(path).status_code == 404
    assert not service.storage.exists(_resource_id(path))
    assert extent_rows(service, path) == []
    assert client.get(done).get_data() == b"complete files never expire"


def test_new_resources_expire_after_the_configured_time(client, service):
    from byterange_server.db import clock

    path = allocate(client)
    record = service.state(_resource_id(path)).record
    left = (record.expires_at - clock.utcnow()).total_seconds()
    assert abs(left - service.settings.expire_after) < 60
    assert service.settings.expire_after == 24 * 3600
