"""tus 1.0 end to end: the official Python client (tuspy) and raw sockets against real gunicorn.

Runs on SQLite and PostgreSQL like the rest of the e2e suite. The interruption is real: a
loopback proxy between tuspy and gunicorn cuts one PATCH connection in the middle of its body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tusclient import client as tus_client

from .conftest import GunicornServer
from .conftest import MiB

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
_OFFSET_RE = re.compile(rb"\r\nupload-offset: *(\d+)\r\n", re.IGNORECASE)


class CuttingProxy:
    """A loopback TCP proxy that cuts one upload connection partway through its body.

    Every connection is forwarded byte for byte. The ``cut_on``-th connection that carries
    more than ``cut_after`` bytes towards the server is closed (both ways) right there, as a
    dropped network would. The ``Upload-Offset`` of every request it forwarded is recorded.
    """

    def __init__(self, upstream_port: int, *, cut_after: int, cut_on: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cut_on = cut_on
        self.big_connections = 0
        self.cuts = 0
        self.offsets: list[int] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._up, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, downstream), daemon=True).start()

    def _up(self, source: socket.socket, target: socket.socket) -> None:
        sent = 0
        head = b""
        counted = False
        big = False
        try:
            while data := source.recv(64 * 1024):
                if len(head) < 8192:
                    head += data[:8192]
                    match = _OFFSET_RE.search(head)
                    if match and not counted:
                        counted = True
                        with self._lock:
                            self.offsets.append(int(match.group(1)))
                if sent + len(data) > self.cut_after and not big:
                    big = True  # count each connection once
                    with self._lock:
                        self.big_connections += 1
                        cut = self.big_connections == self.cut_on
                        self.cuts += cut
                    if cut:
                        target.sendall(data[: self.cut_after - sent])
                        break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @staticmethod
    def _down(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(64 * 1024):
                target.sendall(data)
        except OSError:
            pass


@pytest.fixture
def tus_source(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(20261130).randbytes(5 * MiB + 12345)
    path = tmp_path / "tus-source.bin"
    path.write_bytes(data)
    return path, data


def test_tuspy_resumes_after_an_interrupted_chunk(gunicorn_server: GunicornServer, tus_source):
    path, data = tus_source
    chunk = 2 * MiB
    # The second chunk's connection is cut after 1 MiB of it has gone through.
    proxy = CuttingProxy(gunicorn_server.port, cut_after=MiB, cut_on=2)
    with open(path, "rb") as stream, contextlib.closing(proxy):
        client = tus_client.TusClient(f"http://127.0.0.1:{proxy.port}/files")
        uploader = client.uploader(
            file_stream=stream,
            chunk_size=chunk,
            metadata={"filename": "tus-source.bin"},
            retries=10,
            retry_delay=1,
            upload_checksum=True,
        )
        uploader.upload()
    assert proxy.cuts == 1, proxy.offsets
    # A checksummed chunk that was cut keeps nothing: tuspy asked HEAD, got the chunk's start
    # back and sent the whole chunk again.
    assert proxy.offsets.count(chunk) >= 2, proxy.offsets
    assert all(offset % chunk == 0 for offset in proxy.offsets), proxy.offsets

    url = urlsplit(uploader.url)
    direct = f"{gunicorn_server.base}{url.path}"
    state = requests.head(direct, headers=TUS, timeout=30)
    assert state.headers["Upload-Offset"] == str(len(data))
    assert state.headers["Upload-Metadata"] == "filename dHVzLXNvdXJjZS5iaW4="
    response, digest = gunicorn_server.sha256_of(direct)
    assert response.status_code == 200
    assert digest == hashlib.sha256(data).hexdigest()


def test_tuspy_keeps_the_received_prefix_of_a_cut_chunk(gunicorn_server: GunicornServer, tus_source):
    """Without a checksum the server keeps what arrived, and tuspy resumes from there."""
    path, data = tus_source
    chunk = 2 * MiB
    proxy = CuttingProxy(gunicorn_server.port, cut_after=MiB, cut_on=2)
    with open(path, "rb") as stream, contextlib.closing(proxy):
        client = tus_client.TusClient(f"http://127.0.0.1:{proxy.port}/files")
        uploader = client.uploader(file_stream=stream, chunk_size=chunk, retries=10, retry_delay=1)
        uploader.upload()
    assert proxy.cuts == 1
    off_grid = [offset for offset in proxy.offsets if offset % chunk]
    assert off_grid, f"no PATCH resumed from a kept prefix: {proxy.offsets}"
    direct = f"{gunicorn_server.base}{urlsplit(uploader.url).path}"
    response, digest = gunicorn_server.sha256_of(direct)
    assert response.status_code == 200
    assert digest == hashlib.sha256(data).hexdigest()
    ranged = requests.get(direct, headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[100:200]


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
    head = buffer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


def test_head_during_a_slow_tus_patch_returns_at_once(gunicorn_server: GunicornServer):
    """No whole-upload lock: HEAD answers at once with the committed offset, the PATCH goes on."""
    response = requests.post(gunicorn_server.url, headers={**TUS, "Upload-Length": "400000"}, timeout=30)
    assert response.status_code == 201
    path = urlsplit(response.headers["Location"]).path
    url = gunicorn_server.base + path
    assert requests.patch(url, data=b"a" * 100000, timeout=30, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}).status_code == 204

    body = b"b" * 300000
    sock = socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=30)
    try:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 100000\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        pieces = [body[i : i + 50000] for i in range(0, len(body), 50000)]
        heads = []
        for piece in pieces[:-1]:
            sock.sendall(piece)
            time.sleep(0.4)
            started = time.monotonic()
            head = requests.head(url, headers=TUS, timeout=30)
            heads.append((time.monotonic() - started, head.status_code, head.headers.get("Upload-Offset")))
        sock.sendall(pieces[-1])
        status, headers = _read_response(sock)
    finally:
        sock.close()
    assert status == 204, (status, headers)
    assert headers["upload-offset"] == "400000"
    for seconds, code, offset in heads:
        assert code == 200 and offset == "100000", heads  # the committed offset, not in-flight bytes
        assert seconds < 1.0, heads
    final = requests.head(url, headers=TUS, timeout=30)
    assert final.headers["Upload-Offset"] == "400000"
    assert requests.get(url, timeout=30).content == b"a" * 100000 + body


def _chunked_patch(server: GunicornServer, path: str, offset: int, body: bytes, trailer: str | None):
    """A tus PATCH with a chunked body and (optionally) an Upload-Checksum trailer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: {offset}\r\nTransfer-Encoding: chunked\r\n"
                "Trailer: Upload-Checksum\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        for start in range(0, len(body), 7000):
            piece = body[start : start + 7000]
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n" + (f"Upload-Checksum: {trailer}\r\n".encode() if trailer else b"") + b"\r\n")
        return _read_response(sock)
    finally:
        sock.close()


def test_checksum_trailer_under_gunicorn(gunicorn_server: GunicornServer):
    extensions = requests.options(gunicorn_server.url, timeout=30).headers["Tus-Extension"].split(",")
    assert "checksum-trailer" in extensions
    response = requests.post(gunicorn_server.url, headers={**TUS, "Upload-Length": "30000"}, timeout=30)
    path = urlsplit(response.headers["Location"]).path
    url = gunicorn_server.base + path
    data = random.Random(7).randbytes(30000)

    def sha(algorithm: str, chunk: bytes) -> str:
        import base64

        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()}"

    status, headers = _chunked_patch(gunicorn_server, path, 0, data[:20000], sha("sha256", b"other"))
    assert status == 460, (status, headers)
    assert requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"] == "0"
    status, headers = _chunked_patch(gunicorn_server, path, 0, data[:20000], None)  # announced, not sent
    assert status == 400, (status, headers)
    status, headers = _chunked_patch(gunicorn_server, path, 0, data[:20000], "crc32 AAAAAA==")
    assert status == 400, (status, headers)
    assert requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"] == "0"
    status, headers = _chunked_patch(gunicorn_server, path, 0, data[:20000], sha("sha256", data[:20000]))
    assert status == 204 and headers["upload-offset"] == "20000", (status, headers)
    status, headers = _chunked_patch(gunicorn_server, path, 20000, data[20000:], sha("md5", data[20000:]))
    assert status == 204 and headers["upload-offset"] == "30000", (status, headers)
    assert requests.get(url, timeout=30).content == data


def test_parallel_partials_and_an_unfinished_final(gunicorn_server: GunicornServer, tus_source):
    """What tus-js-client's parallelUploads does, across gunicorn workers: partials uploaded
    at once, the final created before they finish, then read back byte for byte."""
    import concurrent.futures

    _path, data = tus_source
    bounds = [0, 1_000_001, 2 * MiB, 4 * MiB + 3, len(data)]
    urls = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        response = requests.post(gunicorn_server.url, timeout=30, headers={
            **TUS, "Upload-Concat": "partial", "Upload-Length": str(stop - start)})
        assert response.status_code == 201
        urls.append(response.headers["Location"])
    response = requests.post(gunicorn_server.url, timeout=30, headers={
        **TUS, "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": "filename Zg=="})
    assert response.status_code == 201, response.text
    final = response.headers["Location"]
    assert "Upload-Offset" not in response.headers

    def upload(index: int) -> int:
        chunk = data[bounds[index] : bounds[index + 1]]
        offset = 0
        while offset < len(chunk):  # 512 KiB PATCHes, as a chunked tus client would
            piece = chunk[offset : offset + 512 * 1024]
            reply = requests.patch(urls[index], data=piece, timeout=60, headers={
                **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            assert reply.status_code == 204, reply.text
            offset = int(reply.headers["Upload-Offset"])
        return offset

    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        assert sum(pool.map(upload, range(len(urls)))) == len(data)
    head = requests.head(final, headers=TUS, timeout=30)
    assert head.headers["Upload-Offset"] == str(len(data)), dict(head.headers)
    response, digest = gunicorn_server.sha256_of(final)
    assert response.status_code == 200 and digest == hashlib.sha256(data).hexdigest()
    ranged = requests.get(final, headers={"Range": "bytes=999990-1000020"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[999990:1000021]


def test_concurrent_first_heads_of_a_final_hash_it_once_across_workers(gunicorn_server: GunicornServer):
    """Audit: each concurrent first HEAD of a final hashed all of it. Across
    4 worker processes, one reader holds the final's digest lease and hashes; the others answer
    without ETag meanwhile, and every later read has the digest."""
    tus = {"Tus-Resumable": "1.0.0"}
    data = random.Random(6).randbytes(32 * MiB)
    created = requests.post(gunicorn_server.url, timeout=30, headers={
        **tus, "Upload-Concat": "partial", "Upload-Length": str(len(data))})
    partial = created.headers["Location"]
    wrote = requests.patch(partial, data=data, timeout=60, headers={
        **tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert wrote.status_code == 204
    final = requests.post(gunicorn_server.url, timeout=30, headers={
        **tus, "Upload-Concat": "final;" + " ".join([urlsplit(partial).path] * 8)})
    url = final.headers["Location"]
    final_id = urlsplit(url).path.rsplit("/", 1)[1]
    start = threading.Barrier(8)
    heads: list[requests.Response] = []

    def head() -> None:
        start.wait()
        heads.append(requests.head(url, timeout=120))

    threads = [threading.Thread(target=head) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(heads) == 8 and all(response.status_code == 200 for response in heads)
    expected = '"' + base64.urlsafe_b64encode(hashlib.sha256(data * 8).digest()).decode().rstrip("=") + '"'
    assert {response.headers.get("ETag") for response in heads} <= {expected, None}
    assert requests.head(url, timeout=120).headers["ETag"] == expected
    log = gunicorn_server.log_path.read_text()
    hashed = [line for line in log.splitlines() if "computing the digest" in line and final_id in line]
    assert len(hashed) == 1, hashed
