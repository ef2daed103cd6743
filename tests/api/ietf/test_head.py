"""IETF offset retrieval: HEAD answers 204 with the offset, ending a stale append first; 404, 410."""

from __future__ import annotations

import threading
import time

from byterange_server.protocol.ietf import parse_upload_limit

from ..helpers import BodyStream
from ..helpers import problem
from ..helpers import read_all
from ..helpers import send_stream
from .helpers import MISSING
from .helpers import PARTIAL
from .helpers import append
from .helpers import create_path
from .helpers import ietf_head
from .helpers import offset_of
from .helpers import v


def test_head(client):
    path = create_path(client, length=10)
    append(client, path, 0, b"abc")
    response = ietf_head(client, path)
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == "10"
    assert response.headers["Cache-Control"] == "no-store"
    assert parse_upload_limit(response.headers["Upload-Limit"]).max_size == 1024**4


def test_head_without_length(client):
    path = create_path(client)
    response = ietf_head(client, path)
    assert "Upload-Length" not in response.headers
    assert response.headers["Upload-Offset"] == "0"


def test_unknown_and_expired_uploads(client, service):
    for response in (ietf_head(client, MISSING), append(client, MISSING, 0, b"x"),
                     client.delete(MISSING, headers=v())):
        assert response.status_code == 404
        assert "Upload-Offset" not in response.headers
    path = create_path(client, length=10)
    from sqlalchemy import update

    from byterange_server.db import clock
    from byterange_server.db.models import resources

    with service.db.write() as conn:
        conn.execute(update(resources).where(resources.c.id == path.rsplit("/", 1)[1])
                     .values(expires_at=clock.utcnow().replace(year=2000)))
    assert ietf_head(client, path).status_code == 410
    problem(append(client, path, 0, b"x"), 410)


def test_head_ends_a_stale_append_and_reports_its_prefix(client, app):
    """Draft §Concurrency: a new HEAD terminates the earlier append; what that append received
    is committed, and the HEAD reports it (no stale offset)."""
    path = create_path(client, length=100)
    seen = {}

    def probe(position):
        if position == 40 and "head" not in seen:
            def head():
                started = time.monotonic()
                response = ietf_head(app.test_client(), path)
                seen["head"] = (response.headers["Upload-Offset"], time.monotonic() - started)

            thread = threading.Thread(target=head)
            thread.start()
            seen["thread"] = thread
            time.sleep(1.0)  # the client stalls here; the HEAD ends the append meanwhile

    stream = BodyStream(b"x" * 100, chunk=10, on_read=probe)
    response = send_stream(client, "PATCH", path, stream, 100, {
        **v(), "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL})
    seen["thread"].join()
    problem(response, 400, "truncated-body")
    offset, seconds = seen["head"]
    # The read in progress when the HEAD came (bytes 40-49) still counts; nothing after it.
    assert offset == "50", seen
    assert seconds < 4, seen
    assert append(client, path, 50, b"y" * 50, complete=True).status_code == 204
    assert read_all(client, path) == b"x" * 50 + b"y" * 50


def test_a_stale_append_that_never_ends_costs_the_bounded_wait(client, service):
    """The writer cannot be reached (killed worker): its lease lapses; HEAD waits, then answers."""
    from byterange_server.db.ledger import reservations

    path = create_path(client, length=100)
    resource_id = path.rsplit("/", 1)[1]
    with service.db.write() as conn:
        reservations.reserve(conn, resource_id, 0, 100, lease_seconds=1, revocable=True)
    started = time.monotonic()
    assert offset_of(client, path) == 0
    assert 0.9 < time.monotonic() - started < 3  # bounded by the lease it had left
    assert append(client, path, 0, b"z" * 100, complete=True).status_code == 204
