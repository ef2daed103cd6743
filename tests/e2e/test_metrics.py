"""Metrics scraped from a two-worker gunicorn, on SQLite and PostgreSQL.

Each worker in turn serves uploads and scrapes while the other is stopped (SIGSTOP: only the
running one can accept a connection), so both surely serve some, as the JSON access lines confirm;
every scrape, whichever worker answers it, must show the exact totals of both (created == POSTs,
received bytes == body bytes sent, ...). A worker killed with SIGKILL is replaced by
gunicorn: its counters stay in the shared directory (totals do not go backwards), its live gauges
are dropped by ``child_exit`` (``byterange_workers`` is 2 again, not 3).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GunicornServer
from .conftest import running

pytestmark = pytest.mark.e2e

ACCESS = "byterange_server.access"
WAIT = 30.0  # generous bound for anything asynchronous (a worker replaced, a request finished)


def scrape(server: GunicornServer) -> tuple[dict[tuple[str, frozenset], float], str]:
    """One scrape on a fresh connection: (samples, request id of the scrape)."""
    response = requests.get(server.base + "/metrics", timeout=30, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, response.headers["X-Request-Id"]


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(server: GunicornServer, ready: Any) -> dict[tuple[str, frozenset], float]:
    """Scrape until ``ready(samples)`` (a request still finishing, a worker still booting: each
    worker counts in ``byterange_workers`` once its app is built), within a generous bound."""
    deadline = time.monotonic() + WAIT
    while True:
        samples, _ = scrape(server)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def access_lines(server: GunicornServer) -> list[dict[str, Any]]:
    """The app's JSON access lines in the server log (stderr of master and workers)."""
    lines = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == ACCESS:
                lines.append(record)
    return lines


def served_by(server: GunicornServer, request_ids: set[str]) -> dict[str, int]:
    """request id → pid of the worker that logged it (waiting for lines still being written)."""
    deadline = time.monotonic() + WAIT
    while True:
        found = {line["request_id"]: line["pid"] for line in access_lines(server)
                 if line["request_id"] in request_ids}
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class Sent:
    """What the client did, to compare with the scraped totals."""

    def __init__(self) -> None:
        self.posts = 0
        self.puts = 0
        self.body_bytes = 0
        self.request_ids: set[str] = set()

    def upload(self, server: GunicornServer, data: bytes) -> str:
        # "Connection: close": a new connection each time, so gunicorn's accept spreads them.
        headers = {"Upload-Length": str(len(data)), "Connection": "close"}
        created = requests.post(server.url, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        self.posts += 1
        url = created.headers["Location"]
        written = requests.put(url, data=data, timeout=30, headers={
            "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "Connection": "close"})
        assert written.status_code == 204, written.text
        self.puts += 1
        self.body_bytes += len(data)
        self.request_ids |= {created.headers["X-Request-Id"], written.headers["X-Request-Id"]}
        return url


def check_totals(samples: dict, sent: Sent, workers: int = 2) -> None:
    expected = {
        "byterange_resources_created_total": sent.posts,
        "byterange_resources_completed_total{outcome=ok}": sent.puts,
        "byterange_writes_committed_total": sent.puts,
        "byterange_received_bytes_total{protocol=byterange}": sent.body_bytes,
        "byterange_committed_bytes_total": sent.body_bytes,
        "byterange_request_duration_seconds_count{method=POST,status_class=2xx}": sent.posts,
        "byterange_request_duration_seconds_count{method=PUT,status_class=2xx}": sent.puts,
        # every worker once; the dead ones no more
        "byterange_workers": workers,
        # the scrape itself
        "byterange_requests_in_flight": 1,
    }
    got = {}
    for key in expected:
        name, _, labels = key.partition("{")
        pairs = dict(pair.split("=") for pair in labels.rstrip("}").split(",") if pair)
        got[key] = value(samples, name, **pairs)
    assert got == expected


def wait_for_replacement(server: GunicornServer, killed: int) -> list[int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == server.workers and killed not in pids:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"worker {killed} not replaced: {server.worker_pids()}\n{server.log_tail()}")


@contextmanager
def only_worker(server: GunicornServer, pid: int) -> Iterator[None]:
    """The other workers stopped (SIGSTOP), so new connections can be accepted by ``pid`` only:
    the workers share one listening socket. Kept short, far below gunicorn's 30 s worker timeout."""
    others = [other for other in server.worker_pids() if other != pid]
    assert pid in server.worker_pids() and others, (pid, others)
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path):
    # Empty PROMETHEUS_MULTIPROC_DIR: unset, the server makes its own. gunicorn's access log off
    # (the default outside the fixtures). BYTERANGE_AUTH: as the shared fixtures will have it.
    # No expiry sweeps: a worker stopped in the middle of one would hold the database meanwhile.
    env = {"PROMETHEUS_MULTIPROC_DIR": "", "BYTERANGE_ACCESS_LOG": "", "BYTERANGE_AUTH": "off",
           "BYTERANGE_CLEANUP_INTERVAL": "0"}
    server = GunicornServer(database_url, tmp_path / "server", workers=2, threads=4, extra_env=env)
    with running(server):
        yield server


def test_metrics_scraped_from_two_workers(two_workers: GunicornServer) -> None:
    server = two_workers
    scrape_until(server, lambda samples: value(samples, "byterange_workers") == 2)
    rng = random.Random(6)
    sent = Sent()
    workers_seen = set(server.worker_pids())
    assert len(workers_seen) == 2
    # Each worker alone serves uploads, then answers scrapes: each scrape has the totals of both.
    for pid in sorted(workers_seen):
        with only_worker(server, pid):
            for _ in range(5):
                sent.upload(server, rng.randbytes(rng.randrange(1, 200_000)))
            for _ in range(3):
                samples, request_id = scrape(server)
                check_totals(samples, sent)
                assert served_by(server, {request_id}) == {request_id: pid}
    assert set(served_by(server, sent.request_ids).values()) == workers_seen

    # A 409 and an interrupted PATCH, wherever they land, count once in the total.
    url = sent.upload(server, b"abcd")
    conflict = requests.put(url, data=b"abXd", timeout=30, headers={"Content-Range": "bytes 0-3/4"})
    assert conflict.status_code == 409
    sent.body_bytes += 4  # received, not committed
    interrupted = _interrupted_patch(server, length=10_000, sent_bytes=4_000)
    samples = scrape_until(
        server, lambda samples: value(samples, "byterange_writes_interrupted_total", protocol="byterange")
    )
    conflicts = value(samples, "byterange_write_conflicts_total", protocol="byterange",
                      code="content-mismatch")
    assert conflicts == 1
    assert value(samples, "byterange_writes_interrupted_total", protocol="byterange") == 1
    # The interrupted PATCH committed its received prefix: one more write, its bytes.
    committed = value(samples, "byterange_committed_bytes_total")
    assert committed == sent.body_bytes - 4 + interrupted.data_bytes
    assert value(samples, "byterange_received_bytes_total", protocol="byterange") == (
        sent.body_bytes + interrupted.body_bytes
    )
    assert value(samples, "byterange_resources_created_total") == sent.posts + 1

    # SIGKILL one worker: gunicorn forks a replacement; nothing counted is lost.
    before, _ = scrape(server)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    (replacement,) = set(wait_for_replacement(server, victim)) - {victim} - workers_seen
    # The victim's gauge went in child_exit, before the fork: two workers again once the
    # replacement's app is built (and its gauge set). Then the replacement alone answers.
    scrape_until(server, lambda samples: value(samples, "byterange_workers") == 2)
    with only_worker(server, replacement):
        after, request_id = scrape(server)
    assert served_by(server, {request_id}) == {request_id: replacement}
    for key, number in before.items():
        if key[0].endswith("_total"):  # nothing but scrapes happened meanwhile
            assert after.get(key) == number, (key, number, after.get(key))
        elif key[0].startswith("byterange_request_duration_seconds"):  # + the scrapes
            assert after.get(key, 0.0) >= number, (key, number, after.get(key))
    assert value(after, "byterange_workers") == 2
    assert value(after, "byterange_requests_in_flight") == 1

    # And counting goes on from there, exactly.
    more = Sent()
    for _ in range(6):
        more.upload(server, rng.randbytes(1000))
    final, _ = scrape(server)
    created = value(after, "byterange_resources_created_total")
    assert value(final, "byterange_resources_created_total") == created + 6
    assert value(final, "byterange_received_bytes_total", protocol="byterange") == (
        value(after, "byterange_received_bytes_total", protocol="byterange") + 6000
    )


class _Interrupted:
    def __init__(self, body_bytes: int, data_bytes: int) -> None:
        self.body_bytes = body_bytes
        self.data_bytes = data_bytes


def _interrupted_patch(server: GunicornServer, *, length: int, sent_bytes: int) -> _Interrupted:
    """A message/byterange PATCH whose client goes away after ``sent_bytes`` of data."""
    created = requests.post(server.url, headers={"Upload-Length": str(length)}, timeout=30)
    assert created.status_code == 201
    path = re.sub(r"^https?://[^/]+", "", created.headers["Location"])
    part_head = f"Content-Range: bytes 0-{length - 1}/{length}\r\n\r\n".encode()
    content_length = len(part_head) + length
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: message/byterange\r\n"
            f"Content-Length: {content_length}\r\n\r\n".encode()
            + part_head
            + b"z" * sent_bytes
        )
        time.sleep(0.3)  # let the server read what was sent before the connection goes
    return _Interrupted(body_bytes=len(part_head) + sent_bytes, data_bytes=sent_bytes)


def test_the_shared_directory_is_emptied_at_start_and_the_private_one_removed(
    database_url: str, tmp_path: Path
) -> None:
    """An operator's PROMETHEUS_MULTIPROC_DIR starts from zero on every start (values of the last
    run would add up otherwise); a directory the server made for itself is gone at exit."""
    shared = tmp_path / "prom"
    server = GunicornServer(database_url, tmp_path / "server", workers=2, threads=2,
                            extra_env={"BYTERANGE_AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": str(shared)})
    with running(server):
        for _ in range(3):
            assert requests.post(server.url, timeout=30).status_code == 201
        samples, _ = scrape(server)
        assert value(samples, "byterange_resources_created_total") == 3
        server.restart()
        samples = scrape_until(server, lambda samples: value(samples, "byterange_workers") == 2)
        assert value(samples, "byterange_resources_created_total") == 0
        assert value(samples, "byterange_workers") == 2
    assert shared.is_dir()  # the operator's: emptied, never removed

    private_server = GunicornServer(database_url, tmp_path / "private", workers=2, threads=2,
                                    extra_env={"BYTERANGE_AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": ""})
    with running(private_server):
        assert requests.post(private_server.url, timeout=30).status_code == 201
        match = re.search(r"metrics of all workers in (\S+)", private_server.log_path.read_text())
        assert match, private_server.log_tail()
        private = Path(match.group(1))
        assert private.is_dir() and list(private.glob("*.db"))
    assert not private.exists()
