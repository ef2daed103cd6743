"""Every configured limit breached once, on SQLite and PostgreSQL: a precise 4xx problem document,
the limit announced in OPTIONS, and nothing already committed lost or changed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from byterange_server.api.body import CountingReader
from byterange_server.api.body import ThroughputGuard
from byterange_server.protocol.message import encode_message

from .helpers import MESSAGE
from .helpers import MOUNT
from .helpers import BodyStream
from .helpers import allocate
from .helpers import content_range
from .helpers import extent_rows
from .helpers import patch_message
from .helpers import problem
from .helpers import read_range
from .helpers import send_stream


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_overrides,
        "MAX_REQUEST_BYTES": "4KiB",
        "MAX_EXTENTS": "3",
        "MAX_WRITES_PER_RESOURCE": "1",
        "MAX_HEADER_FIELDS": "30",
        "MAX_HEADER_BYTES": "2KiB",
    }


def committed(client, service, path) -> list[tuple[int, int]]:
    return extent_rows(service, path)


def test_limits_are_announced(client):
    limits = client.options(MOUNT).headers["Byterange-Limits"]
    for member in ("max-request-bytes=4096", "max-extents=3", "max-writes-per-resource=1"):
        assert member in limits
    assert "min-body-rate=1024" in limits
    ietf = client.options(MOUNT, headers={"Upload-Draft-Interop-Version": "6"})
    assert "max-append-size=4096" in ietf.headers["Upload-Limit"]


def test_too_many_header_fields_is_431(client, service):
    path = allocate(client, 8)
    assert patch_message(client, path, 0, b"abcd").status_code == 204
    many = {f"X-Filler-{n}": "x" for n in range(40)}
    problem(patch_message(client, path, 4, b"EVIL", headers=many), 431, "header-fields-too-large")
    big = {"X-Filler": "x" * 3000}
    assert client.head(path, headers=big).status_code == 431
    problem(client.get(path, headers={**big, "Range": "bytes=0-1"}), 431)
    assert committed(client, service, path) == [(0, 4)]


def test_a_body_over_the_request_limit_is_refused_before_it_is_read(client, service):
    path = allocate(client, 10_000)
    assert patch_message(client, path, 0, b"a" * 100).status_code == 204
    data = b"b" * 5000
    stream = BodyStream(encode_message((("Content-Range", content_range(100, data, 10_000)),), data))
    response = send_stream(client, "PATCH", path, stream, len(stream.data), {"Content-Type": MESSAGE})
    body = problem(response, 413, "request-too-large")
    assert body["max-request-bytes"] == 4096
    assert stream.position == 0  # not a byte of it was read
    assert committed(client, service, path) == [(0, 100)]
    # tus and IETF appends are held to it too.
    tus = client.post(MOUNT, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "9000"})
    over = client.patch(tus.headers["Location"], data=b"t" * 5000, headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert over.status_code == 413


def test_too_many_extents_commits_nothing_of_the_request(client, service):
    path = allocate(client, 100)
    for start in (0, 10, 20):
        assert patch_message(client, path, start, b"xy").status_code == 204
    body = problem(patch_message(client, path, 30, b"zz"), 409, "too-many-extents")
    assert body["max-extents"] == 3
    assert committed(client, service, path) == [(0, 2), (10, 12), (20, 22)]
    # Writes that join existing ranges still work, and so does filling the gaps.
    assert patch_message(client, path, 2, b"ab").status_code == 204
    assert patch_message(client, path, 22, b"cd").status_code == 204
    assert committed(client, service, path) == [(0, 4), (10, 12), (20, 24)]
    assert read_range(client, path, 0, 3) == b"xyab"


def test_concurrent_writes_per_resource(client, service, app):
    path = allocate(client, 2048)
    inside = threading.Event()
    release = threading.Event()

    def hold(position: int) -> None:
        if position > 0 and not inside.is_set():
            inside.set()
            release.wait(30)

    data = b"s" * 1024
    slow = BodyStream(encode_message((("Content-Range", content_range(0, data, 2048)),), data), chunk=300,
                      on_read=hold)
    results: dict[str, Any] = {}

    def first() -> None:
        with app.test_client() as other:
            headers = {"Content-Type": MESSAGE}
            results["first"] = send_stream(other, "PATCH", path, slow, len(slow.data), headers)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    busy = patch_message(client, path, 1024, b"q" * 1024)
    body = problem(busy, 429, "too-many-writes")
    assert body["max-writes-per-resource"] == 1 and busy.headers["Retry-After"] == "1"
    release.set()
    thread.join(30)
    assert results["first"].status_code == 204
    assert committed(client, service, path) == [(0, 1024)]
    # The slot was released with the commit: the next write goes through.
    assert patch_message(client, path, 1024, b"q" * 1024).status_code == 204


class FakeReader:
    def __init__(self) -> None:
        self.received = 0
        self.seconds = 0.0
        self.reason = None

    def waited(self, now=None) -> float:
        return self.seconds

    def cut(self, reason="cut") -> None:
        self.reason = reason


def test_the_guard_counts_only_time_spent_waiting_for_the_client():
    guard = ThroughputGuard(min_rate=100, window=10)
    reader = FakeReader()
    cuts = []
    with guard.watching(reader, lambda: cuts.append(1)):  # type: ignore[arg-type]
        reader.received, reader.seconds = 50, 9.9  # a slow window, but not a whole one yet
        assert guard.check() == 0
        reader.received, reader.seconds = 1500, 12  # 1500 B in 12 s: fast enough; checkpoint
        assert guard.check() == 0
        reader.received, reader.seconds = 1600, 30  # 100 B in 18 s of waiting: too slow
        assert guard.check() == 1
    assert reader.reason == "too-slow" and cuts == [1]


def test_the_reader_measures_waiting_and_stops_past_the_size_limit():
    stream = BodyStream(b"x" * 10_000, chunk=1000)
    reader = CountingReader(stream, content_length=None, chunk_size=1000, max_bytes=4500)
    received = b"".join(reader)
    assert len(received) == 4000 and reader.stop_reason == "too-large" and reader.interrupted
    assert reader.waited() >= 0


def test_reads_follow_the_clients_rate_so_the_guard_sees_slow_bytes_early():
    reader = CountingReader(BodyStream(b""), content_length=None, chunk_size=1 << 20)
    assert reader._next_read_size(16384, 0.0) == 1 << 20  # instant: whole chunks
    assert reader._next_read_size(1 << 20, 0.01) == 1 << 20  # 100 MB/s: whole chunks
    assert reader._next_read_size(16384, 0.5) == 16384  # 32 KB/s: reads stay small
    assert reader._next_read_size(300_000, 1.0) == 150_000  # about half a second's worth
