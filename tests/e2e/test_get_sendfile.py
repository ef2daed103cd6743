"""GET through gunicorn, where whole bodies and single ranges go out with ``sendfile``.

The API tests check the headers and range semantics through the Flask test client, which
iterates ``wsgi.file_wrapper`` in Python; these check the bytes gunicorn sends from the
descriptor: exactly the requested range, exactly ``Content-Length`` of them (the next
response on the same keep-alive connection still parses), and several at once.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import random
from urllib.parse import urlsplit

import pytest

from .conftest import GunicornServer
from .conftest import MiB

pytestmark = pytest.mark.e2e

SIZE = 3 * MiB + 12345


def _complete(server: GunicornServer, data: bytes) -> str:
    url = server.allocate(len(data))
    for offset in range(0, len(data), MiB):
        reply = server.patch_segment(url, offset, data[offset : offset + MiB], len(data))
        assert reply.status == 204, reply
    return url


def test_whole_and_single_ranges_are_the_stored_bytes(gunicorn_server: GunicornServer) -> None:
    data = os.urandom(SIZE)
    url = _complete(gunicorn_server, data)
    whole = gunicorn_server.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Length"] == str(SIZE) and whole.headers["ETag"]
    for first, last in [(0, 0), (1, MiB), (SIZE - 1, SIZE - 1), (MiB - 7, 2 * MiB + 3), (0, SIZE - 1)]:
        response = gunicorn_server.get_range(url, first, last)
        assert response.status_code == 206
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
        assert response.content == data[first : last + 1]
    suffix = gunicorn_server.get(url, {"Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.content == data[-100:]
    stale = gunicorn_server.get(url, {"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    several = gunicorn_server.get(url, {"Range": "bytes=0-9,100-109"})
    assert several.status_code == 206
    assert several.headers["Content-Type"].startswith("multipart/byteranges")
    assert data[100:110] in several.content


def test_ranges_on_one_keep_alive_connection(gunicorn_server: GunicornServer) -> None:
    data = os.urandom(SIZE)
    path = urlsplit(_complete(gunicorn_server, data)).path
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_server.port, timeout=30)
    rng = random.Random(1)
    try:
        for _ in range(50):
            first = rng.randrange(SIZE)
            last = min(SIZE - 1, first + rng.randrange(256 * 1024))
            conn.request("GET", path, headers={"Range": f"bytes={first}-{last}"})
            response = conn.getresponse()
            assert response.status == 206
            assert response.read() == data[first : last + 1]
        conn.request("HEAD", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()


def test_committed_range_of_an_incomplete_resource(gunicorn_server: GunicornServer) -> None:
    data = os.urandom(MiB)
    url = gunicorn_server.allocate(4 * MiB)
    assert gunicorn_server.patch_segment(url, MiB, data, 4 * MiB).status == 204
    response = gunicorn_server.get_range(url, MiB + 10, 2 * MiB - 1)
    assert response.status_code == 206 and response.content == data[10:]
    assert gunicorn_server.get_range(url, 0, 10).status_code == 416


def test_concurrent_whole_gets(gunicorn_server: GunicornServer) -> None:
    data = os.urandom(SIZE)
    url = _complete(gunicorn_server, data)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(lambda _: gunicorn_server.get(url).content, range(12)))
    assert all(body == data for body in bodies)
