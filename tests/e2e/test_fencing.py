"""A DELETE fences the live writers of a resource, on a real gunicorn (SQLite and PostgreSQL).

The sequence the audit found: a multipart PATCH reserves 0-99,999 with its
first 16 KiB holding only a preamble and the part fields; the resource is deleted and created
again with the same id (the same signed creation URL); another writer PUTs 0-99,999 and
completes it; only then do the first writer's bytes arrive. The complete resource must serve
exactly the second writer's bytes, under its ETag and Repr-Digest.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from .conftest import GunicornServer
from .conftest import running

KEY = "fence-e2e-key-0123456789abcdef"
CREDENTIALS = {"BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{KEY}"}
LENGTH = 100_000
FIRST_READ = 16 * 1024  # the server's first read of a body (api/body.py)


@pytest.fixture
def server(database_url: str, tmp_path: Path):
    # A lease long enough that no renewal falls inside the sequence: only the fence stops the
    # first writer (the audit ran with the default lease).
    with running(
        GunicornServer(database_url, tmp_path / "server", lease_seconds=30, extra_env=CREDENTIALS)
    ) as started:
        yield started


def sign(url: str, *args: str) -> str:
    env = {**os.environ, **CREDENTIALS}
    command = [sys.executable, "-m", "byterange_server.cli", "sign", url, *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _reservations(database_url: str, resource_id: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM reservations WHERE resource_id = :id"), {"id": resource_id}
            ).scalar_one()
    finally:
        engine.dispose()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _status_of(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


def test_a_write_whose_resource_was_deleted_never_reaches_its_recreation(server, database_url):
    minted = sign(server.url, "--methods", "POST", "--max-size", "1MiB")
    created = requests.post(minted, headers={"Upload-Length": str(LENGTH)}, timeout=30)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    resource_id = urlsplit(location).path.rsplit("/", 1)[1]
    first_data = os.urandom(LENGTH)
    second_data = os.urandom(LENGTH)

    # Writer 1: exactly the first read's worth of preamble and part fields, no bytes yet.
    boundary = "fence"
    fields = f"\r\n--{boundary}\r\nContent-Range: bytes 0-{LENGTH - 1}/{LENGTH}\r\n\r\n".encode()
    head = b"p" * (FIRST_READ - len(fields)) + fields
    rest = first_data + f"\r\n--{boundary}--\r\n".encode()
    target = urlsplit(location)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        request_head = (
            f"PATCH {target.path}?{target.query} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: multipart/byteranges; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + len(rest)}\r\n\r\n"
        ).encode()
        sock.sendall(request_head + head)
        _wait_for(lambda: _reservations(database_url, resource_id) == 1)  # 0-99,999 is reserved

        assert requests.delete(location, timeout=30).status_code == 204
        again = requests.post(minted, headers={"Upload-Length": str(LENGTH)}, timeout=30)
        assert again.status_code == 201, again.text  # the same id, a new generation
        assert again.headers["Location"] == location
        put = requests.put(
            location,
            data=second_data,
            headers={"Content-Range": f"bytes 0-{LENGTH - 1}/{LENGTH}"},
            timeout=30,
        )
        assert put.status_code == 204, put.text
        assert put.headers["Upload-Complete"] == "?1"

        # The fence cut writer 1 when its resource was deleted: its answer is there by now, or
        # about to be. Waiting longer would let a lease renewal (every 5 s at most) find the
        # reservation gone, which is not what this is about.
        answer = b""
        if select.select([sock], [], [], 1.0)[0]:
            answer = sock.recv(65536)
        try:
            sock.sendall(rest)  # the first writer's bytes arrive now
        except OSError:
            pass  # the server already ended this request
        if not answer:
            try:
                sock.settimeout(30)
                answer = sock.recv(65536)
            except OSError:
                pass
    finally:
        sock.close()

    # The complete resource is exactly the second writer's: bytes, ETag and Repr-Digest.
    digest = hashlib.sha256(second_data).digest()
    got = requests.get(location, timeout=30)
    assert got.status_code == 200
    assert got.headers["ETag"] == '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'
    assert got.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert got.content == second_data, "the first writer's bytes were served under the second's ETag"
    # And the first writer was told its resource is gone, not invited to retry (409).
    assert _status_of(answer) == 404, answer[:500]
    assert _reservations(database_url, resource_id) == 0
