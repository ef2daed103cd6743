"""Where the interop versions of draft-ietf-httpbis-resumable-upload disagree (issue 15): each
test names the section and the drafts whose text has the rule, and checks the versions on
either side of it. Interop 6 = drafts -04/-05, 7 = -06…-08, 8 = -09…-11, 9 = the editor's copy
after -12."""

from __future__ import annotations

import pytest

from byterange_server.protocol.ietf import PARTIAL_UPLOAD
from byterange_server.protocol.ietf import PROBLEM_COMPLETED_UPLOAD
from byterange_server.protocol.ietf import PROBLEM_INCONSISTENT_LENGTH
from byterange_server.protocol.ietf import parse_upload_limit

from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import problem
from ..helpers import read_all
from .helpers import MISSING
from .helpers import append
from .helpers import create
from .helpers import create_path
from .helpers import ietf_head
from .helpers import ietf_problem
from .helpers import offset_of
from .helpers import v

# -- Offset Retrieval / Upload Cancellation (-04, -05: interop 6) -------------------------------


@pytest.mark.parametrize("field,value", [("Upload-Offset", "2"), ("Upload-Complete", "?0"),
                                         ("Upload-Length", "8")])
def test_offset_retrieval_v6_head_with_upload_fields_is_400(client, field, value):
    """-04/-05 "Offset Retrieval": a HEAD MUST NOT carry Upload-Offset, Upload-Complete (or, in
    -05, Upload-Length); the server MUST reject it with 400. Later drafts dropped the rule."""
    path = create_path(client, length=8, data=b"ab", version=6)
    assert client.head(path, headers={**v(6), field: value}).status_code == 400
    assert client.head(path, headers={**v(7), field: value}).status_code == 204


@pytest.mark.parametrize("field,value", [("Upload-Offset", "2"), ("Upload-Complete", "?0")])
def test_upload_cancellation_v6_delete_with_upload_fields_is_400_and_deletes_nothing(client, field, value):
    """-04/-05 "Upload Cancellation": a DELETE with Upload-Offset or Upload-Complete MUST be
    rejected with 400 -- and so it cancels nothing."""
    path = create_path(client, length=8, data=b"ab", version=6)
    body = problem(client.delete(path, headers={**v(6), field: value}), 400, "malformed-header")
    assert body["fields"] == [field]
    assert offset_of(client, path) == 2
    assert client.delete(path, headers={**v(7), field: value}).status_code == 204


# -- Upload Append: Upload-Complete on responses (-06…-09: interop 7, 8; editor's copy: 9) ------


@pytest.mark.parametrize("version", [7, 8, 9])
def test_upload_append_responses_not_completing_say_upload_complete_false(client, version):
    """-06…-09 "Upload Append": if the request did not complete the upload, any response,
    successful or not, MUST carry Upload-Complete: ?0 -- a 404, and the 400 for a non-empty
    append to a completed upload too (the editor's copy: "Upload-Complete can be false in
    response to an invalid operation performed on a completed upload")."""
    missing = append(client, MISSING, 0, b"x", version=version)
    assert missing.status_code == 404 and missing.headers["Upload-Complete"] == "?0"
    gone = ietf_head(client, MISSING, version=version)
    assert gone.status_code == 404 and gone.headers["Upload-Complete"] == "?0"
    path = create_path(client, complete=True, data=b"abcd", version=version)
    after = append(client, path, 4, b"more", version=version)
    ietf_problem(after, 400, PROBLEM_INCONSISTENT_LENGTH)
    assert after.headers["Upload-Complete"] == "?0"
    # Offset retrieval still reports the state: the upload is complete.
    assert ietf_head(client, path, version=version).headers["Upload-Complete"] == "?1"


def test_upload_append_v6_error_responses_report_the_state(client):
    """-04/-05: Upload-Complete on a response is the upload's state, so a refused append to a
    completed upload says ?1."""
    path = create_path(client, complete=True, data=b"abcd", version=6)
    after = append(client, path, 4, b"more", version=6)
    assert after.status_code == 400 and after.headers["Upload-Complete"] == "?1"


# -- Upload-Length / Upload-Complete values (-09 on: interop 8, 9) -------------------------------


@pytest.mark.parametrize("version", [8, 9])
@pytest.mark.parametrize("value", ["1.5", "-1", "?1", "1" * 16])
def test_upload_length_invalid_value_is_ignored_from_draft_09(client, version, value):
    """-09 on, "Length": an Upload-Length that is not a non-negative Integer MUST cause the
    entire field to be ignored: the creation succeeds without a length."""
    response = create(client, headers={"Upload-Length": value}, data=b"ab", version=version)
    assert "Upload-Length" not in response.headers
    assert response.headers["Upload-Offset"] == "2"


def test_upload_length_invalid_value_is_400_up_to_draft_08(client, service):
    """-04…-08 (interop 6, 7) have no such rule: a malformed field is a 400 and nothing is made."""
    for version in (6, 7):
        create(client, headers={"Upload-Length": "1.5"}, data=b"ab", version=version, expect=400)


@pytest.mark.parametrize("version", [8, 9])
def test_upload_complete_invalid_value_is_ignored_from_draft_09(client, version):
    """-09 on, "Completeness": an invalid Upload-Complete is ignored. On an append that leaves
    it without the required field (400); on a creation, the request is not an upload creation
    (here: a byte-range allocation, which takes no body)."""
    path = create_path(client, data=b"ab", version=version)
    response = client.patch(path, data=b"cd", headers={
        **v(version), "Upload-Offset": "2", "Upload-Complete": "?2", "Content-Type": PARTIAL_UPLOAD})
    assert "needs Upload-Offset and Upload-Complete" in problem(response, 400)["detail"]
    allocated = client.post(MOUNT, headers={**v(version), "Upload-Complete": "yes"})
    assert allocated.status_code == 201 and "Upload-Limit" not in allocated.headers


# -- Upload Append to a completed upload (-04…-11: interop 6, 7, 8; editor's copy: 9) ------------


@pytest.mark.parametrize("version", [6, 7, 8])
@pytest.mark.parametrize("complete", [True, False])
def test_empty_append_to_a_completed_upload_is_rejected_up_to_interop_8(client, version, complete):
    """-04…-11 "Upload Append": if the upload is already complete, the server MUST NOT modify
    it and MUST reject the request (-05: with 400; the completed-upload problem type)."""
    path = create_path(client, data=b"abcd", version=version)
    assert append(client, path, 4, b"", complete=True, version=version).status_code == 204
    response = append(client, path, 4, b"", complete=complete, version=version)
    ietf_problem(response, 400, PROBLEM_COMPLETED_UPLOAD)
    assert read_all(client, path) == b"abcd"


def test_empty_completing_append_to_a_completed_upload_is_replayed_at_interop_9(client):
    """Editor's copy "Upload Append": the server can replay the final response to a valid
    append to the completed upload."""
    path = create_path(client, data=b"abcd", version=9)
    first = append(client, path, 4, b"", complete=True, version=9)
    again = append(client, path, 4, b"", complete=True, version=9)
    assert (again.status_code, again.headers["Upload-Complete"]) == (first.status_code, "?1")
    assert again.headers["Upload-Offset"] == "4" and again.headers["Upload-Length"] == "4"


# -- Upload Append: content past the length (-08 on: interop 7, 8, 9) ----------------------------


def _invalid(response):
    if response.request.method == "HEAD":  # no body to read the problem type from
        assert response.status_code == 410, response.status_code
        return None
    return problem(response, 410, "upload-invalid")


@pytest.mark.parametrize("version", [7, 8, 9])
def test_content_past_the_length_marks_the_upload_invalid_from_draft_08(client, version):
    """-08 on "Upload Append": once the offset would exceed the known length the server MUST
    reject the request, mark the upload invalid and reject any further interaction with it."""
    path = create_path(client, length=4, data=b"ab", version=version)
    overrun = append(client, path, 2, b"cdef", version=version)
    ietf_problem(overrun, 400, PROBLEM_INCONSISTENT_LENGTH)
    _invalid(append(client, path, 2, b"cd", complete=True, version=version))
    _invalid(ietf_head(client, path, version=version))
    _invalid(client.get(path, headers=v(version)))
    _invalid(client.head(path))  # in every dialect
    _invalid(client.delete(path, headers=v(version)))


def test_chunked_content_past_the_length_marks_the_upload_invalid_from_draft_08(client):
    """-08 on: Content-Length cannot be relied on (it may be absent): a chunked overrun too."""
    path = create_path(client, length=5)
    response = client.open(path, method="PATCH", headers={
        **v(8), "Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL_UPLOAD,
        "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": BodyStream(b"abcdefgh", chunk=3), "wsgi.input_terminated": True})
    ietf_problem(response, 400, PROBLEM_INCONSISTENT_LENGTH)
    _invalid(ietf_head(client, path))


def test_content_past_the_length_leaves_the_upload_usable_at_interop_6(client):
    """-04/-05: the request is rejected (400); the rule to invalidate came with -08."""
    path = create_path(client, length=4, data=b"ab", version=6)
    assert append(client, path, 2, b"cdef", version=6).status_code == 400
    assert append(client, path, 2, b"cd", complete=True, version=6).status_code == 204
    assert read_all(client, path) == b"abcd"


def test_an_invalid_upload_expires_as_any_other(client, service):
    path = create_path(client, length=4, data=b"ab")
    append(client, path, 2, b"cdef")
    from sqlalchemy import update

    from byterange_server.db import clock
    from byterange_server.db.models import resources

    with service.db.write() as conn:
        conn.execute(update(resources).where(resources.c.id == path.rsplit("/", 1)[1])
                     .values(expires_at=clock.utcnow().replace(year=2000)))
    assert service.remove_expired() == 1
    assert ietf_head(client, path).status_code == 404


# -- Offset Retrieval with GET (editor's copy: interop 9) ----------------------------------------


def test_get_is_an_offset_retrieval_at_interop_9(client):
    """Editor's copy "Offset Retrieval": a successful response to HEAD *or GET* MUST carry
    Upload-Offset, Upload-Complete, Upload-Length (if supplied) and Upload-Limit."""
    path = create_path(client, length=8, data=b"abcd", version=9)
    response = client.get(path, headers=v(9))
    assert response.status_code == 204 and response.get_data() == b""
    assert response.headers["Upload-Offset"] == "4"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == "8"
    assert parse_upload_limit(response.headers["Upload-Limit"]).max_size == 1024**4
    assert response.headers["Cache-Control"] == "no-store"
    # Before 9, GET keeps its byte-range meaning: an incomplete resource without Range is 409.
    assert client.get(path, headers=v(8)).status_code == 409


def test_get_of_a_completed_upload_at_interop_9_serves_it_with_the_state(client):
    path = create_path(client, complete=True, data=b"abcd", version=9)
    response = client.get(path, headers=v(9))
    assert response.status_code == 200 and response.get_data() == b"abcd"
    for name, value in (("Upload-Offset", "4"), ("Upload-Complete", "?1"), ("Upload-Length", "4")):
        assert response.headers[name] == value
    assert "Upload-Limit" in response.headers
    ranged = client.get(path, headers={**v(9), "Range": "bytes=1-2"})
    assert ranged.status_code == 206 and ranged.get_data() == b"bc"
    assert ranged.headers["Upload-Offset"] == "4"


# -- Limits, completion without Content-Length, OPTIONS (editor's copy: interop 9) ---------------


def test_limit_rejection_carries_upload_limit_at_interop_9(client):
    """"Limits": a 413 caused by the upload limits SHOULD carry Upload-Limit (-09 on)."""
    response = create(client, length=2 * 1024**4, version=9, expect=413)
    assert parse_upload_limit(response.headers["Upload-Limit"]).max_size == 1024**4
    assert response.headers["Upload-Draft-Interop-Version"] == "9"


def test_completing_chunked_append_without_content_length_at_interop_9(client):
    """"Upload Append": a completing append need not carry Content-Length (chunked)."""
    path = create_path(client, data=b"ab", version=9)
    response = client.open(path, method="PATCH", headers={
        **v(9), "Upload-Offset": "2", "Upload-Complete": "?1", "Content-Type": PARTIAL_UPLOAD,
        "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": BodyStream(b"cdef", chunk=3), "wsgi.input_terminated": True})
    assert response.status_code == 204, response.get_data()
    assert (response.headers["Upload-Complete"], response.headers["Upload-Length"]) == ("?1", "6")
    assert read_all(client, path) == b"abcdef"


def test_options_at_interop_9(client):
    """"Limits": OPTIONS of a resource that creates uploads MUST carry Upload-Limit (min-size=0
    without limits); the Accept-Patch requirement of -10/-11 was removed after -11."""
    response = client.options(MOUNT, headers=v(9))
    assert response.headers["Upload-Draft-Interop-Version"] == "9"
    assert parse_upload_limit(response.headers["Upload-Limit"]).min_size == 0
    assert PARTIAL_UPLOAD not in response.headers.get("Accept-Patch", "")
    assert PARTIAL_UPLOAD in client.options(MOUNT, headers=v(8)).headers["Accept-Patch"]


def test_cancellation_at_interop_9(client):
    """"Upload Cancellation": DELETE deactivates the upload (204 customary); later requests fail."""
    path = create_path(client, data=b"ab", version=9)
    response = client.delete(path, headers={**v(9), "Upload-Offset": "2"})  # no -05 rule here
    assert response.status_code == 204
    assert ietf_head(client, path, version=9).status_code == 404
