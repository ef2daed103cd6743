"""IETF append: PATCH with application/partial-upload (204, 400, 409 mismatching-upload-offset,
413, 415), chunked bodies and Content-Digest. After each error the committed state is
checked, so "nothing kept" is shown, not assumed."""

from __future__ import annotations

import base64
import hashlib

import pytest
from werkzeug.exceptions import ClientDisconnected

from byterange_server.protocol.ietf import PROBLEM_INCONSISTENT_LENGTH
from byterange_server.protocol.ietf import PROBLEM_MISMATCHING_OFFSET

from ..helpers import BodyStream
from ..helpers import head_state
from ..helpers import problem
from ..helpers import read_all
from ..helpers import send_stream
from .helpers import PARTIAL
from .helpers import append
from .helpers import create_path
from .helpers import ietf_head
from .helpers import ietf_problem
from .helpers import offset_of
from .helpers import v


def _content_digest(data):
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def test_a_sixteen_digit_content_length_on_a_completing_append_is_a_400(client, service):
    # It used to reach the printer of the part's Content-Offset field, which cannot print a
    # 16-digit complete length: a 500. Now it meets the 15-digit limit every number has.
    path = create_path(client)
    sent = {**v(), "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL}
    response = client.patch(path, headers=sent, environ_overrides={"CONTENT_LENGTH": str(10**15)})
    assert problem(response, 400, "malformed-header")["field"] == "Content-Length"
    assert head_state(client, path)["offset"] == 0


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
    # The client missed that response: from interop 9 the same empty completing append gets it
    # again (the editor's copy allows a replay; -04…-11 require a rejection, see
    # test_empty_append_to_a_completed_upload_is_rejected_up_to_interop_8).
    again = append(client, path, 3, b"", complete=True, version=9)
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
    "offset,data,complete,headers,version",
    [
        # Past the length: at interop 6 the upload stays usable; from -08 it is also marked
        # invalid (test_overrun_marks_the_upload_invalid...).
        (3, b"defghij", False, {}, 6),
        (3, b"de", True, {}, 8),  # ?1 but 5 != 9
        (3, b"def", False, {"Upload-Length": "12"}, 8),  # another length
        (3, b"", True, {}, 8),  # ?1 empty, short of the length
    ],
)
def test_inconsistent_length_on_append_keeps_nothing(client, offset, data, complete, headers, version):
    path = create_path(client, length=9)
    append(client, path, 0, b"abc")
    response = append(client, path, offset, data, complete=complete, headers=headers, version=version)
    ietf_problem(response, 400, PROBLEM_INCONSISTENT_LENGTH)
    assert offset_of(client, path) == 3
    assert response.headers["Upload-Offset"] == "3"


def test_chunked_body_past_the_length_keeps_nothing(client):
    """Interop 6: refused, nothing kept, the upload stays usable (from -08 it is invalidated)."""
    path = create_path(client, length=5)
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = client.open(path, method="PATCH", headers={
        **v(6), "Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL,
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
