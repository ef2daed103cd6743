"""``kill -9`` of every server process in the middle of a write on the S3 backend (a real
gunicorn, a real SeaweedFS): what was committed before is intact, no segment lacks its bytes,
and once the dead writer's lease has lapsed the sweep leaves no object that no segment names."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from urllib.parse import urlsplit

import pytest

from byterange_server import create_app
from tests.e2e.conftest import LEASE_SECONDS
from tests.e2e.conftest import GunicornServer
from tests.e2e.conftest import running

from .conftest import BLOCK_SIZE
from .helpers import assert_consistent
from .helpers import garbage_rows
from .helpers import make_garbage_due
from .helpers import stored_objects

pytestmark = pytest.mark.e2e


def test_kill_mid_write_leaves_no_extent_without_bytes_and_no_garbage(database_url, tmp_path, s3_settings):
    env = {f"BYTERANGE_{name}": value for name, value in s3_settings.items()}
    server = GunicornServer(database_url, tmp_path / "server", workers=2, threads=2, extra_env=env)
    length = 4 * BLOCK_SIZE
    data = os.urandom(length)
    with running(server):
        url = server.allocate(length)
        assert server.patch_segment(url, 0, data[:BLOCK_SIZE + 1000], length).status == 204
        # A second write (a partial PUT), sent by hand and left hanging after two and a half blocks: the
        # server has stored two of them, and holds the rest in memory.
        path = urlsplit(url).path
        sock = socket.create_connection(("127.0.0.1", server.port))
        first = BLOCK_SIZE + 1000
        body_length = length - first
        sock.sendall(
            (
                f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {first}-{length - 1}/{length}\r\n"
                f"Content-Length: {body_length}\r\n\r\n"
            ).encode()
        )
        sent = int(2.5 * BLOCK_SIZE)
        sock.sendall(data[first : first + sent])
        settings = dict(s3_settings, DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "after"), AUTH="off")
        app = create_app(dict(settings, CLEANUP_INTERVAL="0", LEASE_SECONDS=str(LEASE_SECONDS)))
        service = app.extensions["byterange"]
        deadline = time.monotonic() + 60
        while len(stored_objects(service.storage)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # the first write's two pieces, and two blocks of this one
        assert len(stored_objects(service.storage)) >= 4
        server.kill_workers_hard()
        sock.close()
    try:
        state = service.state(path.rsplit("/", 1)[1])
        assert [(e.start, e.stop) for e in state.extents] == [(0, BLOCK_SIZE + 1000)]
        assert len(stored_objects(service.storage)) >= 4  # the dead writer's blocks: garbage now
        with service.open_object(state.id) as stored:
            assert stored.read_at(0, BLOCK_SIZE + 1000) == data[: BLOCK_SIZE + 1000]
        time.sleep(LEASE_SECONDS + 0.5)  # the dead writer's lease lapses
        for _ in range(2):  # the lapsed reservation ends; its garbage waits one grace period
            make_garbage_due(service.db)
            service.collect_garbage()
        assert_consistent(service.storage, service.db)
        assert len(stored_objects(service.storage)) == 2
        assert garbage_rows(service.db) == []
        # The upload finishes through a server that starts again.
        with running(server):
            assert server.patch_segment(url, first, data[first:], length).status == 204
            response, digest = server.sha256_of(url)
            assert response.status_code == 200
        assert digest == hashlib.sha256(data).hexdigest()
    finally:
        service.db.dispose()
