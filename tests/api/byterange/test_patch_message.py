"""PATCH with message/byterange (PROTOCOL.md §3; http-specs §1.4, E2, E3, E18)."""

from __future__ import annotations

import hashlib
import os

import pytest

from ..helpers import MESSAGE
from ..helpers import BodyStream
from ..helpers import Case
from ..helpers import allocate
from ..helpers import extent_rows
from ..helpers import for_each
from ..helpers import head_state
from ..helpers import parse_state
from ..helpers import patch_message
from ..helpers import patch_raw
from ..helpers import problem
from ..helpers import read_all
from ..helpers import run_case
from ..helpers import send_stream
from ..helpers import sha256_field
from .write_rules import WriteRules


class TestWriteRules(WriteRules):
    media_type = MESSAGE


def test_draft_example_writes_wxyz_at_offset_2(client):
    path = allocate(client, 12)
    patch_message(client, path, 0, b"0123456789\r\n", 12)
    # Already complete: an identical re-send of the middle is fine...
    assert patch_message(client, path, 2, b"2345", 12).status_code == 204
    # ...a different one is not: the resource is write-once.
    problem(patch_message(client, path, 2, b"wxyz", 12), 409, "content-mismatch")
    assert read_all(client, path) == b"0123456789\r\n"


def test_exact_wire_bytes_of_the_draft(client):
    path = allocate(client, 12)
    body = b"Content-Range: bytes 2-5/12\r\n\r\nwxyz"
    response = patch_raw(client, path, body, MESSAGE)
    assert response.status_code == 204
    assert parse_state(response.headers)["ranges"] == [(2, 6)]


def test_media_type_is_case_insensitive_and_takes_parameters(client):
    path = allocate(client, 4)
    body = b"Content-Range: bytes 0-3/4\r\n\r\nwxyz"
    assert patch_raw(client, path, body, "Message/ByteRange; foo=bar").status_code == 204


def test_length_only_message(client):
    path = allocate(client)
    response = patch_message(client, path, None, b"", 7)
    assert response.status_code == 204
    assert parse_state(response.headers)["length"] == 7


def test_length_only_message_with_bytes_is_400(client):
    path = allocate(client)
    body = b"Content-Range: bytes */7\r\n\r\nabc"
    problem(patch_raw(client, path, body, MESSAGE), 400)
    state = head_state(client, path)
    assert state["ranges"] == []


def test_content_offset_message_of_unknown_end(client):
    path = allocate(client)
    body = b"Content-Offset: 5\r\n\r\nfghij"
    response = patch_raw(client, path, body, MESSAGE)
    assert response.status_code == 204
    assert parse_state(response.headers)["ranges"] == [(5, 10)]


def test_large_body_streams_across_chunks(client, service):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = allocate(client, len(data))
    response = patch_message(client, path, 0, data, len(data))
    assert response.status_code == 204
    got = client.get(path)
    assert hashlib.sha256(got.get_data()).digest() == hashlib.sha256(data).digest()
    assert got.headers["Repr-Digest"] == sha256_field(data)
    assert extent_rows(service, path) == [(0, len(data))]


FRAMING_CASES = [
    Case("empty body", body=b"", status=400),
    Case("no blank line", body=b"Content-Range: bytes 0-3/8\r\n", status=400),
    Case("no blank line and data", body=b"Content-Range: bytes 0-3/8\r\nabcd", status=400),
    Case("bare LF", body=b"Content-Range: bytes 0-3/8\n\nabcd", status=400),
    Case("field without colon", body=b"Content-Range bytes 0-3/8\r\n\r\nabcd", status=400),
    Case("space before colon", body=b"Content-Range : bytes 0-3/8\r\n\r\nabcd", status=400),
    Case("obs-fold", body=b"Content-Range: bytes 0-3/8\r\n more\r\n\r\nabcd", status=400),
    Case("NUL in value", body=b"Content-Range: bytes 0-3/8\x00\r\n\r\nabcd", status=400),
    Case("raw bytes, range only in request headers", body=b"abcd", status=400),
    Case(
        "over-large field block",
        body=b"X-Pad: " + b"p" * 9000 + b"\r\nContent-Range: bytes 0-3/8\r\n\r\nabcd",
        status=400,
    ),
    Case("body longer than its range", body=b"Content-Range: bytes 0-3/8\r\n\r\nabcdef", status=400),
    Case("no range", body=b"Content-Type: text/plain\r\n\r\nabcd", status=422, problem="missing-range"),
]


def test_malformed_message_is_rejected(client):
    def check(case):
        case.length = 8
        case.headers = {"Content-Type": MESSAGE, "Content-Range": "bytes 0-3/8"}
        if case.status != 400 or "longer" not in case.name:
            case.ranges_after = []
        run_case(client, case)

    for_each(FRAMING_CASES, check)


def test_header_block_at_the_cap_is_accepted(client):
    path = allocate(client, 4)
    fields_line = b"Content-Range: bytes 0-3/4\r\n"
    pad = 8192 - len(fields_line) - len(b"X-Pad: \r\n") - 2
    body = b"X-Pad: " + b"p" * pad + b"\r\n" + fields_line + b"\r\n" + b"wxyz"
    response = patch_raw(client, path, body, MESSAGE)
    assert response.status_code == 204, response.get_data()


class TestMaxSize:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_RESOURCE_SIZE="1000")

    def test_declared_length_over_max_is_400_not_413(self, client):
        path = allocate(client)
        body = problem(patch_message(client, path, None, b"", 1001), 400, "limit-exceeded")
        assert body.get("max-size") == 1000
        assert head_state(client, path)["length"] is None

    def test_range_past_max_with_unknown_length_is_400(self, client):
        path = allocate(client)
        problem(patch_message(client, path, 999, b"ab"), 400, "limit-exceeded")
        assert head_state(client, path)["ranges"] == []

    def test_fifteen_digit_length_is_400(self, client):
        path = allocate(client)
        problem(patch_message(client, path, None, b"", 999_999_999_999_999), 400)

    def test_up_to_max_is_fine(self, client):
        path = allocate(client)
        assert patch_message(client, path, 990, b"x" * 10, 1000).status_code == 204


class TestLiveWriters:
    """A request streaming into a range holds it: overlapping writers get 409 + Retry-After."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, CHUNK_SIZE="16")

    def _stream_with(self, client, path, other_request):
        data = bytes(range(100))
        body = b"Content-Range: bytes 0-99/200\r\n\r\n" + data
        seen = []

        def on_read(position):
            if position >= 64 and not seen:
                seen.append(other_request())

        stream = BodyStream(body, chunk=16, on_read=on_read)
        response = send_stream(client, "PATCH", path, stream, len(body), {"Content-Type": MESSAGE})
        return response, seen[0]

    def test_overlapping_write_during_a_live_write_is_409_retry_after(self, client, service):
        path = allocate(client, 200)
        response, other = self._stream_with(
            client, path, lambda: patch_message(client, path, 50, bytes(range(50, 60)))
        )
        body = problem(other, 409, "write-in-progress")
        assert other.headers.get("Retry-After")
        assert body["status"] == 409
        assert response.status_code == 204
        assert extent_rows(service, path) == [(0, 100)]
        assert client.get(path, headers={"Range": "bytes=0-99"}).get_data() == bytes(range(100))

    def test_disjoint_write_during_a_live_write_succeeds(self, client, service):
        path = allocate(client, 200)
        response, other = self._stream_with(
            client, path, lambda: patch_message(client, path, 100, b"z" * 100)
        )
        assert other.status_code == 204
        assert response.status_code == 204
        state = head_state(client, path)
        assert state["complete"] is True
        assert extent_rows(service, path) == [(0, 200)]

    def test_head_during_a_live_write_shows_only_committed(self, client):
        path = allocate(client, 200)
        response, other = self._stream_with(client, path, lambda: client.head(path))
        assert other.status_code == 200
        assert other.headers["Committed-Ranges"] == "none"  # nothing reported before commit
        assert response.status_code == 204
