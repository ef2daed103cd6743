"""Limits and the expiry sweep on a real gunicorn (SQLite and PostgreSQL), where only a real socket
shows them: a slowloris body is ended and its prefix kept, a chunked body over the size limit is
ended at the limit, concurrent writers beyond the limit get 429, and the periodic sweep (one
worker at a time) removes an abandoned upload while a writer racing it keeps its bytes."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from .conftest import GunicornServer
from .conftest import running
from .test_shutdown import SlowPatch
from .test_shutdown import read_response

LIMITS = {
    "BYTERANGE_MIN_BODY_RATE": "20000",
    "BYTERANGE_MIN_BODY_RATE_WINDOW": "2",
    "BYTERANGE_MAX_REQUEST_BYTES": "64KiB",
    "BYTERANGE_MAX_WRITES_PER_RESOURCE": "1",
}


@pytest.fixture
def limited(database_url: str, tmp_path: Path):
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=LIMITS)) as server:
        yield server


def test_a_slowloris_body_is_ended_and_its_prefix_kept(limited):
    url = limited.allocate()
    slow = SlowPatch(limited, url, b"s" * (60 * 1024), step=1000, pause=0.1)  # ~10 KB/s
    try:
        started = time.monotonic()
        status, fields, body = slow.response()
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert status == 408, body
    assert json.loads(body)["type"].endswith("body-too-slow")
    assert elapsed < 15  # ended by the guard, not by the body finishing (~6 s) or a timeout
    state = limited.head(url)
    assert state.ranges and state.ranges[0][0] == 0  # what arrived was kept
    kept = state.ranges[0][1] + 1
    assert limited.get(url, {"Range": f"bytes=0-{kept - 1}"}).content == b"s" * kept
    # A fast writer is not affected.
    assert limited.patch_segment(url, kept, b"f" * 4096, 60 * 1024).status == 204


def test_a_chunked_body_over_the_limit_is_ended_at_the_limit(limited):
    url = limited.allocate()
    path = urlsplit(url).path
    data = b"c" * (100 * 1024)
    prefix = b"Content-Range: bytes 0-%d/*\r\n\r\n" % (len(data) - 1)
    body = prefix + data
    with socket.create_connection(("127.0.0.1", limited.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: message/byterange\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for start in range(0, len(body), 8192):
                piece = body[start : start + 8192]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading at the limit
        status, fields, answer = read_response(sock)
    assert status == 413, answer
    assert json.loads(answer)["max-request-bytes"] == 64 * 1024
    state = limited.head(url)
    kept = state.ranges[0][1] + 1 if state.ranges else 0
    assert kept <= 64 * 1024
    if kept:
        assert limited.get(url, {"Range": f"bytes=0-{kept - 1}"}).content == data[:kept]
    # A Content-Length over the limit is refused before anything is read.
    headers = {"Content-Type": "message/byterange"}
    refused = requests.patch(url, data=prefix + data, headers=headers, timeout=30)
    assert refused.status_code == 413


def test_concurrent_writers_beyond_the_limit_get_429(limited):
    url = limited.allocate()
    # ~40 KB/s (above the 20 KB/s minimum rate, under the 64 KiB request limit): in flight for
    # about 1.5 s, and past its first 16 KiB read (so it holds its write slot) once 24 KiB are sent.
    slow = SlowPatch(limited, url, b"a" * (60 * 1024), step=4 * 1024, pause=0.1)
    try:
        slow.wait_sent(24 * 1024)
        time.sleep(0.2)
        busy = limited.patch_segment(url, 59 * 1024, b"a" * 1024, 60 * 1024)
        assert busy.status == 429 and busy.header("Retry-After") == "1"
        status, _, _ = slow.response()
        assert status == 204
    finally:
        slow.close()
    # The slot was released with the commit.
    assert limited.patch_segment(url, 59 * 1024, b"a" * 1024, 60 * 1024).status == 204


@pytest.fixture
def sweeping(database_url: str, tmp_path: Path):
    env = {"BYTERANGE_EXPIRE_AFTER": "2", "BYTERANGE_CLEANUP_INTERVAL": "0.5"}
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=env)) as server:
        yield server


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_periodic_sweep_runs_in_one_worker_and_spares_a_racing_writer(sweeping, database_url):
    abandoned = sweeping.allocate()
    assert sweeping.patch_segment(abandoned, 0, b"x" * 100, 1024).status == 204
    racing = sweeping.allocate()
    # A writer trickles across the expiry (2 s). Its first 16 KiB arrive at once, so it holds a
    # reservation before the expiry, and that live reservation keeps the sweep away.
    slow = SlowPatch(sweeping, racing, b"r" * (40 * 1024), step=8 * 1024, pause=0.8)
    try:
        _wait_for(lambda: sweeping.head(abandoned).status in (404, 410))
        assert slow.send_error is None  # still streaming while the abandoned one was swept
        status, _, _ = slow.response()
    finally:
        slow.close()
    assert status in (204, 410)  # committed; answered 410 because the upload had expired by then
    files = {path.name for path in (sweeping.data_dir / "objects").rglob("*") if path.is_file()}
    abandoned_id = urlsplit(abandoned).path.rsplit("/", 1)[1]
    assert abandoned_id not in files  # rows and bytes went together
    # The racing upload is swept in turn once its writer is gone: no rows, no file.
    racing_id = urlsplit(racing).path.rsplit("/", 1)[1]
    _wait_for(lambda: sweeping.head(racing).status in (404, 410))
    _wait_for(lambda: racing_id not in {p.name for p in (sweeping.data_dir / "objects").rglob("*")})
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            holders = conn.execute(text("SELECT holder FROM job_leases WHERE name = 'expiry'")).all()
    finally:
        engine.dispose()
    assert len(holders) == 1
    assert int(holders[0].holder.split(":")[1]) in sweeping.worker_pids()


def test_our_client_fits_its_segments_to_the_request_limit(limited, tmp_path):
    from byterange_server.client import upload

    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 1200  # 300 KiB against a 64 KiB request limit
    path.write_bytes(data)
    for wire_format in ("message", "multipart", "put"):
        result = upload(path, limited.url, parallel=1, resume=False, wire_format=wire_format)
        assert limited.get(result.url).content == data
