"""The client library and the ``byterange`` command against a real gunicorn, through a faulty network.

Every test here runs on SQLite and on PostgreSQL (``gunicorn_server`` depends on
``database_url``). Faults come from :class:`tests.support.faultproxy.FaultProxy` between client and
server: connections cut after a random number of bytes, reset, stalled, or the whole network
pulled. Bytes re-sent are measured at the proxy, as what the client had to push through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from byterange_server.client import Cancelled
from byterange_server.client import Downloader
from byterange_server.client import DownloadResult
from byterange_server.client import IncompleteResource
from byterange_server.client import IntegrityError
from byterange_server.client import Progress
from byterange_server.client import RemoteChanged
from byterange_server.client import RetryPolicy
from byterange_server.client import ServerRefused
from byterange_server.client import Timeouts
from byterange_server.client import TransferFailed
from byterange_server.client import Uploader
from byterange_server.client import UploadResult
from byterange_server.client import WireFormat
from byterange_server.client import download
from byterange_server.client import status
from byterange_server.client import upload
from byterange_server.client.source import Source
from byterange_server.client.state import StateStore
from byterange_server.client.state import UploadKey
from byterange_server.client.upload import PROBE_BYTES

from ..support.faultproxy import Fault
from ..support.faultproxy import FaultProxy
from .conftest import GunicornServer
from .conftest import MiB
from .conftest import running

#: The client is what these tests exercise; the server's behaviour on both databases is the API and
#: server end-to-end suites' job. Once, on SQLite, keeps CI inside its 30 minutes.
ONLY_DATABASES = ("sqlite",)

pytestmark = pytest.mark.e2e

BYTERANGE = str(Path(sys.executable).with_name("byterange"))
#: Generous bound on one request's header bytes (request line, fields, framing of one part).
HEADER_ALLOWANCE = 1024
#: Quick retries for tests: the faults are ours, there is no real network to wait for.
FAST_RETRY = RetryPolicy(attempts=20, base=0.05, cap=1.0)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def proxy_for(server: GunicornServer, **options: object) -> FaultProxy:
    return FaultProxy("127.0.0.1", server.port, **options)  # type: ignore[arg-type]


def through(proxy: FaultProxy, url: str) -> str:
    """The same URL, reached through the proxy."""
    path = url.split("/", 3)[3]
    return proxy.url_for("/" + path)


def through_server(server: GunicornServer, url: str) -> str:
    """A URL the client saw through the proxy, addressed to the server directly."""
    return server.base + "/" + url.split("/", 3)[3]


def remembered_url(path: Path, collection: str, state_dir: Path) -> str | None:
    """The resource the resume store holds for this upload (what a re-run will continue)."""
    with Source.open(path) as source:
        assert source.identity is not None
        return StateStore(state_dir).lookup(UploadKey(source.identity, collection))


class Background:
    """Runs a call on a thread; :meth:`outcome` joins it and gives its result or its exception."""

    def __init__(self, call: Callable[[], object]) -> None:
        self._result: list[object] = []
        self._thread = threading.Thread(target=self._run, args=(call,))
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self._result.append(call())
        except BaseException as exc:  # the test inspects it
            self._result.append(exc)

    def outcome(self, timeout: float = 60) -> object:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the transfer did not end"
        (result,) = self._result
        return result


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def run_cli(*args: str, state_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BYTERANGE_STATE_DIR": str(state_dir)}
    return subprocess.run([BYTERANGE, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def file_8m(tmp_path: Path) -> Path:
    path = tmp_path / "eight.bin"
    path.write_bytes(random.Random(8).randbytes(8 * MiB + 12345))
    return path


# -- every wire format, there and back -----------------------------------------------------------


@pytest.mark.parametrize("fmt", list(WireFormat), ids=lambda f: f.name.lower())
def test_upload_and_download_in_each_format(gunicorn_server, file_8m, tmp_path, fmt):
    result = upload(
        file_8m, gunicorn_server.url, wire_format=fmt, segment_size=512 * 1024, parallel=4,
        state_dir=tmp_path / "state",
    )
    expected = sha256_file(file_8m)
    assert result.verified and result.sha256 == expected
    assert result.transferred == file_8m.stat().st_size and not result.resumed
    _, served = gunicorn_server.sha256_of(result.url)
    assert served == expected

    state = status(result.url)
    assert state.complete and state.length == file_8m.stat().st_size

    target = tmp_path / "copy.bin"
    fetched = download(result.url, target, parallel=4, segment_size=1 * MiB)
    assert fetched.verified and sha256_file(target) == expected
    assert not (tmp_path / "copy.bin.partial").exists()
    assert not (tmp_path / "copy.bin.partial.json").exists()


def test_running_the_same_upload_again_sends_nothing(gunicorn_server, file_8m, tmp_path):
    first = upload(file_8m, gunicorn_server.url, state_dir=tmp_path / "state")
    again = upload(file_8m, gunicorn_server.url, state_dir=tmp_path / "state")
    assert again.url == first.url and again.resumed and again.transferred == 0 and again.verified
    # A changed file is a new upload into a new resource.
    with open(file_8m, "r+b") as f:
        f.write(b"changed!")
    changed = upload(file_8m, gunicorn_server.url, state_dir=tmp_path / "state")
    assert changed.url != first.url and not changed.resumed
    assert changed.sha256 == sha256_file(file_8m)


def test_multipart_batches_the_gaps_of_a_fragmented_resource(gunicorn_server, tmp_path):
    size = 4 * MiB
    data = random.Random(4).randbytes(size)
    path = tmp_path / "fragmented.bin"
    path.write_bytes(data)
    url = gunicorn_server.allocate(size)
    piece = 64 * 1024
    for offset in range(0, size, 2 * piece):  # every other 64 KiB: 32 gaps
        assert gunicorn_server.put_segment(url, offset, data[offset : offset + piece], size).ok
    result = upload(path, url, existing=True, wire_format="multipart", segment_size=1 * MiB, parallel=2)
    assert result.verified and result.already_committed == size // 2
    assert result.transferred == size // 2
    # 32 gaps of 64 KiB in 1 MiB batches: 2 PATCHes, plus HEADs, instead of 32 requests.
    assert result.requests <= 6, result


def test_multipart_batches_follow_the_servers_parts_limit(database_url, tmp_path):
    server = GunicornServer(database_url, tmp_path / "server", workers=1, threads=4,
                            extra_env={"BYTERANGE_MAX_PARTS": "4"})
    with running(server):
        size = 2 * MiB
        data = random.Random(5).randbytes(size)
        path = tmp_path / "parts.bin"
        path.write_bytes(data)
        url = server.allocate(size)
        piece = 32 * 1024
        for offset in range(0, size, 2 * piece):  # 32 gaps
            assert server.put_segment(url, offset, data[offset : offset + piece], size).ok
        result = upload(path, url, existing=True, wire_format="multipart", segment_size=4 * MiB, parallel=2)
        assert result.verified and result.transferred == size // 2
        # 32 gaps, 4 parts a request (the server's limit, from OPTIONS): 8 PATCHes, not 1 refused.
        assert 8 <= result.requests <= 12, result


def test_existing_resource_of_another_length_is_refused(gunicorn_server, file_8m):
    url = gunicorn_server.allocate(100)
    with pytest.raises(Exception, match="has length 100"):
        upload(file_8m, url, existing=True)


# -- faults --------------------------------------------------------------------------------------


def test_upload_through_injected_faults_resends_at_most_a_segment_per_fault(
    gunicorn_server, source_64m, tmp_path
):
    path, data, digest = source_64m
    segment = 1 * MiB
    with proxy_for(
        gunicorn_server,
        seed=20261130,
        faults=12,
        kinds=(Fault.CUT, Fault.RESET, Fault.STALL),
        cut_after=(0, 3 * segment // 2),
        fault_probability=0.6,
        stall_seconds=3.0,
    ) as proxy:
        # Each of the first connections meets a fault for sure; later ones draw at random.
        for kind, position in [(Fault.CUT, 300_000), (Fault.RESET, 700_000), (Fault.STALL, 1_200_000),
                               (Fault.CUT, 100)]:
            proxy.schedule(kind, after_bytes=position)
        result = upload(
            path, proxy.url_for("/files"), segment_size=segment, parallel=4, state_dir=tmp_path / "state",
            timeouts=Timeouts(connect=5, read=2), retry=FAST_RETRY,
        )
        stats = proxy.stats
    _, served = gunicorn_server.sha256_of(through_server(gunicorn_server, result.url))
    assert result.verified and result.sha256 == digest and served == digest
    faults = len(stats.faults)
    assert faults >= 4, stats  # the run really met faults
    # Beyond the bytes of the file: request headers, the part of a segment a fault cut off, and
    # the probe that follows each failure (which the server may refuse while it still holds the
    # range for the cut-off request).
    resent = stats.bytes_from_clients - len(data)
    overhead = result.requests * HEADER_ALLOWANCE + result.retries * PROBE_BYTES
    print(
        f"\nupload: {faults} faults ({', '.join(f.kind.name for f in stats.faults)}), {result.requests} "
        f"requests, {result.retries} retries; {resent} bytes beyond the file = "
        f"{resent / faults / segment:.2f} segments per fault, headers and probes included"
    )
    assert resent <= faults * segment + overhead


def test_download_through_injected_faults_verifies(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    stored = upload(path, gunicorn_server.url, parallel=4, resume=False)
    with proxy_for(
        gunicorn_server,
        seed=7,
        faults=10,
        kinds=(Fault.CUT, Fault.RESET, Fault.STALL),
        cut_after=(0, 3 * MiB),
        fault_probability=0.6,
        stall_seconds=3.0,
        to_clients=True,  # cut the responses mid-way
    ) as proxy:
        for kind, position in [(Fault.CUT, 300_000), (Fault.RESET, 700_000), (Fault.STALL, 1_200_000)]:
            proxy.schedule(kind, after_bytes=position)
        target = tmp_path / "down.bin"
        result = download(
            through(proxy, stored.url), target, parallel=4, segment_size=1 * MiB,
            timeouts=Timeouts(connect=5, read=2), retry=FAST_RETRY,
        )
        stats = proxy.stats
    assert result.verified and sha256_file(target) == digest
    assert len(stats.faults) >= 3, stats
    # An interrupted response keeps what the client read and the retry asks only for the rest:
    # the client reads each byte once. What the proxy delivered twice is what a reset threw
    # away in the client's socket buffer: less than a segment per fault.
    assert result.transferred == len(data)
    twice = stats.bytes_to_clients - len(data) - result.requests * HEADER_ALLOWANCE
    print(f"\ndownload: {len(stats.faults)} faults, {result.retries} retries, {twice} bytes delivered twice")
    assert twice <= len(stats.faults) * MiB


# -- interrupted runs, resumed -------------------------------------------------------------------


def committed_bytes(server: GunicornServer, url: str) -> int:
    state = server.head(url)
    return state.committed_bytes() if state.status == 200 else 0


def test_killed_client_process_resumes_on_rerun(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    state_dir = tmp_path / "state"
    with proxy_for(gunicorn_server, rate_limit=12 * MiB) as proxy:
        collection = proxy.url_for("/files")
        args = ("upload", str(path), collection, "--parallel", "2", "--segment-size", "1MiB", "-q")
        env = {**os.environ, "BYTERANGE_STATE_DIR": str(state_dir)}
        client = subprocess.Popen(
            [BYTERANGE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            resource: list[str] = []

            def started() -> bool:
                if not resource:
                    found = remembered_url(path, collection, state_dir)
                    if found is None:
                        return False
                    resource.append(found)
                url = through_server(gunicorn_server, resource[0])
                return committed_bytes(gunicorn_server, url) >= 16 * MiB

            wait_until(started)
            client.send_signal(signal.SIGKILL)
            client.wait(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
            client.communicate()
        url = through_server(gunicorn_server, resource[0])
        at_kill = committed_bytes(gunicorn_server, url)
        assert 16 * MiB <= at_kill < len(data)

        proxy.set_rate_limit(None)
        proxy.reset_stats()
        rerun = run_cli(*args, state_dir=state_dir)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.strip() == resource[0]
        resent = proxy.stats.bytes_from_clients
    _, served = gunicorn_server.sha256_of(url)
    assert served == digest
    # The re-run sent only what was missing (plus request headers).
    assert resent <= len(data) - at_kill + 200 * HEADER_ALLOWANCE
    missing = len(data) - at_kill
    print(f"\nkilled at {at_kill} committed bytes; the re-run sent {resent} bytes for {missing} missing")


def test_pulled_network_then_same_command_finishes(gunicorn_server, source_64m, tmp_path):
    """The README scenario: upload --parallel 8, pull the network mid-way, re-run, finish."""
    path, data, digest = source_64m
    state_dir = tmp_path / "state"
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        collection = proxy.url_for("/files")
        args = (
            "upload", str(path), collection, "--parallel", "8", "--segment-size", "2MiB",
            "--timeout", "2", "--retries", "3",
        )
        running = Background(lambda: run_cli(*args, state_dir=state_dir))
        wait_until(lambda: proxy.stats.bytes_from_clients >= 24 * MiB)
        proxy.set_down(True)
        first = running.outcome(timeout=120)
        assert isinstance(first, subprocess.CompletedProcess)
        assert first.returncode == 3, first.stderr
        assert "run the same command again" in first.stderr
        assert "Traceback" not in first.stderr

        proxy.set_down(False)
        proxy.set_rate_limit(None)
        proxy.reset_stats()
        url_seen = remembered_url(path, collection, state_dir)
        assert url_seen is not None
        before = committed_bytes(gunicorn_server, through_server(gunicorn_server, url_seen))
        assert before > 0
        second = run_cli(*args, state_dir=state_dir)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == url_seen
        sent = proxy.stats.bytes_from_clients
    _, served = gunicorn_server.sha256_of(through_server(gunicorn_server, url_seen))
    assert served == digest
    assert sent <= len(data) - before + 200 * HEADER_ALLOWANCE


def test_download_resumes_after_the_network_was_pulled(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    stored = upload(path, gunicorn_server.url, parallel=4, resume=False)
    target = tmp_path / "down.bin"
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        url = through(proxy, stored.url)
        running = Background(
            lambda: download(url, target, parallel=4, segment_size=2 * MiB, timeouts=Timeouts(read=2),
                             retry=RetryPolicy(attempts=2, base=0.05, cap=0.2))
        )
        wait_until(lambda: proxy.stats.bytes_to_clients >= 20 * MiB)
        proxy.set_down(True)
        assert isinstance(running.outcome(), TransferFailed)
        assert (tmp_path / "down.bin.partial").exists()

        proxy.set_down(False)
        proxy.set_rate_limit(None)
        result = download(url, target, parallel=4, segment_size=2 * MiB)
    assert result.already_present >= 16 * MiB
    assert result.transferred == len(data) - result.already_present
    assert result.verified and sha256_file(target) == digest


def test_cancel_keeps_what_was_committed_and_progress_is_reported(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    state_dir = tmp_path / "state"
    seen: list[Progress] = []
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        collection = proxy.url_for("/files")
        uploader = Uploader(
            path, collection, segment_size=MiB, parallel=2, state_dir=state_dir, progress=seen.append
        )
        running = Background(uploader.run)
        wait_until(lambda: bool(seen) and seen[-1].done >= 8 * MiB)
        uploader.cancel()
        assert isinstance(running.outcome(timeout=30), Cancelled)
        assert all(p.total == len(data) and 0 <= p.done <= len(data) for p in seen)

        proxy.set_rate_limit(None)
        seen.clear()
        result = upload(path, collection, state_dir=state_dir, progress=seen.append)
    assert result.resumed and 0 < result.already_committed < len(data)
    assert result.transferred == len(data) - result.already_committed
    assert result.verified and result.sha256 == digest
    assert seen[0].done == result.already_committed and seen[-1].done == len(data)


def test_a_cancelled_download_keeps_what_arrived(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    stored = upload(path, gunicorn_server.url, parallel=4, resume=False)
    target = tmp_path / "down.bin"
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        # One segment at a time: at 10 MiB in, the third segment is cut mid-way. (With several
        # in flight the server's sendfile may fill some before others start, so the cut could
        # fall on segment boundaries by chance.)
        downloader = Downloader(through(proxy, stored.url), target, parallel=1, segment_size=4 * MiB)
        running = Background(downloader.run)
        wait_until(lambda: proxy.stats.bytes_to_clients >= 10 * MiB)
        downloader.cancel()
        assert isinstance(running.outcome(timeout=30), Cancelled)
        arrived = proxy.stats.bytes_to_clients
        proxy.set_rate_limit(None)
        result = download(through(proxy, stored.url), target, parallel=4, segment_size=4 * MiB)
    # Segments were cut mid-way (4 MiB each, 10 MiB in): their received prefixes were kept.
    assert result.already_present >= 8 * MiB and result.already_present % (4 * MiB) != 0
    assert result.already_present <= arrived
    assert result.verified and sha256_file(target) == digest


def test_a_file_modified_during_its_upload_is_an_integrity_error(gunicorn_server, tmp_path):
    path = tmp_path / "moving.bin"
    path.write_bytes(random.Random(9).randbytes(32 * MiB))
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        collection = proxy.url_for("/files")
        seen: list[Progress] = []
        running = Background(
            lambda: upload(path, collection, segment_size=MiB, parallel=2, state_dir=tmp_path / "state",
                           progress=seen.append)
        )
        wait_until(lambda: bool(seen) and seen[-1].done >= 4 * MiB)
        with open(path, "r+b") as f:  # same size, other bytes, a newer mtime
            f.seek(20 * MiB)
            f.write(b"edited" * 1000)
        error = running.outcome()
    assert isinstance(error, IntegrityError), error
    assert "changed while it was being uploaded" in str(error)


def test_status_of_a_plain_http_file(plain_file_server, tmp_path):
    served, port = plain_file_server
    replace_content(served, b"x" * 1000, 1_700_000_000)
    shown = run_cli("status", f"http://127.0.0.1:{port}/file", state_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "complete   yes" in shown.stdout and "not a byte-range upload resource" in shown.stdout
    assert "missing" not in shown.stdout and "committed" not in shown.stdout
    shown = run_cli("status", f"http://127.0.0.1:{port}/file", "--json", state_dir=tmp_path)
    as_json = json.loads(shown.stdout)
    assert as_json["complete"] is True and as_json["byterange_resource"] is False
    assert as_json["length"] == 1000 and as_json["committed"] is None and as_json["missing"] is None


# -- the command line ----------------------------------------------------------------------------


def test_cli_status_and_one_line_errors(gunicorn_server, tmp_path):
    size = 3 * MiB
    url = gunicorn_server.allocate(size)
    assert gunicorn_server.put_segment(url, MiB, b"x" * MiB, size).ok

    shown = run_cli("status", url, state_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "complete   no" in shown.stdout
    assert f"bytes {MiB}-{2 * MiB - 1}" in shown.stdout  # committed
    assert f"bytes 0-{MiB - 1}" in shown.stdout and f"bytes {2 * MiB}-{size - 1}" in shown.stdout  # missing

    as_json = run_cli("status", url, "--json", state_dir=tmp_path)
    assert '"committed_bytes": 1048576' in as_json.stdout

    incomplete = run_cli("download", url, str(tmp_path / "x.bin"), state_dir=tmp_path)
    assert incomplete.returncode == 4 and "not complete yet" in incomplete.stderr
    with pytest.raises(IncompleteResource):
        Downloader(url, tmp_path / "y.bin").run()

    gone = run_cli("status", gunicorn_server.url + "/AAAAAAAAAAAAAAAAAAAAAA", state_dir=tmp_path)
    assert gone.returncode == 4 and "404" in gone.stderr
    for result in (incomplete, gone):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    missing_file = run_cli("upload", str(tmp_path / "nope.bin"), gunicorn_server.url, state_dir=tmp_path)
    assert missing_file.returncode == 2 and "No such file" in missing_file.stderr

    refused = tmp_path / "big.bin"
    refused.write_bytes(b"12345")
    wrong = run_cli("upload", str(refused), url, "--existing", state_dir=tmp_path)
    assert wrong.returncode == 4 and "has length" in wrong.stderr

    with pytest.raises(ServerRefused) as caught:
        upload(refused, gunicorn_server.url.replace("/files", "/nothing-here"), resume=False)
    assert caught.value.status in (404, 405)


# -- a file that changes on the server -----------------------------------------------------------


@pytest.fixture
def plain_file_server(tmp_path: Path):
    """Werkzeug serving one file with a strong ETag, Range and If-Range: any HTTP file server."""
    from flask import Flask
    from flask import send_file
    from werkzeug.serving import make_server

    served = tmp_path / "served.bin"
    app = Flask("plain")

    @app.get("/file")
    def serve():  # type: ignore[no-untyped-def]
        return send_file(served, conditional=True, etag=True, max_age=0)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def replace_content(path: Path, data: bytes, mtime: float) -> None:
    """Swap in a new version atomically, with a new mtime (and so a new ETag)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)


def interrupted_download(proxy: FaultProxy, url: str, target: Path, after_bytes: int) -> None:
    """Start a download, pull the network once ``after_bytes`` arrived; it must give up."""
    running = Background(
        lambda: download(url, target, parallel=4, segment_size=MiB, timeouts=Timeouts(read=2),
                         retry=RetryPolicy(attempts=2, base=0.05, cap=0.2))
    )
    wait_until(lambda: proxy.stats.bytes_to_clients >= after_bytes)
    proxy.set_down(True)
    assert isinstance(running.outcome(), TransferFailed)
    proxy.set_down(False)


def test_a_file_changed_between_download_attempts_is_not_stitched(plain_file_server, tmp_path):
    served, port = plain_file_server
    old, new = random.Random(1).randbytes(16 * MiB), random.Random(2).randbytes(16 * MiB)
    replace_content(served, old, 1_700_000_000)
    target = tmp_path / "copy.bin"
    with FaultProxy("127.0.0.1", port, rate_limit=8 * MiB) as proxy:
        url = proxy.url_for("/file")
        interrupted_download(proxy, url, target, after_bytes=4 * MiB)
        assert (tmp_path / "copy.bin.partial").exists()
        replace_content(served, new, 1_700_000_100)
        proxy.set_rate_limit(None)

        with pytest.raises(RemoteChanged):  # asked not to start over: refuses to mix versions
            download(url, target, restart_on_change=False)
        assert not target.exists()

        result = download(url, target, parallel=4, segment_size=MiB)
    assert result.restarts == 1 and result.already_present == 0
    assert target.read_bytes() == new


def test_a_file_changed_during_a_download_starts_it_over(plain_file_server, tmp_path):
    served, port = plain_file_server
    old, new = random.Random(3).randbytes(16 * MiB), random.Random(4).randbytes(16 * MiB)
    replace_content(served, old, 1_700_000_000)
    target = tmp_path / "copy.bin"
    with FaultProxy("127.0.0.1", port, rate_limit=8 * MiB) as proxy:
        url = proxy.url_for("/file")
        running = Background(lambda: download(url, target, parallel=4, segment_size=MiB))
        wait_until(lambda: proxy.stats.bytes_to_clients >= 4 * MiB)
        replace_content(served, new, 1_700_000_100)
        proxy.set_rate_limit(None)
        result = running.outcome()
    assert isinstance(result, DownloadResult) and result.restarts >= 1
    assert target.read_bytes() == new


# -- input of unknown length: pipes, FIFOs, stdin ------------------------------------------------


def feed(write_end: int, *pieces: bytes) -> None:
    """Write ``pieces`` to a pipe or FIFO, then close it (the end of the input)."""
    with contextlib.suppress(BrokenPipeError), open(write_end, "wb") as out:
        for piece in pieces:
            out.write(piece)


@pytest.mark.parametrize("fmt", ["message", "put"])
def test_a_pipe_is_uploaded_without_knowing_its_length(gunicorn_server, tmp_path, fmt):
    data = random.Random(11).randbytes(5 * MiB + 77)
    read_end, write_end = os.pipe()
    go_on = threading.Event()

    def write() -> None:  # on a daemon thread: a client that stops reading must not hang the test
        with contextlib.suppress(BrokenPipeError), open(write_end, "wb") as out:
            out.write(data[: 3 * MiB + 5])
            out.flush()
            go_on.wait(60)
            out.write(data[3 * MiB + 5 :])

    with open(read_end, "rb", buffering=0) as pipe:
        uploader = Uploader(pipe, gunicorn_server.url, segment_size=MiB, wire_format=fmt)
        running = Background(uploader.run)
        threading.Thread(target=write, daemon=True).start()
        # Segments 0 and 1 go as soon as the one after each is read; 2 waits for the end of 3.
        wait_until(lambda: uploader.resource_url is not None
                   and committed_bytes(gunicorn_server, uploader.resource_url) == 2 * MiB)
        midway = gunicorn_server.head(uploader.resource_url)
        go_on.set()
        result = running.outcome()
    assert midway.length is None and midway.complete is False  # allocated without Upload-Length
    assert midway.ranges == [(0, 2 * MiB - 1)]
    assert isinstance(result, UploadResult) and result.size == len(data) and result.verified
    assert result.transferred == len(data) and not result.resumed
    final = gunicorn_server.head(result.url)
    assert final.length == len(data) and final.complete
    _, served = gunicorn_server.sha256_of(result.url)
    assert served == hashlib.sha256(data).hexdigest()


def run_cli_with_input(*args: str, data: bytes, state_dir: Path, timeout: float = 120):
    env = {**os.environ, "BYTERANGE_STATE_DIR": str(state_dir)}
    return subprocess.run([BYTERANGE, *args], input=data, capture_output=True, env=env, timeout=timeout)


def test_the_command_uploads_stdin_of_any_length(gunicorn_server, tmp_path):
    # Empty, shorter than a segment, exactly on the grid, one byte past it.
    for size in (0, 1000, 2 * MiB, 3 * MiB + 1):
        data = random.Random(size).randbytes(size)
        done = run_cli_with_input(
            "upload", "-", gunicorn_server.url, "-s", "1MiB", data=data, state_dir=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr and b"sha-256 verified" in done.stderr
        url = done.stdout.decode().strip()
        state = gunicorn_server.head(url)
        assert state.length == size and state.complete, (size, state)
        _, served = gunicorn_server.sha256_of(url)
        assert served == hashlib.sha256(data).hexdigest()


def test_the_command_uploads_from_a_fifo_and_says_parallel_does_not_apply(gunicorn_server, tmp_path):
    data = random.Random(12).randbytes(3 * MiB + 333)
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: feed(os.open(fifo, os.O_WRONLY), data), daemon=True)
    writer.start()
    done = run_cli("upload", str(fifo), gunicorn_server.url, "-s", "1MiB", "-p", "8", state_dir=tmp_path)
    writer.join(timeout=30)
    assert done.returncode == 0, done.stderr
    note = "the input is a stream: segments go one at a time, in order (--parallel does not apply)"
    assert note in done.stderr
    url = done.stdout.strip()
    _, served = gunicorn_server.sha256_of(url)
    assert served == hashlib.sha256(data).hexdigest()
    assert gunicorn_server.head(url).length == len(data)


def test_a_stream_resends_a_cut_segment_from_memory(gunicorn_server, tmp_path):
    data = random.Random(13).randbytes(6 * MiB)
    with proxy_for(gunicorn_server) as proxy:
        for kind, position in [(Fault.CUT, 300_000), (Fault.RESET, 700_000), (Fault.CUT, 100)]:
            proxy.schedule(kind, after_bytes=position)
        read_end, write_end = os.pipe()
        writer = threading.Thread(target=feed, args=(write_end, data), daemon=True)
        writer.start()
        with open(read_end, "rb", buffering=0) as pipe:
            result = upload(pipe, proxy.url_for("/files"), segment_size=MiB, retry=FAST_RETRY,
                            timeouts=Timeouts(connect=5, read=5))
        writer.join(timeout=30)
        faults = len(proxy.stats.faults)
    assert faults >= 2 and result.retries >= 2
    assert result.verified and result.sha256 == hashlib.sha256(data).hexdigest()
    _, served = gunicorn_server.sha256_of(through_server(gunicorn_server, result.url))
    assert served == result.sha256


def test_a_stream_resumes_into_its_resource_with_existing(gunicorn_server, tmp_path):
    data = random.Random(14).randbytes(4 * MiB + 10)
    url = gunicorn_server.allocate()  # length unknown, as a pipe upload leaves it
    assert gunicorn_server.put_segment(url, 0, data[: 2 * MiB], None).ok
    done = run_cli_with_input(
        "upload", "--existing", "-", url, "-s", "1MiB", "--json", data=data, state_dir=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed"] and result["already_committed"] == 2 * MiB
    assert result["transferred"] == len(data) - 2 * MiB and result["verified"]

    other = gunicorn_server.allocate(100)
    longer = run_cli_with_input("upload", "--existing", "-", other, data=b"x" * 200, state_dir=tmp_path)
    assert longer.returncode == 4
    assert f"{other} has length 100, but the input has 200 bytes" in longer.stderr.decode()


def test_a_stream_that_fails_says_how_to_finish_it(gunicorn_server, tmp_path):
    with proxy_for(gunicorn_server) as proxy:
        read_end, write_end = os.pipe()
        out = open(write_end, "wb")  # noqa: SIM115 - closed below
        env = {**os.environ, "BYTERANGE_STATE_DIR": str(tmp_path)}
        args = ["upload", "-", proxy.url_for("/files"), "-s", "1MiB", "--retries", "1", "--timeout", "2"]
        client = subprocess.Popen(
            [BYTERANGE, *args],
            stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        os.close(read_end)
        out.write(b"y" * (3 * MiB))
        out.flush()
        wait_until(lambda: proxy.stats.bytes_from_clients >= 2 * MiB)
        proxy.set_down(True)

        def more_input() -> None:  # lets segment 2 go, into the pulled network
            with contextlib.suppress(BrokenPipeError):
                out.write(b"y" * (2 * MiB))
            with contextlib.suppress(BrokenPipeError):
                out.close()

        writer = threading.Thread(target=more_input, daemon=True)
        writer.start()
        _, stderr = client.communicate(timeout=120)
        writer.join(timeout=10)
    assert client.returncode == 3, stderr
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("byterange: gave up after 2 failed attempts in a row: ")
    assert "the input was a stream, so finish it by sending the same bytes again: … | " in lines[-1]
    assert "byterange upload --existing - http://" in lines[-1]


# -- retries and refusals, as people see them ----------------------------------------------------


def test_retries_are_announced_until_the_server_comes_up(database_url, tmp_path):
    server = GunicornServer(database_url, tmp_path / "server", workers=1, threads=4)
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello, late server\n")
    client = Background(
        lambda: run_cli("upload", str(path), server.url, "--retries", "30", state_dir=tmp_path)
    )
    time.sleep(2)  # a few refused connections first
    with running(server):
        done = client.outcome(timeout=180)
        assert isinstance(done, subprocess.CompletedProcess)
        assert done.returncode == 0, done.stderr
        assert server.sha256_of(done.stdout.strip())[1] == hashlib.sha256(path.read_bytes()).hexdigest()
    notices = [line for line in done.stderr.splitlines() if "retrying in" in line]
    assert notices, done.stderr
    assert notices[0].startswith("byterange: retrying in ") and "(attempt 2 of 31): POST " in notices[0]
    assert "Connection refused" in notices[0]


@pytest.fixture
def refusing_server(tmp_path: Path):
    """A server behind which PATCH is not implemented (a gateway answering 501): the rest works."""
    from flask import Flask
    from flask import Response
    from werkzeug.serving import make_server

    app = Flask("refusing")
    seen: list[str] = []
    state = {"Upload-Offset": "0", "Upload-Complete": "?0", "Upload-Length": "12", "Committed-Ranges": "none"}

    @app.post("/files")
    def allocate():  # type: ignore[no-untyped-def]
        seen.append("POST")
        return Response(status=201, headers={"Location": "/files/abcdefghijklmnopqrstuv", **state})

    @app.route("/files/abcdefghijklmnopqrstuv", methods=["HEAD", "OPTIONS", "PATCH"])
    def resource():  # type: ignore[no-untyped-def]
        from flask import request

        seen.append(request.method)
        if request.method == "PATCH":
            body = json.dumps({"type": "about:blank", "title": "Not Implemented", "status": 501,
                               "detail": "This gateway does not forward PATCH."})
            return Response(body, status=501, content_type="application/problem+json")
        return Response(status=200, headers=state)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/files", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_501_is_not_retried_and_suggests_a_put(refusing_server, tmp_path):
    url, seen = refusing_server
    path = tmp_path / "twelve.txt"
    path.write_bytes(b"0123456789ab")
    started = time.monotonic()
    done = run_cli("upload", str(path), url, state_dir=tmp_path)
    assert done.returncode == 4, done.stderr
    assert time.monotonic() - started < 30
    assert seen.count("PATCH") == 1 and "retrying" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"byterange: PATCH {url}/abcdefghijklmnopqrstuv: HTTP 501 Not Implemented: "
                        "This gateway does not forward PATCH.")
    assert lines[1] == ("byterange: the server, or a proxy in front of it, does not take PATCH uploads: "
                        "try --format put")


TOKEN = "s3cr3t-t0ken-for-tests-0123456789"


def test_refusals_say_what_to_change(database_url, tmp_path):
    server = GunicornServer(database_url, tmp_path / "server", workers=1, threads=4, extra_env={
        "BYTERANGE_AUTH": "required", "BYTERANGE_TOKENS": f"alice:{TOKEN}",
        "BYTERANGE_MAX_RESOURCE_SIZE": "1MiB",
    })
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 2_000_000)
    with running(server):
        anonymous = run_cli("upload", str(small), server.url, state_dir=tmp_path)
        assert anonymous.returncode == 4
        assert anonymous.stderr.splitlines() == [
            f"byterange: POST {server.url}: HTTP 401 Credentials required: This server requires a bearer "
            "token or a signed URL.",
            "byterange: this server needs credentials: pass --token TOKEN (or set BYTERANGE_TOKEN), or use a "
            "signed URL",
        ]
        wrong = run_cli(
            "upload", str(small), server.url, "--token", "not-the-token-at-all", state_dir=tmp_path
        )
        assert wrong.returncode == 4 and "did not accept these credentials" in wrong.stderr

        uploaded = run_cli("upload", str(small), server.url, "--token", TOKEN, state_dir=tmp_path)
        assert uploaded.returncode == 0, uploaded.stderr
        # A HEAD refused for want of a token: the explanation comes from the GET's problem document.
        status_without = run_cli("status", uploaded.stdout.strip(), state_dir=tmp_path)
        assert status_without.returncode == 4
        assert "HTTP 401 Credentials required: This server requires a bearer token" in status_without.stderr
        assert "--token" in status_without.stderr

        too_big = run_cli("upload", str(big), server.url, "--token", TOKEN, state_dir=tmp_path)
        assert too_big.returncode == 4
        assert (
            "exceeds the maximum resource size. (length 2000000 (1.9 MiB), max-size 1048576 (1.0 MiB))"
            in too_big.stderr
        )
        piped = run_cli_with_input("upload", "-", server.url, "--token", TOKEN, "-s", "512KiB",
                                   data=b"p" * 2_000_000, state_dir=tmp_path)
        assert piped.returncode == 4
        assert b"max-size 1048576 (1.0 MiB)" in piped.stderr


def test_head_errors_carry_the_servers_explanation(gunicorn_server, tmp_path):
    invalid = run_cli("status", gunicorn_server.url + "/AAAA", state_dir=tmp_path)
    assert invalid.returncode == 4
    assert invalid.stderr.strip() == (
        f"byterange: HEAD {gunicorn_server.url}/AAAA: HTTP 400 Invalid resource id: A resource id is 16 to "
        "64 characters from A-Z, a-z, 0-9, '_' and '-'."
    )
    unknown = gunicorn_server.url + "/" + "A" * 22
    for args in (("status", unknown), ("download", unknown, str(tmp_path / "x.bin"))):
        shown = run_cli(*args, state_dir=tmp_path)
        assert shown.returncode == 4
        assert f"HEAD {unknown}: HTTP 404 No such resource (resource {'A' * 22})" in shown.stderr


def test_a_url_without_a_scheme_is_http_without_warnings(gunicorn_server, tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    bare = gunicorn_server.url.removeprefix("http://")
    done = run_cli("upload", str(path), bare, state_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(gunicorn_server.url + "/")
    assert "Warning" not in done.stderr and "site-packages" not in done.stderr


def test_a_tiny_segment_size_is_warned_about(gunicorn_server, tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(random.Random(15).randbytes(300))
    tiny = run_cli("upload", str(path), gunicorn_server.url, "-s", "1", "--no-resume", state_dir=tmp_path)
    assert tiny.returncode == 0, tiny.stderr
    assert ("byterange: warning: segments of 1 B cut these 300 B into 300 requests; each costs the server "
            "a disk flush, so this will be slow (the default segment size is 8.0 MiB)") in tiny.stderr
    sensible = run_cli(
        "upload", str(path), gunicorn_server.url, "-s", "100", "--no-resume", state_dir=tmp_path
    )
    assert sensible.returncode == 0 and "warning" not in sensible.stderr


def test_download_failures_speak_of_downloads(gunicorn_server, source_64m, tmp_path):
    path, data, digest = source_64m
    stored = upload(path, gunicorn_server.url, resume=False)
    target = tmp_path / "copy.bin"
    with proxy_for(gunicorn_server, rate_limit=16 * MiB) as proxy:
        url = through(proxy, stored.url)
        args = ("download", url, str(target), "-s", "1MiB", "--retries", "1", "--timeout", "2")
        running_download = Background(lambda: run_cli(*args, state_dir=tmp_path))
        wait_until(lambda: proxy.stats.bytes_to_clients >= 8 * MiB)
        proxy.set_down(True)
        failed = running_download.outcome(timeout=120)
        assert isinstance(failed, subprocess.CompletedProcess)
    assert failed.returncode == 3, failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        f"byterange: what arrived is kept in {target}.partial; run the same command again to resume"
    )
    assert "committed" not in failed.stderr


# -- the terminal --------------------------------------------------------------------------------


def run_in_terminal(
    args: list[str], env: dict[str, str], *, interrupt_when: Callable[[], bool] | None = None,
    timeout: float = 180,
) -> tuple[int, str]:
    """Run the command with a terminal (a pty, 120 columns) as stdin, stdout and stderr.

    Returns its exit status and everything it wrote, carriage returns and all. With
    ``interrupt_when``, SIGINT (Ctrl-C) goes to the command once the predicate holds.
    """
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # Ctrl-C as at a user's terminal: a command started in the background by a non-interactive
    # shell (as CI may start the suite) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt in the child.
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while time.monotonic() < deadline:
            if interrupt_when is not None and not interrupted and interrupt_when():
                process.send_signal(signal.SIGINT)
                interrupted = True
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the command closed the terminal: EIO
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return status, output.decode("utf-8", errors="replace")


def bar_rates(output: str) -> list[tuple[float, str]]:
    """Every rate the progress bar showed: (number, unit) pairs."""
    import re

    return [(float(n), unit) for n, unit in re.findall(r"\| [^|\r\n]*?, ([0-9.]+) ([KMGT]?i?B)/s", output)]


def test_ctrl_c_leaves_the_bar_above_the_message_and_names_the_resource(
    gunicorn_server, source_64m, tmp_path
):
    path, data, digest = source_64m
    state_dir = tmp_path / "state"
    env = {**os.environ, "BYTERANGE_STATE_DIR": str(state_dir)}
    with proxy_for(gunicorn_server, rate_limit=8 * MiB) as proxy:
        collection = proxy.url_for("/files")
        args = [BYTERANGE, "upload", str(path), collection, "-s", "1MiB", "-p", "2"]

        def far_enough() -> bool:
            found = remembered_url(path, collection, state_dir)
            if found is None:
                return False
            return committed_bytes(gunicorn_server, through_server(gunicorn_server, found)) >= 8 * MiB

        status_code, output = run_in_terminal(args, env, interrupt_when=far_enough)
        resource = remembered_url(path, collection, state_dir)
        assert status_code == 130, output
        message = output.index("byterange: cancelled")
        assert "%|" in output[:message] and "%|" not in output[message:]  # no bar drawn after it
        assert output[message - 2 : message] == "\r\n"  # the message starts a line of its own
        assert (
            f"byterange: the resource is {resource} (to resume from elsewhere: byterange upload --existing "
            f"{path} {resource})" in output
        )
        assert "Traceback" not in output

        # Resumed: the bar starts where the upload was, and its rate counts this run's bytes only.
        status_code, output = run_in_terminal(args, env)
    assert status_code == 0, output
    assert "byterange: resumed 64.0 MiB: sent " in output
    rates = bar_rates(output)
    assert rates and all(unit in ("B", "KiB", "MiB") for _, unit in rates), rates
    assert max(n for n, unit in rates if unit == "MiB") < 64, rates  # the link gives ~8 MiB/s
    assert " MB/s" not in output and " GB/s" not in output


def test_retry_notices_go_above_the_bar(database_url, tmp_path):
    server = GunicornServer(database_url, tmp_path / "server", workers=1, threads=4)
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n" * 1000)
    env = {**os.environ, "BYTERANGE_STATE_DIR": str(tmp_path)}
    # The server starts 3 s after the client: its first attempts meet a closed port.
    starting = Background(lambda: (time.sleep(3), server.start()))
    try:
        args = [BYTERANGE, "upload", str(path), server.url, "--retries", "30"]
        status_code, output = run_in_terminal(args, env)
        assert not isinstance(starting.outcome(), BaseException)
    finally:
        server.stop()
    assert status_code == 0, output
    notices = [line for line in output.split("\n") if "byterange: retrying in" in line]
    assert notices, output
    for line in notices:
        # On a line of its own: whatever the bar had drawn was cleared before it ('\r').
        assert line.rsplit("\r", 2)[-2].startswith("byterange: retrying in "), repr(line)
