"""Which requests are IETF (interop 6, 7, 8 echoed; another version is a byte-range request;
Upload-Complete alone is IETF; tus wins), and one upload seen through every protocol
(docs/spec-notes.md#protocol-dispatch)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from ..helpers import MOUNT
from ..helpers import head_state
from ..helpers import problem
from ..helpers import read_all
from ..helpers import read_range
from .helpers import append
from .helpers import count
from .helpers import create
from .helpers import create_path
from .helpers import v


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


@pytest.mark.parametrize("version", ["5", "10", "x", "-1"])
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
