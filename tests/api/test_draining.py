"""Graceful shutdown at the HTTP layer, in every dialect, on SQLite and PostgreSQL.

The drain is started from inside the body stream (``BodyStream.on_read``) at a known position, so
the bytes read before the cut are known exactly. Under the Flask test client there is no socket
to shut down: the cut is the reader's flag, as for an HTTP/2 request under gunicorn.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from byterange_server.protocol.message import encode_message
from byterange_server.runtime.shutdown import DRAIN

from .helpers import MESSAGE
from .helpers import MOUNT
from .helpers import BodyStream
from .helpers import allocate
from .helpers import head_state
from .helpers import problem
from .helpers import read_range
from .helpers import send_stream

DATA = bytes(range(256)) * 64  # 16 KiB
PARTIAL = "application/partial-upload"
TUS = {"Tus-Resumable": "1.0.0"}
IETF = {"Upload-Draft-Interop-Version": "8"}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "CHUNK_SIZE": "1KiB", "SHUTDOWN_RETRY_AFTER": "7"}


@pytest.fixture(autouse=True)
def _serving_again() -> Iterator[None]:
    DRAIN.reset()
    yield
    DRAIN.reset()


def drain_at(position: int) -> Callable[[int], None]:
    """``on_read``: start draining (cut at once) when the read at ``position`` begins."""

    def on_read(at: int) -> None:
        if at >= position and not DRAIN.draining:
            DRAIN.begin(0)

    return on_read


def stream(body: bytes, cut_at: int) -> BodyStream:
    return BodyStream(body, chunk=1000, on_read=drain_at(cut_at))


def shutting_down(response: Any) -> dict[str, Any]:
    body = problem(response, 503, "shutting-down")
    assert response.headers["Retry-After"] == "7"
    return body


def test_a_cut_persist_patch_commits_what_arrived_and_answers_503(client):
    path = allocate(client, len(DATA))
    body = encode_message((("Content-Range", f"bytes 0-{len(DATA) - 1}/{len(DATA)}"),), DATA)
    sent = stream(body, 5000)
    response = send_stream(client, "PATCH", path, sent, len(body), {"Content-Type": MESSAGE})
    detail = shutting_down(response)["detail"]
    assert "received are committed" in detail
    offset = sent.position - (len(body) - len(DATA))  # what was read, less the part's fields
    assert 5000 - len(body) + len(DATA) <= offset < len(DATA), (offset, sent.position)
    # The state to resume from is on the 503 itself.
    assert response.headers["Upload-Offset"] == str(offset)
    assert response.headers["Committed-Ranges"] == f"bytes=0-{offset - 1}"
    assert response.headers["Preference-Applied"] == "transaction=persist"
    DRAIN.reset()
    assert head_state(client, path)["offset"] == offset
    assert read_range(client, path, 0, offset - 1) == DATA[:offset]


def test_a_cut_atomic_put_commits_nothing(client):
    path = allocate(client, len(DATA))
    response = send_stream(
        client, "PUT", path, stream(DATA, 5000), len(DATA),
        {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}", "Prefer": "transaction=atomic"},
    )
    assert "nothing of it was applied" in shutting_down(response)["detail"]
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Committed-Ranges"] == "none"
    DRAIN.reset()
    assert head_state(client, path)["offset"] == 0


def test_a_cut_that_comes_with_the_last_bytes_changes_nothing(client):
    """The drain begins during the read that returns the end of the body: the write is whole,
    so it commits and succeeds like any other."""
    path = allocate(client, len(DATA))
    response = send_stream(
        client, "PUT", path, stream(DATA, len(DATA) - 1000), len(DATA),
        {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}", "Prefer": "transaction=atomic"},
    )
    assert DRAIN.cutting
    assert response.status_code == 204, response.get_data()
    assert response.headers["Upload-Complete"] == "?1"


def test_tus_patch_cut_is_a_tus_503_with_the_offset(client):
    created = client.post(MOUNT, headers={**TUS, "Upload-Length": str(len(DATA))})
    path = urlsplit(created.headers["Location"]).path
    sent = stream(DATA, 3000)
    response = send_stream(client, "PATCH", path, sent, len(DATA), {
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    shutting_down(response)
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Upload-Offset"] == str(sent.position)
    assert 0 < sent.position < len(DATA)
    DRAIN.reset()
    assert client.head(path, headers=TUS).headers["Upload-Offset"] == str(sent.position)


def test_tus_creation_with_upload_cut_says_where_to_resume(client):
    sent = stream(DATA, 3000)
    response = send_stream(client, "POST", MOUNT, sent, len(DATA), {
        **TUS, "Upload-Length": str(len(DATA)), "Content-Type": "application/offset+octet-stream"})
    shutting_down(response)
    assert response.headers["Location"]
    assert response.headers["Upload-Offset"] == str(sent.position)


def test_tus_patch_with_a_checksum_cut_keeps_nothing(client):
    created = client.post(MOUNT, headers={**TUS, "Upload-Length": str(len(DATA))})
    path = urlsplit(created.headers["Location"]).path
    response = send_stream(client, "PATCH", path, stream(DATA, 3000), len(DATA), {
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(DATA).digest()).decode()})
    assert "nothing of it was applied" in shutting_down(response)["detail"]
    assert response.headers["Upload-Offset"] == "0"


def test_ietf_append_cut_is_a_503_with_the_offset(client):
    created = client.post(MOUNT, headers={**IETF, "Upload-Complete": "?0", "Upload-Length": str(len(DATA))})
    path = urlsplit(created.headers["Location"]).path
    sent = stream(DATA, 3000)
    response = send_stream(client, "PATCH", path, sent, len(DATA), {
        **IETF, "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL})
    shutting_down(response)
    assert response.headers["Upload-Offset"] == str(sent.position)
    assert response.headers["Upload-Complete"] == "?0"  # not done: the client HEADs and resumes
    assert response.headers["Upload-Draft-Interop-Version"] == "8"


def test_ietf_creation_cut_carries_location_and_offset(client):
    sent = stream(DATA, 3000)
    response = send_stream(client, "POST", MOUNT, sent, len(DATA), {**IETF, "Upload-Complete": "?1"})
    shutting_down(response)
    assert response.headers["Location"]
    assert response.headers["Upload-Offset"] == str(sent.position)


def test_new_requests_are_refused_while_draining(client):
    path = allocate(client, len(DATA))
    DRAIN.begin(60)
    for response in (client.head(path), client.get(path), client.post(MOUNT),
                     client.patch(path, data=b"x", headers={"Content-Type": MESSAGE})):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.headers["Connection"] == "close"
    # Errors about a resource carry its state, as every error with a resource does.
    assert client.head(path).headers["Upload-Offset"] == "0"
    shutting_down(client.post(MOUNT))
    tus = client.head(path, headers=TUS)
    assert tus.status_code == 503 and tus.headers["Tus-Resumable"] == "1.0.0"
    assert not DRAIN.cutting  # the grace has not run out


def test_health_reports_draining(client):
    assert client.get("/healthz").status_code == 200
    DRAIN.begin(60)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.mimetype == "application/health+json"
    body = json.loads(response.get_data())
    assert body["status"] == "fail" and body["output"] == "draining"
    assert all(check[0]["status"] == "pass" for check in body["checks"].values())
