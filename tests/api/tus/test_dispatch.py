"""Which requests are tus (any Tus-Resumable; a version other than 1.0.0 is 412 and nothing is
processed), X-HTTP-Method-Override, and one upload seen through tus and byte-range alike
(docs/spec-notes.md#protocol-dispatch)."""

from __future__ import annotations

from ..helpers import MOUNT
from ..helpers import allocate
from ..helpers import head_state
from ..helpers import problem
from ..helpers import read_all
from ..helpers import read_range
from ..helpers import write
from .helpers import OCTETS
from .helpers import TUS
from .helpers import create_path
from .helpers import offset_of
from .helpers import resource_count
from .helpers import tus_head
from .helpers import tus_patch


def test_unsupported_version_is_412_and_nothing_is_processed(client, service):
    path = create_path(client, 10)
    bad = {"Tus-Resumable": "0.2.2"}
    response = client.post(MOUNT, headers={**bad, "Upload-Length": "5"})
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert "Upload-Offset" not in response.headers
    assert resource_count(service) == 1
    response = client.patch(
        path, data=b"abc", headers={**bad, "Upload-Offset": "0", "Content-Type": OCTETS}
    )
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert offset_of(client, path) == 0
    assert client.head(path, headers=bad).status_code == 412
    assert client.delete(path, headers=bad).status_code == 412
    assert offset_of(client, path) == 0


def test_every_tus_response_carries_tus_resumable(client):
    path = create_path(client, 3)
    responses = [
        tus_head(client, path),
        tus_patch(client, path, 0, b"abc"),
        tus_patch(client, path, 1, b"x"),  # an error
        client.head(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA", headers=TUS),  # 404
        client.put(MOUNT, headers=TUS),  # 405 from the router
        client.get(path, headers=TUS),
    ]
    for response in responses:
        assert response.headers.get("Tus-Resumable") == "1.0.0", response.status_code


def test_byte_range_requests_carry_no_tus_headers(client):
    path = allocate(client, 3)
    response = client.head(path)
    assert "Tus-Resumable" not in response.headers
    assert response.headers["Upload-Complete"] == "?0"


def test_method_override(client):
    path = create_path(client, 3)
    response = client.post(path, data=b"abc", headers={
        **TUS, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OCTETS,
    })
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"
    response = client.post(path, headers={**TUS, "X-HTTP-Method-Override": "delete"})
    assert response.status_code == 204
    assert tus_head(client, path).status_code == 404


def test_method_override_is_ignored_without_tus(client):
    path = allocate(client, 3)
    response = client.post(path, headers={"X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 405
    assert client.head(path).status_code == 200


def test_tus_upload_seen_through_byte_range(client):
    path = create_path(client, 10)
    tus_patch(client, path, 0, b"01234")
    state = head_state(client, path)
    assert state["ranges"] == [(0, 5)] and state["complete"] is False  # half-open
    assert read_range(client, path, 1, 3) == b"123"
    tus_patch(client, path, 5, b"56789")
    assert read_all(client, path) == b"0123456789"
    assert head_state(client, path)["headers"]["Repr-Digest"]


def test_byte_range_resource_continued_with_tus(client):
    path = allocate(client, 10)
    write(client, path, 0, b"012")
    write(client, path, 6, b"6789")  # sparse: the tus offset is the end of the prefix
    assert offset_of(client, path) == 3
    # Appending over the committed island with identical bytes is fine ...
    assert tus_patch(client, path, 3, b"345678").status_code == 204
    assert offset_of(client, path) == 10  # the island coalesced into the prefix
    # ... different bytes over committed ones are refused and change nothing.
    path2 = allocate(client, 4)
    write(client, path2, 2, b"cd")
    problem(tus_patch(client, path2, 0, b"abXY"), 409, "content-mismatch")
    assert offset_of(client, path2) == 0
