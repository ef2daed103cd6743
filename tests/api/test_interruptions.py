"""Interrupted and mis-sized bodies (PROTOCOL.md §3 "Interrupted body"; E9, E10, E11).

A body shorter than its Content-Length is produced with a ``wsgi.input`` that ends early (plain
EOF, as gunicorn shows a disconnect) or raises ``ClientDisconnected`` / ``OSError``.
"""

from __future__ import annotations

import pytest
from werkzeug.exceptions import ClientDisconnected

from .helpers import BINARY
from .helpers import BOUNDARY
from .helpers import MESSAGE
from .helpers import MULTIPART
from .helpers import BodyStream
from .helpers import allocate
from .helpers import binary_body
from .helpers import extent_rows
from .helpers import head_state
from .helpers import multipart_body
from .helpers import parse_state
from .helpers import patch_raw
from .helpers import problem
from .helpers import read_range
from .helpers import send_stream
from .helpers import sha256_field
from .helpers import stored_bytes
from .helpers import write

DATA = bytes(range(256)) * 4  # 1024 bytes
FAILURES = {
    "eof": None,
    "client-disconnected": ClientDisconnected(),
    "oserror": OSError(104, "Connection reset by peer"),
}


def _message(first: int, data: bytes, length: int | str = "*") -> bytes:
    return f"Content-Range: bytes {first}-{first + len(data) - 1}/{length}\r\n\r\n".encode() + data


def _cut(body: bytes, data_received: int, data: bytes) -> bytes:
    """``body`` cut so that exactly ``data_received`` bytes of ``data`` arrived."""
    head = body.index(data)
    return body[: head + data_received]


def _send_short(client, path, content_type, body, sent, failure="eof", headers=None, chunk=100):
    stream = BodyStream(body[:sent], chunk=chunk, fail=FAILURES[failure])
    all_headers = {"Content-Type": content_type, **(headers or {})}
    return send_stream(client, "PATCH", path, stream, len(body), all_headers)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_persist_commits_received_prefix(client, service, failure):
    path = allocate(client, 2048)
    body = _message(100, DATA, 2048)
    sent = len(_cut(body, 300, DATA))
    response = _send_short(client, path, MESSAGE, body, sent, failure)
    problem(response, 400)
    assert response.headers["Preference-Applied"] == "transaction=persist"
    state = head_state(client, path)
    assert state["ranges"] == [(100, 400)]
    assert state["length"] == 2048
    assert read_range(client, path, 100, 399) == DATA[:300]
    assert extent_rows(service, path) == [(100, 400)]


def test_persist_prefix_then_resume_completes(client):
    path = allocate(client, len(DATA))
    body = _message(0, DATA, len(DATA))
    _send_short(client, path, MESSAGE, body, len(_cut(body, 500, DATA)))
    state = head_state(client, path)
    assert state["offset"] == 500 and state["content_length"] == "500"
    write(client, path, state["offset"], DATA[state["offset"] :], len(DATA))
    assert client.get(path).get_data() == DATA


def test_explicit_persist_is_reported(client):
    path = allocate(client, 2048)
    body = _message(0, DATA)
    response = _send_short(
        client, path, MESSAGE, body, len(_cut(body, 10, DATA)), headers={"Prefer": "transaction=persist"}
    )
    problem(response, 400)
    assert response.headers["Preference-Applied"] == "transaction=persist"
    assert head_state(client, path)["ranges"] == [(0, 10)]


def test_interruption_inside_field_block_commits_nothing(client):
    path = allocate(client, 2048)
    body = _message(0, DATA)
    problem(_send_short(client, path, MESSAGE, body, 10), 400)
    assert head_state(client, path)["ranges"] == []


def test_interruption_before_any_data_commits_nothing(client):
    path = allocate(client, 2048)
    body = _message(0, DATA)
    problem(_send_short(client, path, MESSAGE, body, body.index(DATA)), 400)
    assert head_state(client, path)["ranges"] == []


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_atomic_commits_nothing(client, service, failure):
    path = allocate(client, 2048)
    body = _message(100, DATA)
    response = _send_short(
        client, path, MESSAGE, body, len(_cut(body, 300, DATA)), failure, {"Prefer": "transaction=atomic"}
    )
    problem(response, 400)
    assert response.headers["Preference-Applied"] == "transaction=atomic"
    assert head_state(client, path)["ranges"] == []
    assert extent_rows(service, path) == []


def test_content_digest_commits_nothing(client, service):
    path = allocate(client, 2048)
    body = _message(100, DATA)
    response = _send_short(
        client,
        path,
        MESSAGE,
        body,
        len(_cut(body, 300, DATA)),
        headers={"Content-Digest": sha256_field(body)},
    )
    problem(response, 400)
    assert head_state(client, path)["ranges"] == []
    assert extent_rows(service, path) == []


def test_interrupted_write_releases_its_range(client):
    """After an interruption the same range can be written again at once (no 409 lease)."""
    path = allocate(client, len(DATA))
    body = _message(0, DATA, len(DATA))
    _send_short(
        client, path, MESSAGE, body, len(_cut(body, 10, DATA)), headers={"Prefer": "transaction=atomic"}
    )
    write(client, path, 0, DATA, len(DATA))
    assert client.get(path).get_data() == DATA


def test_interruption_does_not_apply_conflicting_prefix(client, service):
    """Under persist, a received prefix that differs from committed bytes is still a 409."""
    path = allocate(client, 2048)
    write(client, path, 0, b"\xff" * 50)
    body = _message(0, DATA)
    response = _send_short(client, path, MESSAGE, body, len(_cut(body, 300, DATA)))
    problem(response, 409, "content-mismatch")
    assert extent_rows(service, path) == [(0, 50)]


class TestMultipart:
    CT = f"{MULTIPART}; boundary={BOUNDARY}"

    def test_disconnect_in_second_part_commits_both_prefixes(self, client, service):
        path = allocate(client, 4096)
        body = multipart_body([(0, DATA[:200]), (1000, DATA)])
        sent = body.index(DATA, body.index(b"bytes 1000-")) + 123
        problem(_send_short(client, path, self.CT, body, sent, "client-disconnected"), 400)
        assert head_state(client, path)["ranges"] == [(0, 200), (1000, 1123)]
        assert extent_rows(service, path) == [(0, 200), (1000, 1123)]

    def test_disconnect_under_atomic_commits_no_part(self, client, service):
        path = allocate(client, 4096)
        body = multipart_body([(0, DATA[:200]), (1000, DATA)])
        sent = body.index(DATA, body.index(b"bytes 1000-")) + 123
        response = _send_short(client, path, self.CT, body, sent, headers={"Prefer": "transaction=atomic"})
        problem(response, 400)
        assert extent_rows(service, path) == []

    def test_part_shorter_than_its_range_commits_prefix_under_persist(self, client, service):
        """The delimiter comes early: an interruption at the shorter length (E9)."""
        path = allocate(client, 4096)
        body = (
            f"--{BOUNDARY}\r\nContent-Range: bytes 0-99/4096\r\n\r\n".encode()
            + DATA[:60]
            + f"\r\n--{BOUNDARY}\r\nContent-Range: bytes 200-209/4096\r\n\r\n".encode()
            + DATA[:10]
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        response = patch_raw(client, path, body, self.CT)
        problem(response, 400, "truncated-body")
        ranges = head_state(client, path)["ranges"]
        assert ranges[0] == (0, 60)
        assert read_range(client, path, 0, 59) == DATA[:60]
        # Nothing is ever committed past what arrived for the short part.
        assert all(start >= 100 or stop <= 60 for start, stop in ranges)
        assert parse_state(response.headers)["ranges"] == ranges

    def test_part_shorter_than_its_range_commits_nothing_under_atomic(self, client, service):
        path = allocate(client, 4096)
        body = (
            f"--{BOUNDARY}\r\nContent-Range: bytes 0-99/4096\r\n\r\n".encode()
            + DATA[:60]
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        response = patch_raw(client, path, body, self.CT, {"Prefer": "transaction=atomic"})
        problem(response, 400)
        assert extent_rows(service, path) == []

    def test_part_longer_than_its_range_is_400(self, client):
        path = allocate(client, 4096)
        body = (
            f"--{BOUNDARY}\r\nContent-Range: bytes 0-9/4096\r\n\r\n".encode()
            + DATA[:30]
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        problem(patch_raw(client, path, body, self.CT), 400)
        ranges = head_state(client, path)["ranges"]
        assert ranges in ([], [(0, 10)])  # never anything past the declared range

    def test_missing_close_delimiter_is_an_interruption(self, client):
        path = allocate(client, 4096)
        body = f"--{BOUNDARY}\r\nContent-Range: bytes 0-9/4096\r\n\r\n".encode() + DATA[:10]
        problem(patch_raw(client, path, body, self.CT), 400)
        # The part's bytes may or may not have been recognised as complete; never more.
        assert head_state(client, path)["ranges"] in ([], [(0, 10)])


class TestBinary:
    def test_disconnect_inside_known_length_content(self, client):
        path = allocate(client, 4096)
        body = binary_body([(0, DATA)])
        sent = len(_cut(body, 77, DATA))
        problem(_send_short(client, path, BINARY, body, sent, "oserror"), 400)
        assert head_state(client, path)["ranges"] == [(0, 77)]

    def test_disconnect_inside_indeterminate_content(self, client):
        path = allocate(client, 4096)
        body = binary_body([(0, DATA[:30])], indeterminate=True)  # 3-byte chunks
        sent = len(body) - 8
        problem(_send_short(client, path, BINARY, body, sent), 400)
        ranges = head_state(client, path)["ranges"]
        assert len(ranges) == 1 and ranges[0][0] == 0 and 0 < ranges[0][1] < 30

    def test_known_length_content_shorter_than_range(self, client):
        path = allocate(client, 4096)
        from byterange_server.protocol.binary import encode_known_length

        body = encode_known_length((("Content-Range", "bytes 0-99/4096"),), DATA[:40])
        problem(patch_raw(client, path, body, BINARY), 400)
        assert head_state(client, path)["ranges"] == [(0, 40)]

    def test_known_length_content_shorter_than_range_atomic(self, client):
        path = allocate(client, 4096)
        from byterange_server.protocol.binary import encode_known_length

        body = encode_known_length((("Content-Range", "bytes 0-99/4096"),), DATA[:40])
        problem(patch_raw(client, path, body, BINARY, {"Prefer": "transaction=atomic"}), 400)
        assert head_state(client, path)["ranges"] == []

    def test_indeterminate_content_shorter_than_range(self, client):
        path = allocate(client, 4096)
        body = binary_body([((("Content-Range", "bytes 0-99/4096"),), DATA[:40])], indeterminate=True)
        problem(patch_raw(client, path, body, BINARY), 400)
        assert head_state(client, path)["ranges"] == [(0, 40)]


class TestMessage:
    def test_body_longer_than_range_is_400(self, client):
        path = allocate(client, 4096)
        body = b"Content-Range: bytes 0-9/4096\r\n\r\n" + DATA[:25]
        response = patch_raw(client, path, body, MESSAGE)
        problem(response, 400)
        assert head_state(client, path)["ranges"] in ([], [(0, 10)])

    def test_body_longer_than_range_atomic_commits_nothing(self, client):
        path = allocate(client, 4096)
        body = b"Content-Range: bytes 0-9/4096\r\n\r\n" + DATA[:25]
        problem(patch_raw(client, path, body, MESSAGE, {"Prefer": "transaction=atomic"}), 400)
        assert head_state(client, path)["ranges"] == []

    def test_body_shorter_than_range_commits_prefix(self, client):
        """A complete request whose body is shorter than its range: an interruption (E9)."""
        path = allocate(client, 4096)
        body = b"Content-Range: bytes 0-99/4096\r\n\r\n" + DATA[:25]
        problem(patch_raw(client, path, body, MESSAGE), 400, "truncated-body")
        assert head_state(client, path)["ranges"] == [(0, 25)]

    def test_content_offset_body_cut_commits_prefix(self, client):
        path = allocate(client)
        body = b"Content-Offset: 10\r\n\r\n" + DATA[:200]
        response = _send_short(client, path, MESSAGE, body, len(body) - 50)
        problem(response, 400)
        assert head_state(client, path)["ranges"] == [(10, 160)]


class TestPut:
    def test_short_partial_put_commits_prefix(self, client):
        path = allocate(client, 4096)
        stream = BodyStream(DATA[:300], chunk=64)
        response = send_stream(
            client, "PUT", path, stream, len(DATA), {"Content-Range": f"bytes 0-{len(DATA) - 1}/4096"}
        )
        problem(response, 400)
        assert head_state(client, path)["ranges"] == [(0, 300)]

    def test_short_partial_put_atomic_commits_nothing(self, client):
        path = allocate(client, 4096)
        stream = BodyStream(DATA[:300], chunk=64, fail=ClientDisconnected())
        response = send_stream(
            client,
            "PUT",
            path,
            stream,
            len(DATA),
            {"Content-Range": f"bytes 0-{len(DATA) - 1}/4096", "Prefer": "transaction=atomic"},
        )
        problem(response, 400)
        assert head_state(client, path)["ranges"] == []

    def test_short_whole_put_commits_prefix_but_does_not_complete(self, client):
        path = allocate(client)
        stream = BodyStream(DATA[:300], chunk=64)
        problem(send_stream(client, "PUT", path, stream, len(DATA)), 400)
        state = head_state(client, path)
        assert state["complete"] is False
        assert state["ranges"] == [(0, 300)]


class TestSmallChunks:
    """The same, with body reads far smaller than a part, so prefixes end mid-chunk."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, CHUNK_SIZE="7")

    def test_persist_prefix_with_tiny_reads(self, client, service):
        path = allocate(client, 2048)
        body = _message(5, DATA)
        problem(_send_short(client, path, MESSAGE, body, len(_cut(body, 333, DATA)), chunk=5), 400)
        assert extent_rows(service, path) == [(5, 338)]
        assert stored_bytes(service, path, 338)[5:] == DATA[:333]

    def test_complete_request_with_tiny_reads(self, client):
        path = allocate(client, len(DATA))
        body = _message(0, DATA, len(DATA))
        stream = BodyStream(body, chunk=3)
        response = send_stream(client, "PATCH", path, stream, len(body), {"Content-Type": MESSAGE})
        assert response.status_code == 204
        assert client.get(path).get_data() == DATA


@pytest.mark.parametrize("prefer", ["persist", "atomic"])
def test_short_part_error_reports_preference_applied(client, prefer):
    path = allocate(client, 4096)
    body = b"Content-Range: bytes 0-99/4096\r\n\r\n" + DATA[:25]
    response = patch_raw(client, path, body, MESSAGE, {"Prefer": f"transaction={prefer}"})
    problem(response, 400)
    assert response.headers.get("Preference-Applied") == f"transaction={prefer}"
