"""IETF Resumable Uploads (interop 6, 7, 8) over the shared store, on SQLite and PostgreSQL.

Every status the draft names is provoked here: 201 (creation, also when complete), 204 (HEAD,
append, cancellation), 400 (inconsistent-upload-length, malformed fields, Content-Digest),
404, 409 (mismatching-upload-offset), 410, 413 (with Upload-Limit) and 415. After each error the
committed state is checked, so "nothing kept" is shown, not assumed.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from urllib.parse import urlsplit

import pytest
from werkzeug.exceptions import ClientDisconnected

from byterange_server.protocol.ietf import PROBLEM_INCONSISTENT_LENGTH
from byterange_server.protocol.ietf import PROBLEM_MISMATCHING_OFFSET
from byterange_server.protocol.ietf import parse_upload_limit

from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import head_state
from ..helpers import problem
from ..helpers import read_all
from ..helpers import read_range
from ..helpers import send_stream
from ..helpers import sha256_field

PARTIAL = "application/partial-upload"
MISSING = MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"


def v(version=8):
    return {"Upload-Draft-Interop-Version": str(version)}


def create(client, *, complete=False, length=None, data=None, headers=None, method="POST",
           version=8, expect=201):
    sent = {**v(version), "Upload-Complete": "?1" if complete else "?0"}
    if length is not None:
        sent["Upload-Length"] = str(length)
    sent.update(headers or {})
    response = client.open(MOUNT, method=method, headers=sent, data=data)
    assert response.status_code == expect, (response.status_code, response.get_data())
    return response


def create_path(client, **kwargs):
    return urlsplit(create(client, **kwargs).headers["Location"]).path


def append(client, path, offset, data, *, complete=False, headers=None, version=8):
    sent = {**v(version), "Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0",
            "Content-Type": PARTIAL}
    sent.update(headers or {})
    return client.patch(path, data=data, headers=sent)


def ietf_head(client, path, version=8):
    return client.head(path, headers=v(version))


def offset_of(client, path):
    response = ietf_head(client, path)
    assert response.status_code == 204, response.status_code
    return int(response.headers["Upload-Offset"])


def ietf_problem(response, status, type_uri):
    body = problem(response, status)
    assert body["type"] == type_uri, body
    return body


def count(service):
    from sqlalchemy import func
    from sqlalchemy import select

    from byterange_server.db.models import resources

    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


# -- discovery and dispatch ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [MOUNT, MISSING])
@pytest.mark.parametrize("headers", [{}, v(6), v(8)])
def test_options_announces_upload_limit(client, path, headers):
    response = client.options(path, headers=headers)
    assert response.status_code == 204
    limit = parse_upload_limit(response.headers["Upload-Limit"])
    assert limit.max_size == 1024**4 and limit.min_size == 0


def test_options_accept_patch_lists_partial_upload_for_interop_8(client):
    assert PARTIAL in client.options(MOUNT, headers=v(8)).headers["Accept-Patch"]
    assert PARTIAL not in client.options(MOUNT, headers=v(7)).headers["Accept-Patch"]
    assert PARTIAL not in client.options(MOUNT).headers["Accept-Patch"]


class TestConfiguredLimit:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_RESOURCE_SIZE="5000")

    def test_limit_is_the_configured_one_and_413_carries_it(self, client, service):
        assert parse_upload_limit(client.options(MOUNT).headers["Upload-Limit"]).max_size == 5000
        response = create(client, length=5001, expect=413)
        problem(response, 413)
        assert parse_upload_limit(response.headers["Upload-Limit"]).max_size == 5000
        assert count(service) == 0


@pytest.mark.parametrize("version", [6, 7, 8])
def test_version_is_echoed_and_expires_only_for_6(client, version):
    response = create(client, length=10, version=version)
    assert response.headers["Upload-Draft-Interop-Version"] == str(version)
    limit = response.headers["Upload-Limit"]
    assert "max-age=" in limit
    assert ("expires=" in limit) == (version == 6)
    path = urlsplit(response.headers["Location"]).path
    error = append(client, path, 3, b"x", version=version)
    assert error.headers["Upload-Draft-Interop-Version"] == str(version)


@pytest.mark.parametrize("version", ["5", "9", "x", "-1"])
def test_unsupported_version_is_a_byte_range_request(client, service, version):
    """E23: an interop version we do not speak is processed as if it were absent."""
    response = client.post(MOUNT, data=b"abc", headers={
        "Upload-Draft-Interop-Version": version, "Upload-Complete": "?1"})
    problem(response, 400, "malformed-header")  # a byte-range POST has an empty body
    assert "Upload-Draft-Interop-Version" not in response.headers
    assert count(service) == 0


def test_upload_complete_without_version_is_ietf(client):
    response = client.post(MOUNT, data=b"abc", headers={"Upload-Complete": "?1"})
    assert response.status_code == 201
    assert response.headers["Upload-Complete"] == "?1"
    assert "Upload-Draft-Interop-Version" not in response.headers


def test_tus_wins_over_ietf(client):
    response = client.post(MOUNT, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3", **v()})
    assert response.status_code == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Limit" not in response.headers


# -- creation ---------------------------------------------------------------------------------------


def test_careful_creation(client, service):
    response = create(client, length=10)
    assert response.headers["Location"].startswith("http://localhost/files/")
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == "10"
    limit = parse_upload_limit(response.headers["Upload-Limit"])
    assert 0 < limit.max_age <= 24 * 3600


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_optimistic_creation_completes_in_one_request(client, method):
    metadata = {"Content-Type": "text/plain", "Content-Disposition": 'inline; filename="a.txt"'}
    response = create(client, complete=True, data=b"hello world", method=method, headers=metadata)
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Upload-Offset"] == "11"
    path = urlsplit(response.headers["Location"]).path
    got = client.get(path)
    assert got.get_data() == b"hello world"
    assert got.mimetype == "text/plain"
    assert "a.txt" in got.headers["Content-Disposition"]


def test_creation_with_part_of_the_data(client):
    response = create(client, length=11, data=b"hello", headers={"Content-Type": PARTIAL})
    assert response.headers["Upload-Offset"] == "5"
    path = urlsplit(response.headers["Location"]).path
    assert append(client, path, 5, b" world", complete=True).status_code == 204
    got = client.get(path)
    assert got.get_data() == b"hello world"
    assert got.mimetype == "application/octet-stream"  # partial-upload is not the media type


def test_empty_complete_creation_is_an_empty_file(client):
    path = create_path(client, complete=True, data=b"")
    assert read_all(client, path) == b""


def test_chunked_optimistic_creation(client):
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = client.open(MOUNT, method="POST", headers={
        **v(), "Upload-Complete": "?1", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True})
    assert response.status_code == 201, response.get_data()
    assert response.headers["Upload-Length"] == "8"
    assert read_all(client, urlsplit(response.headers["Location"]).path) == b"abcdefgh"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"complete": True, "length": 5, "data": b"abc"},  # ?1: Content-Length says 3
        {"complete": False, "length": 2, "data": b"abc"},  # content past Upload-Length
    ],
)
def test_inconsistent_length_at_creation_creates_nothing(client, service, kwargs):
    response = create(client, expect=400, **kwargs)
    ietf_problem(response, 400, PROBLEM_INCONSISTENT_LENGTH)
    assert "Location" not in response.headers
    assert count(service) == 0


def test_a_sixteen_digit_content_length_on_a_completing_append_is_a_400(client, service):
    # It used to reach the printer of the part's Content-Offset field, which cannot print a
    # 16-digit complete length: a 500. Now it meets the 15-digit limit every number has.
    path = create_path(client)
    sent = {**v(), "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL}
    response = client.patch(path, headers=sent, environ_overrides={"CONTENT_LENGTH": str(10**15)})
    assert problem(response, 400, "malformed-header")["field"] == "Content-Length"
    assert head_state(client, path)["offset"] == 0


@pytest.mark.parametrize("headers", [{"Upload-Complete": "?2"}, {"Upload-Complete": "1"},
                                     {"Upload-Length": "-1"}, {"Upload-Length": "1" * 16},
                                     {"Repr-Digest": "sha-256=:AAAA:"}, {"Content-Digest": "nope"}])
def test_malformed_creation_fields_are_400(client, service, headers):
    sent = {**v(), "Upload-Complete": "?0", **headers}
    problem(client.post(MOUNT, headers=sent, data=b"abc"), 400, "malformed-header")
    assert count(service) == 0


def test_repr_digest_is_checked_at_completion(client):
    path = create_path(client, length=5, headers={"Repr-Digest": sha256_field(b"other")})
    response = append(client, path, 0, b"12345", complete=True)
    problem(response, 409, "repr-digest-mismatch")
    right = create_path(client, length=5, headers={"Repr-Digest": sha256_field(b"12345")})
    assert append(client, right, 0, b"12345", complete=True).status_code == 204


def test_want_repr_digest(client):
    path = create_path(client, length=3)
    response = append(client, path, 0, b"abc", complete=True, headers={"Want-Repr-Digest": "sha-256=5"})
    assert response.headers["Repr-Digest"] == sha256_field(b"abc")
    assert "Repr-Digest" not in ietf_head(client, path).headers  # only when asked
    asked = client.head(path, headers={**v(), "Want-Repr-Digest": "sha-512=3, sha-256=1"})
    assert asked.headers["Repr-Digest"] == sha256_field(b"abc")
    refused = client.head(path, headers={**v(), "Want-Repr-Digest": "sha-256=0"})
    assert "Repr-Digest" not in refused.headers


# -- offset retrieval ----------------------------------------------------------------------------------


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


# -- append ----------------------------------------------------------------------------------------------


def test_appends_then_completion(client):
    path = create_path(client)  # length unknown until the end
    for offset, chunk in ((0, b"abc"), (3, b"def")):
        response = append(client, path, offset, chunk)
        assert response.status_code == 204
        assert response.headers["Upload-Offset"] == str(offset + 3)
        assert response.headers["Upload-Complete"] == "?0"
    response = append(client, path, 6, b"ghi", complete=True)
    assert response.status_code == 204
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Upload-Length"] == "9"
    assert read_all(client, path) == b"abcdefghi"


def test_empty_appends(client):
    path = create_path(client)
    append(client, path, 0, b"abc")
    response = append(client, path, 3, b"")
    assert response.status_code == 204 and response.headers["Upload-Complete"] == "?0"
    response = append(client, path, 3, b"", complete=True)  # "finish the upload now"
    assert response.headers["Upload-Complete"] == "?1" and response.headers["Upload-Length"] == "3"
    # The client missed that response: the same empty completing append gets it again.
    again = append(client, path, 3, b"", complete=True)
    assert again.status_code == 204 and again.headers["Upload-Complete"] == "?1"
    assert read_all(client, path) == b"abc"


def test_chunked_completing_append(client):
    path = create_path(client)
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = client.open(path, method="PATCH", headers={
        **v(), "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL,
        "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True})
    assert response.status_code == 204, response.get_data()
    assert response.headers["Upload-Length"] == "8"
    assert read_all(client, path) == b"abcdefgh"


def test_mismatching_offset_is_409_with_the_offsets(client):
    path = create_path(client, length=9)
    append(client, path, 0, b"abc")
    for wrong in (0, 2, 4, 9):
        response = append(client, path, wrong, b"xyz")
        body = ietf_problem(response, 409, PROBLEM_MISMATCHING_OFFSET)
        assert body["expected-offset"] == 3 and body["provided-offset"] == wrong
        assert response.headers["Upload-Offset"] == "3"
        assert response.headers["Upload-Complete"] == "?0"
    assert offset_of(client, path) == 3


@pytest.mark.parametrize(
    "offset,data,complete,headers",
    [
        (3, b"defghij", False, {}),  # past the length
        (3, b"de", True, {}),  # ?1 but 5 != 9
        (3, b"def", False, {"Upload-Length": "12"}),  # another length
        (3, b"", True, {}),  # ?1 empty, short of the length
    ],
)
def test_inconsistent_length_on_append_keeps_nothing(client, offset, data, complete, headers):
    path = create_path(client, length=9)
    append(client, path, 0, b"abc")
    response = append(client, path, offset, data, complete=complete, headers=headers)
    ietf_problem(response, 400, PROBLEM_INCONSISTENT_LENGTH)
    assert offset_of(client, path) == 3
    assert response.headers["Upload-Offset"] == "3"


def test_chunked_body_past_the_length_keeps_nothing(client):
    path = create_path(client, length=5)
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = client.open(path, method="PATCH", headers={
        **v(), "Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL,
        "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True})
    ietf_problem(response, 400, PROBLEM_INCONSISTENT_LENGTH)
    assert offset_of(client, path) == 0


def test_append_after_completion(client):
    path = create_path(client, complete=True, data=b"abc")
    ietf_problem(append(client, path, 3, b"d"), 400, PROBLEM_INCONSISTENT_LENGTH)
    ietf_problem(append(client, path, 3, b"d", complete=True), 400, PROBLEM_INCONSISTENT_LENGTH)
    assert read_all(client, path) == b"abc"


@pytest.mark.parametrize("content_type", [None, "application/offset+octet-stream", "message/byterange"])
def test_append_of_another_type_is_415(client, content_type):
    path = create_path(client, length=3)
    headers = {**v(), "Upload-Offset": "0", "Upload-Complete": "?0"}
    if content_type:
        headers["Content-Type"] = content_type
    problem(client.patch(path, data=b"abc", headers=headers), 415)
    assert offset_of(client, path) == 0


@pytest.mark.parametrize("headers", [{"Upload-Offset": None}, {"Upload-Complete": None},
                                     {"Upload-Offset": "1.5"}, {"Upload-Complete": "true"}])
def test_append_without_valid_offset_or_complete_is_400(client, headers):
    path = create_path(client, length=3)
    sent = {**v(), "Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL}
    for name, value in headers.items():
        if value is None:
            del sent[name]
        else:
            sent[name] = value
    problem(client.patch(path, data=b"abc", headers=sent), 400, "malformed-header")
    assert offset_of(client, path) == 0


def test_interrupted_append_keeps_the_received_prefix(client):
    path = create_path(client, length=100)
    stream = BodyStream(b"x" * 40, chunk=10, fail=ClientDisconnected())
    send_stream(client, "PATCH", path, stream, 100, {
        **v(), "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL})
    response = ietf_head(client, path)
    assert response.headers["Upload-Offset"] == "40"
    assert response.headers["Upload-Complete"] == "?0"  # not complete: the end never arrived


def _content_digest(data):
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def test_content_digest(client):
    path = create_path(client, length=6)
    bad = append(client, path, 0, b"abc", headers={"Content-Digest": _content_digest(b"xyz")})
    problem(bad, 400, "content-digest-mismatch")
    assert offset_of(client, path) == 0
    good = append(client, path, 0, b"abc", headers={"Content-Digest": _content_digest(b"abc")})
    assert good.status_code == 204 and good.headers["Upload-Offset"] == "3"


def test_interrupted_append_with_content_digest_keeps_nothing(client):
    path = create_path(client, length=100)
    stream = BodyStream(b"x" * 40, chunk=10, fail=ClientDisconnected())
    send_stream(client, "PATCH", path, stream, 100, {
        **v(), "Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL,
        "Content-Digest": _content_digest(b"x" * 100)})
    assert offset_of(client, path) == 0


# -- cancellation ----------------------------------------------------------------------------------------


def test_cancellation(client, service):
    path = create_path(client, length=10)
    append(client, path, 0, b"abc")
    response = client.delete(path, headers=v())
    assert response.status_code == 204
    assert not service.storage.exists(path.rsplit("/", 1)[1])
    assert ietf_head(client, path).status_code == 404
    problem(append(client, path, 3, b"def"), 404)


# -- a newer request ends a stale append ------------------------------------------------------------------


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


# -- one store, every protocol ---------------------------------------------------------------------------


def test_ietf_upload_seen_through_byte_range_and_tus(client):
    path = create_path(client, length=10)
    append(client, path, 0, b"01234")
    state = head_state(client, path)
    assert state["ranges"] == [(0, 5)] and state["complete"] is False
    assert read_range(client, path, 1, 3) == b"123"
    tus = client.head(path, headers={"Tus-Resumable": "1.0.0"})
    assert tus.headers["Upload-Offset"] == "5"
    append(client, path, 5, b"56789", complete=True)
    assert read_all(client, path) == b"0123456789"
    assert read_range(client, path, 8, 9) == b"89"
    assert head_state(client, path)["headers"]["Repr-Digest"]
