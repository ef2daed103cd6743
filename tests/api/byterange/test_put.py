"""Partial PUT with a Content-Range request header, and whole PUT (PROTOCOL.md §3 forms 4-5; E15)."""

from __future__ import annotations

from ..helpers import MOUNT
from ..helpers import allocate
from ..helpers import extent_rows
from ..helpers import for_each
from ..helpers import head_state
from ..helpers import parse_state
from ..helpers import problem
from ..helpers import put_range
from ..helpers import read_all
from ..helpers import sha256_field
from ..helpers import write


def test_partial_put_with_known_length(client, service):
    path = allocate(client)
    response = put_range(client, path, 2, b"cdef", 10)
    assert response.status_code in (200, 204)
    state = parse_state(response.headers)
    assert state["length"] == 10 and state["ranges"] == [(2, 6)] and state["offset"] == 0
    assert state["cache_control"] == "no-store"
    assert response.headers["Preference-Applied"] == "transaction=persist"
    # A partial PUT must not return a validator for bytes that differ from the request body.
    assert "ETag" not in response.headers
    assert extent_rows(service, path) == [(2, 6)]


def test_partial_put_with_unknown_length(client):
    path = allocate(client)
    response = put_range(client, path, 0, b"abc", "*")
    assert response.status_code == 204
    state = parse_state(response.headers)
    assert state["length"] is None and state["ranges"] == [(0, 3)] and state["offset"] == 3


def test_partial_puts_complete_the_resource(client):
    path = allocate(client, 6)
    put_range(client, path, 3, b"def", 6)
    response = put_range(client, path, 0, b"abc", 6)
    assert response.status_code == 204
    assert parse_state(response.headers)["complete"] is True
    assert read_all(client, path) == b"abcdef"


def test_length_only_put_sets_length(client):
    path = allocate(client)
    put_range(client, path, 0, b"abcd")
    response = put_range(client, path, None, b"", 4)
    assert response.status_code == 204, response.get_data()
    state = parse_state(response.headers)
    assert state["length"] == 4 and state["complete"] is True
    assert read_all(client, path) == b"abcd"


def test_length_only_put_with_body_is_400(client):
    path = allocate(client)
    response = client.put(path, data=b"abc", headers={"Content-Range": "bytes */3"})
    problem(response, 400)
    state = head_state(client, path)
    assert state["length"] is None and state["ranges"] == []


def test_length_only_put_with_different_length_is_409(client):
    path = allocate(client, 5)
    problem(put_range(client, path, None, b"", 6), 409, "length-conflict")


def test_length_only_put_below_committed_is_409(client):
    path = allocate(client)
    put_range(client, path, 0, b"abcdef")
    problem(put_range(client, path, None, b"", 3), 409)
    assert head_state(client, path)["length"] is None


def test_put_bytes_past_length_is_409(client):
    path = allocate(client, 4)
    problem(put_range(client, path, 3, b"xy"), 409, "length-conflict")
    problem(put_range(client, path, 4, b"x"), 409, "length-conflict")
    assert head_state(client, path)["ranges"] == []


def test_whole_put_without_content_range(client):
    path = allocate(client)
    response = client.put(path, data=b"hello world")
    assert response.status_code in (200, 201, 204)
    state = parse_state(response.headers)
    assert state["complete"] is True and state["length"] == 11
    assert read_all(client, path) == b"hello world"


def test_whole_put_content_type_is_the_media_type(client):
    """A PUT of the whole resource: its Content-Type is the media type GET serves (the meaning
    a byte-range part's Content-Type takes, draft -03 §2.4); another one than declared is 409."""
    path = allocate(client)
    assert client.put(path, data=b"<p/>", headers={"Content-Type": "text/html"}).status_code == 204
    assert client.get(path).headers["Content-Type"] == "text/html"
    other = allocate(client, headers={"Content-Type": "text/plain"})
    response = client.put(other, data=b"<p/>", headers={"Content-Type": "text/html"})
    problem(response, 409, "media-type-conflict")
    assert head_state(client, other)["ranges"] == []


def test_partial_put_content_type_describes_the_segment_only(client):
    """A partial PUT's Content-Type describes its segment (clients send application/octet-stream
    for raw bytes): the media type declared at creation stays."""
    path = allocate(client, 4, {"Content-Type": "text/plain"})
    response = put_range(client, path, 0, b"abcd", 4, {"Content-Type": "application/octet-stream"})
    assert response.status_code == 204
    assert client.get(path).headers["Content-Type"] == "text/plain"


def test_whole_put_on_allocated_length(client):
    path = allocate(client, 5)
    assert client.put(path, data=b"hello").status_code == 204
    assert read_all(client, path) == b"hello"


def test_whole_put_of_different_length_is_409(client):
    path = allocate(client, 5)
    problem(client.put(path, data=b"hello!"), 409, "length-conflict")
    assert head_state(client, path)["ranges"] == []


def test_whole_put_over_other_bytes_is_409(client):
    path = allocate(client)
    write(client, path, 0, b"HELLO")
    problem(client.put(path, data=b"hello"), 409, "content-mismatch")
    assert head_state(client, path)["ranges"] == [(0, 5)]


def test_empty_whole_put_completes_empty_resource(client):
    path = allocate(client)
    response = client.put(path, environ_overrides={"CONTENT_LENGTH": "0"})
    assert response.status_code == 204, response.get_data()
    assert parse_state(response.headers)["complete"] is True
    assert client.get(path).get_data() == b""


def test_put_is_idempotent(client, service):
    path = allocate(client, 8)
    put_range(client, path, 0, b"abcd")
    response = put_range(client, path, 0, b"abcd")
    assert response.status_code == 204
    assert extent_rows(service, path) == [(0, 4)]


def test_put_different_bytes_is_409(client, service):
    path = allocate(client, 8)
    put_range(client, path, 0, b"abcd")
    problem(put_range(client, path, 2, b"XXef"), 409, "content-mismatch")
    assert extent_rows(service, path) == [(0, 4)]


def test_put_content_length_disagreeing_with_range_is_400(client):
    path = allocate(client, 8)
    response = client.put(path, data=b"ab", headers={"Content-Range": "bytes 0-3/8"})
    problem(response, 400)
    assert head_state(client, path)["ranges"] == []


def test_put_bad_content_range_is_400(client):
    path = allocate(client)

    def check(value):
        problem(client.put(path, data=b"abcd", headers={"Content-Range": value}), 400)
        assert head_state(client, path)["ranges"] == []

    values = [
        "bytes 3-1/8",
        "bytes 0-3/3",
        "bytes 0-3",
        "bytes 0-/8",
        "bytes 0-1234567890123456/*",
        "bytes=0-3/8",
    ]
    for_each(values, check)


def test_put_unknown_unit_is_422(client):
    path = allocate(client)
    problem(client.put(path, data=b"abcd", headers={"Content-Range": "items 0-3/8"}), 422)


def test_put_if_none_match_star_on_existing_is_412(client):
    path = allocate(client, 4)
    problem(put_range(client, path, 0, b"abcd", 4, {"If-None-Match": "*"}), 412)
    assert head_state(client, path)["ranges"] == []


def test_put_content_digest(client):
    path = allocate(client, 4)
    good = put_range(client, path, 0, b"ab", 4, {"Content-Digest": sha256_field(b"ab")})
    assert good.status_code == 204
    assert good.headers["Preference-Applied"] == "transaction=atomic"
    bad = put_range(client, path, 2, b"cd", 4, {"Content-Digest": sha256_field(b"xx")})
    problem(bad, 400, "content-digest-mismatch")
    assert head_state(client, path)["ranges"] == [(0, 2)]


def test_put_to_unknown_resource_is_404(client):
    problem(put_range(client, MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA", 0, b"x"), 404)


def test_put_to_collection_is_405(client):
    problem(client.put(MOUNT, data=b"x"), 405)
