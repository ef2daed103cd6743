"""tus creation: POST with Upload-Length or Upload-Defer-Length, metadata, and
creation-with-upload (201, 400, 413, 415; a failed body leaves the upload to resume)."""

from __future__ import annotations

import email.utils
from urllib.parse import urlsplit

import pytest

from ..helpers import MOUNT
from ..helpers import problem
from ..helpers import read_all
from .helpers import TUS
from .helpers import checksum
from .helpers import create
from .helpers import create_path
from .helpers import offset_of
from .helpers import resource_count
from .helpers import tus_head
from .helpers import tus_patch


def test_create_returns_location_offset_and_expiry(client, service):
    response = create(client, 100)
    assert response.headers["Location"].startswith("http://localhost/files/")
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "100"
    expires = email.utils.parsedate_to_datetime(response.headers["Upload-Expires"])
    path = urlsplit(response.headers["Location"]).path
    record = service.state(path.rsplit("/", 1)[1]).record
    assert abs((expires - record.expires_at).total_seconds()) < 1


def test_create_with_zero_length_is_complete_at_once(client):
    path = create_path(client, 0)
    response = tus_head(client, path)
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "0"
    assert "Upload-Expires" not in response.headers  # complete uploads never expire
    assert read_all(client, path) == b""


def test_create_above_max_size_is_413(client, service):
    response = create(client, 1024**4 + 1, expect=413)
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert resource_count(service) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither Upload-Length nor Upload-Defer-Length
        {"Upload-Length": "-1"},
        {"Upload-Length": "ten"},
        {"Upload-Length": "1" * 16},
        {"Upload-Defer-Length": "0"},
        {"Upload-Defer-Length": "yes"},
        {"Upload-Length": "5", "Upload-Defer-Length": "1"},
        {"Upload-Length": "5", "Upload-Metadata": "key not-base64!"},
        {"Upload-Length": "5", "Upload-Metadata": "a YQ==,a YQ=="},
        {"Upload-Length": "5", "Upload-Metadata": "a YQ==,,b"},
        {"Upload-Length": "5", "Upload-Metadata": "a\x01 YQ=="},
    ],
)
def test_bad_creation_headers_are_400_and_create_nothing(client, service, headers):
    problem(client.post(MOUNT, headers={**TUS, **headers}), 400)
    assert resource_count(service) == 0


def test_metadata_is_stored_whole_and_echoed(client):
    value = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,empty ,owner YWxpY2U="
    path = create_path(client, 5, {"Upload-Metadata": value})
    assert tus_head(client, path).headers["Upload-Metadata"] == value
    response = tus_patch(client, path, 0, b"12345")
    assert response.headers["Upload-Metadata"] == value  # also after completion


def test_no_metadata_no_header(client):
    path = create_path(client, 5)
    assert "Upload-Metadata" not in tus_head(client, path).headers


def test_creation_with_upload(client):
    response = create(client, 11, data=b"hello")
    assert response.headers["Upload-Offset"] == "5"
    path = urlsplit(response.headers["Location"]).path
    assert tus_patch(client, path, 5, b" world").status_code == 204
    assert read_all(client, path) == b"hello world"


def test_creation_with_whole_upload_completes(client):
    response = create(client, 5, data=b"12345", headers={"Upload-Checksum": checksum("md5", b"12345")})
    assert response.headers["Upload-Offset"] == "5"
    assert read_all(client, urlsplit(response.headers["Location"]).path) == b"12345"


def test_creation_with_upload_and_deferred_length(client):
    response = create(client, data=b"abc", headers={"Upload-Defer-Length": "1"})
    assert response.headers["Upload-Offset"] == "3"
    assert response.headers["Upload-Defer-Length"] == "1"


def test_creation_with_upload_of_the_wrong_type_is_415(client, service):
    problem(create(client, 5, data=b"12345", headers={"Content-Type": "text/plain"}, expect=415), 415)
    assert resource_count(service) == 0


def test_creation_with_upload_longer_than_length_is_413(client, service):
    create(client, 3, data=b"12345", expect=413)
    assert resource_count(service) == 0


def test_creation_with_upload_checksum_mismatch_keeps_the_upload_empty(client):
    response = create(client, 5, data=b"12345", headers={"Upload-Checksum": checksum("sha1", b"other")},
                      expect=460)
    path = urlsplit(response.headers["Location"]).path
    assert response.headers["Upload-Offset"] == "0"
    assert offset_of(client, path) == 0
    assert tus_patch(client, path, 0, b"12345").status_code == 204
