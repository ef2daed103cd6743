"""IETF creation: POST, PUT or PATCH to the collection with Upload-Complete (201, also when
complete; 400 inconsistent-upload-length and malformed fields, nothing created)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from byterange_server.protocol.ietf import PROBLEM_INCONSISTENT_LENGTH
from byterange_server.protocol.ietf import parse_upload_limit

from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import problem
from ..helpers import read_all
from ..helpers import sha256_field
from .helpers import PARTIAL
from .helpers import append
from .helpers import count
from .helpers import create
from .helpers import create_path
from .helpers import ietf_head
from .helpers import ietf_problem
from .helpers import v


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


@pytest.mark.parametrize("headers", [{"Upload-Complete": "?2"}, {"Upload-Complete": "1"},
                                     {"Upload-Length": "-1"}, {"Upload-Length": "1" * 16},
                                     {"Repr-Digest": "sha-256=:AAAA:"}, {"Content-Digest": "nope"}])
def test_malformed_creation_fields_are_400(client, service, headers):
    """Up to interop 7 (drafts -04…-08) a malformed field is a 400; from -09 an invalid
    Upload-Complete or Upload-Length is ignored instead (test_invalid_upload_fields_are_ignored...)."""
    sent = {**v(7), "Upload-Complete": "?0", **headers}
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
