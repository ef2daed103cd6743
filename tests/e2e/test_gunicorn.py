"""End-to-end scenarios against a real gunicorn (4 gthread workers × 4 threads) on loopback.

Each test runs on SQLite and on PostgreSQL (``database_url`` is parametrized). The harness is in
``conftest.py``; separate client processes run ``upload_worker.py``. Failures print the HEAD
state and, in the report section "gunicorn log", the tail of the server log.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from . import upload_worker
from .conftest import LEASE_SECONDS
from .conftest import GunicornServer
from .conftest import MiB
from .conftest import split_range
from .upload_worker import Reply

pytestmark = pytest.mark.e2e


def repr_digest(data_sha256_hex: str) -> str:
    return "sha-256=:" + base64.b64encode(bytes.fromhex(data_sha256_hex)).decode() + ":"


def problem_type(reply: Reply) -> str:
    problem = reply.problem or {}
    return str(problem.get("type", ""))


def assert_complete(server: GunicornServer, url: str, expected_sha: str, length: int) -> None:
    """HEAD says complete and covered; GET returns exactly the expected bytes and digest."""
    state = server.head(url)
    assert state.status == 200, state
    assert state.complete is True, state
    assert state.length == length and state.offset == length, state
    assert state.ranges == [(0, length - 1)], state
    response, got = server.sha256_of(url)
    assert response.status_code == 200, (response.status_code, dict(response.headers))
    assert int(response.headers["Content-Length"]) == length
    assert got == expected_sha, f"GET body sha-256 {got} != source {expected_sha}; {state}"
    assert response.headers.get("ETag"), dict(response.headers)
    assert response.headers.get("Repr-Digest") == repr_digest(expected_sha), dict(response.headers)


def finish_workers(processes: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, object]]:
    """Wait for upload_worker processes; fail with their output if any did not succeed."""
    summaries = []
    failures = []
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            failures.append(f"pid {process.pid} timed out: {out} {err}")
            continue
        lines = out.strip().splitlines()
        summary = json.loads(lines[-1]) if lines else {"ok": False, "error": "no summary"}
        summaries.append(summary)
        if process.returncode != 0 or not summary.get("ok"):
            failures.append(f"pid {process.pid} rc={process.returncode} {summary} stderr={err[-2000:]}")
    assert not failures, "\n".join(failures)
    return summaries


def kill_processes(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


# 1. Sixteen clients, one resource ------------------------------------------------------------


def test_sixteen_clients_fill_64mib_in_random_order(
    gunicorn_server: GunicornServer, source_64m: tuple[Path, bytes, str]
) -> None:
    server = gunicorn_server
    path, data, sha = source_64m
    length = len(data)
    url = server.allocate(length)

    segments = split_range(0, length, MiB)
    random.Random(1).shuffle(segments)
    clients = [segments[index::16] for index in range(16)]

    # 8 separate processes...
    processes = [
        server.spawn_worker(url, path, clients[index], length=length, mode="mix", index_base=index)
        for index in range(8, 16)
    ]

    # ...and 8 threads in this process.
    def thread_client(index: int) -> upload_worker.Stats:
        stats = upload_worker.Stats()
        deadline = time.monotonic() + 90
        for position, (start, stop) in enumerate(clients[index]):
            upload_worker.upload_segment(
                url,
                start,
                memoryview(data)[start:stop],
                length,
                method=upload_worker.method_for(position + index, "mix"),
                deadline=deadline,
                stats=stats,
            )
        return stats

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(thread_client, index) for index in range(8)]
            thread_stats = [future.result() for future in futures]
        summaries = finish_workers(processes, timeout=90)
    finally:
        kill_processes(processes)

    uploaded = sum(stats.segments for stats in thread_stats) + sum(int(s["segments"]) for s in summaries)  # type: ignore[call-overload]
    assert uploaded == len(segments)
    # Disjoint segments never conflict: nothing should have needed a retry.
    retries = [stats.log for stats in thread_stats if stats.retries] + [
        s["log"] for s in summaries if s["retries"]
    ]
    assert not retries, f"disjoint writes were retried: {retries}"
    assert_complete(server, url, sha, length)


# 2. Two clients race for the same range ------------------------------------------------------


def test_race_for_one_range_has_exactly_one_winner(gunicorn_server: GunicornServer) -> None:
    server = gunicorn_server
    rounds = 3
    size = 8 * MiB
    rate = 8 * MiB  # bytes/s: each body takes about a second, so the two overlap in time
    rng = random.Random(2)
    for round_number in range(rounds):
        url = server.allocate(size)
        bodies = [rng.randbytes(size), rng.randbytes(size)]
        # Round 0: PATCH vs PATCH; then PATCH vs PUT, PUT vs PATCH.
        methods = [("patch", "patch"), ("patch", "put"), ("put", "patch")][round_number % 3]
        barrier = threading.Barrier(2)

        def send(url: str, body: bytes, method: str, barrier: threading.Barrier) -> Reply:
            barrier.wait(timeout=10)
            sender = server.patch_segment if method == "patch" else server.put_segment
            return sender(url, 0, body, size, rate=rate)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(send, url, bodies[which], methods[which], barrier) for which in (0, 1)]
            replies = [future.result() for future in futures]
        context = f"round {round_number} {methods}: " + " | ".join(r.describe() for r in replies)

        winners = [index for index, reply in enumerate(replies) if reply.ok]
        assert len(winners) == 1, f"expected exactly one 2xx; {context}; {server.head(url)}"
        winner = winners[0]
        loser = 1 - winner
        first = replies[loser]
        assert first.status == 409, context
        if first.retry_after is None:
            assert problem_type(first).endswith("content-mismatch"), context
        else:
            assert problem_type(first).endswith("write-in-progress") or first.problem is None, context

        # Retrying the loser ends in 409 content-mismatch (no Retry-After), nothing applied.
        deadline = time.monotonic() + 20
        retry = first
        while retry.retry_after is not None:
            assert time.monotonic() < deadline, f"loser never saw content-mismatch: {retry.describe()}"
            time.sleep(min(retry.retry_after, 3))
            sender = server.patch_segment if methods[loser] == "patch" else server.put_segment
            retry = sender(url, 0, bodies[loser], size)
            assert retry.status == 409, f"{context}; loser retry → {retry.describe()}"
        assert problem_type(retry).endswith("content-mismatch"), retry.describe()
        print(f"{context}; loser finally: {retry.status} {problem_type(retry)}")
        assert (retry.header("Content-Type") or "").startswith("application/problem+json"), retry.describe()

        # The stored bytes are the winner's, never a mix.
        expected = bodies[winner]
        response = server.get_range(url, 0, size - 1)
        assert response.status_code in (200, 206), (response.status_code, response.text[:300])
        assert response.content == expected, f"range 0-{size - 1} is not the winner's bytes; {context}"
        middle = server.get_range(url, 3 * MiB + 17, 5 * MiB + 3)
        assert middle.status_code == 206, (middle.status_code, dict(middle.headers))
        assert middle.content == expected[3 * MiB + 17 : 5 * MiB + 4]
        assert_complete(server, url, hashlib.sha256(expected).hexdigest(), size)


# 3. Client disconnects in the middle of a part -----------------------------------------------


def test_disconnect_mid_part_commits_received_prefix_then_resumes(
    gunicorn_server: GunicornServer, source_64m: tuple[Path, bytes, str]
) -> None:
    server = gunicorn_server
    _, source, _ = source_64m
    length = 12 * MiB
    data = source[:length]
    part_size = 8 * MiB
    url = server.allocate(length)
    host, port, path = upload_worker.split_url(url)

    prefix = upload_worker.byterange_prefix(0, part_size - 1, length)
    head_block = (
        f"PATCH {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: message/byterange\r\n"
        f"Content-Length: {len(prefix) + part_size}\r\n"
        "\r\n"
    ).encode("ascii")
    cut = 3 * MiB
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head_block + prefix)
        for start in range(0, cut, 64 * 1024):
            sock.sendall(data[start : min(start + 64 * 1024, cut)])
        time.sleep(0.2)  # let the server read what was sent before the FIN
    # The socket is closed: the server sees a short body.

    deadline = time.monotonic() + 10
    state = server.head(url)
    while not state.ranges and time.monotonic() < deadline:
        time.sleep(0.1)
        state = server.head(url)
    print("after disconnect:", state)
    assert state.status == 200, state
    assert state.ranges, f"nothing committed after an interrupted persist-mode PATCH: {state}"
    assert len(state.ranges) == 1 and state.ranges[0][0] == 0, state
    committed = state.ranges[0][1] + 1
    assert 0 < committed <= cut, f"committed prefix {committed} not within (0, {cut}]: {state}"
    assert state.offset == committed, state
    assert state.complete is False, state
    got = server.get_range(url, 0, committed - 1)
    assert got.status_code == 206, (got.status_code, dict(got.headers))
    assert got.content == data[:committed], "the committed prefix is not the bytes that were sent"

    # Resume: only the rest of the interrupted part, then the rest of the file.
    reply = server.patch_segment(url, committed, data[committed:part_size], length)
    assert reply.ok, reply.describe()
    reply = server.put_segment(url, part_size, data[part_size:], length)
    assert reply.ok, reply.describe()
    assert_complete(server, url, hashlib.sha256(data).hexdigest(), length)


# 4. kill -9 of the whole server in the middle of an upload -----------------------------------


def test_kill_9_mid_upload_then_resume_missing_ranges(
    gunicorn_server: GunicornServer, source_64m: tuple[Path, bytes, str]
) -> None:
    server = gunicorn_server
    path, data, sha = source_64m
    length = len(data)
    url = server.allocate(length)

    segments = split_range(0, length, 2 * MiB)
    random.Random(4).shuffle(segments)
    uploaders = 4
    # 2 MiB/s per request: each 2 MiB segment takes about a second, 8 of them per uploader.
    processes = [
        server.spawn_worker(
            url, path, segments[index::uploaders], length=length, rate=2 * MiB, index_base=index
        )
        for index in range(uploaders)
    ]
    try:
        deadline = time.monotonic() + 30
        state = server.head(url)
        while state.committed_bytes() < 12 * MiB:
            assert time.monotonic() < deadline, f"upload made no progress: {state}"
            assert all(p.poll() is None for p in processes), "an uploader ended early"
            time.sleep(0.1)
            state = server.head(url)
        # The uploaders move in step (same segment size and rate), so the threshold is crossed
        # right after a round of commits. Kill in the middle of the next round instead, once the
        # in-flight requests have their reservations (taken after the first 1 MiB, ~0.5 s).
        time.sleep(0.75)
        before = server.head(url)
        assert before.complete is False, f"upload finished before the kill; slow it down: {before}"
        killed = server.kill_workers_hard()
        killed_at = time.monotonic()
    finally:
        kill_processes(processes)
    print(f"killed {killed} with {before.committed_bytes()} bytes committed:", before)

    server.restart()
    print(f"restarted {time.monotonic() - killed_at:.2f}s after the kill")
    after = server.head(url)
    print("after restart:", after)
    assert after.status == 200, after
    assert after.length == length, after
    assert after.complete is False, after
    # Everything committed before the kill is still committed.
    for first, last in before.ranges:
        assert any(a <= first and last <= b for a, b in after.ranges), (
            f"range {first}-{last} was committed before the kill but not after; {before} / {after}"
        )
    # No extent claims bytes that are missing: every committed range reads back as the source.
    for first, last in after.ranges:
        for start, stop in split_range(first, last + 1, 8 * MiB):
            response = server.get_range(url, start, stop - 1)
            assert response.status_code == 206, (start, stop, response.status_code, response.text[:300])
            assert response.content == data[start:stop], (
                f"committed bytes {start}-{stop - 1} differ from the source after kill -9; {after}"
            )

    # Resume only what is missing. Writers killed mid-request may still hold their leases (up to
    # 2 s): send the segments they were probably writing (each uploader's first segment not
    # committed before the kill) first, so the 409 Retry-After path is exercised.
    missing = [piece for gap in after.missing() for piece in split_range(*gap, 2 * MiB)]
    committed_before = {(first, last + 1) for first, last in before.ranges}

    def covered_before(segment: tuple[int, int]) -> bool:
        return any(a <= segment[0] and segment[1] <= b for a, b in committed_before)

    in_flight = []
    for index in range(uploaders):
        pending = [segment for segment in segments[index::uploaders] if not covered_before(segment)]
        if pending and pending[0] in missing:
            in_flight.append(pending[0])
    missing = in_flight + [piece for piece in missing if piece not in in_flight]
    assert sum(stop - start for start, stop in missing) == length - after.committed_bytes()
    stats = upload_worker.Stats()
    lock = threading.Lock()

    def resume(index_piece: tuple[int, tuple[int, int]]) -> None:
        index, (start, stop) = index_piece
        local = upload_worker.Stats()
        upload_worker.upload_segment(
            url,
            start,
            memoryview(data)[start:stop],
            length,
            method=upload_worker.method_for(index, "mix"),
            deadline=time.monotonic() + 60,
            stats=local,
        )
        with lock:
            stats.attempts += local.attempts
            stats.retries += local.retries
            stats.log.extend(local.log)
            for key, count in local.statuses.items():
                stats.statuses[key] = stats.statuses.get(key, 0) + count

    print(f"resuming {time.monotonic() - killed_at:.2f}s after the kill; probably in flight: {in_flight}")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(resume, enumerate(missing)))
    print(f"resumed {len(missing)} pieces: statuses={stats.statuses} retries={stats.retries}")
    for line in stats.log[:8]:
        print("  ", line[:240])
    assert_complete(server, url, sha, length)


# 5. HEAD does not wait for writers -----------------------------------------------------------


def test_head_is_fast_while_a_slow_patch_streams(
    gunicorn_server: GunicornServer, source_64m: tuple[Path, bytes, str]
) -> None:
    server = gunicorn_server
    _, source, _ = source_64m
    length = 8 * MiB
    data = source[:length]
    url = server.allocate(length)
    slow_size = 4 * MiB

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The first 1 MiB goes at once (the server reserves the range when the part's field block
        # arrives, in its first read), then 3 MiB at 0.6 MiB/s: it streams for about 5 s.
        slow = pool.submit(
            server.patch_segment, url, 0, data[:slow_size], length, rate=0.6 * MiB, burst=MiB + 64 * 1024
        )
        # Let the slow writer take its reservation first: a probe that got there before it would
        # rightly win, and the slow PATCH would then be the one refused with 409.
        time.sleep(1.0)
        # Wait until the slow writer holds its reservation: an overlapping write is then refused
        # at once with Retry-After. The probe sends identical bytes, so an early success is harmless.
        deadline = time.monotonic() + 3
        while True:
            overlap = server.put_segment(url, 3 * MiB, data[3 * MiB : 3 * MiB + 1], length)
            if overlap.status == 409 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert overlap.status == 409 and overlap.retry_after is not None, overlap.describe()
        timings = []
        for _ in range(10):
            state = server.head(url)
            assert state.status == 200, state
            timings.append(state.seconds)
            time.sleep(0.1)
        # A disjoint write goes through while the slow one streams.
        started = time.monotonic()
        disjoint = server.put_segment(url, slow_size, data[slow_size:], length)
        disjoint_seconds = time.monotonic() - started
        still_streaming = not slow.done()
        reply = slow.result(timeout=60)
    shown = [round(seconds, 4) for seconds in timings]
    print(f"HEAD timings while streaming: {shown}; disjoint PUT {disjoint_seconds:.3f}s")
    assert still_streaming, "the slow PATCH finished before the checks; the test proved nothing"
    assert max(timings) < 1.0, f"HEAD waited for the writer: {timings}"
    assert disjoint.ok, disjoint.describe()
    assert reply.ok, reply.describe()
    assert_complete(server, url, hashlib.sha256(data).hexdigest(), length)


# 6. A writer that outlives its lease ----------------------------------------------------------


def _read_raw_response(sock: socket.socket) -> str:
    """The status line and fields of a response on a raw socket ('' when none came)."""
    sock.settimeout(10)
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:
        pass
    return received.split(b"\r\n\r\n")[0].decode("latin-1")


def test_writer_that_outlives_its_lease_never_overwrites_committed_bytes(
    gunicorn_server: GunicornServer,
) -> None:
    """A slow but live writer A stalls longer than the lease; B then writes the same range.

    Either B is refused (A is still live) or B wins and A's late bytes are refused; in no case
    may the stored bytes be a mix, or differ from the Repr-Digest of the complete resource.
    """
    server = gunicorn_server
    size = 2 * MiB
    rng = random.Random(6)
    body_a, body_b = rng.randbytes(size), rng.randbytes(size)
    url = server.allocate(size)
    host, port, path = upload_worker.split_url(url)
    prefix = upload_worker.byterange_prefix(0, size - 1, size)
    first = MiB + 4096  # enough for the server's first 1 MiB read: A reserves [0, 2 MiB) and writes
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: message/byterange\r\nContent-Length: {len(prefix) + size}\r\n\r\n"
            ).encode("ascii")
            + prefix
            + body_a[:first]
        )
        time.sleep(LEASE_SECONDS + 1)  # A stalls longer than its lease, connection still open
        reply_b = server.put_segment(url, 0, body_b, size)
        try:
            sock.sendall(body_a[first:])
        except OSError:
            pass
        response_a = _read_raw_response(sock)
    status_a = response_a.split(" ", 2)[1] if response_a.count(" ") >= 2 else "none"
    state = server.head(url)
    context = (
        f"A (stalled PATCH) → {status_a}; B (PUT after A's lease ran out) → {reply_b.describe()}; {state}"
    )
    print(context)

    response = server.get(url)
    assert response.status_code == 200, f"{response.status_code}; {context}"
    stored = response.content
    digest = repr_digest(hashlib.sha256(stored).hexdigest())
    assert response.headers.get("Repr-Digest") == digest, (
        f"GET body does not match the resource's Repr-Digest ({response.headers.get('Repr-Digest')} vs "
        f"actual {digest}); {context}"
    )
    if reply_b.ok:
        assert stored == body_b, f"B committed but the stored bytes are not B's; {context}"
    else:
        assert reply_b.status == 409, context
        assert stored == body_a, f"B was refused but the stored bytes are not A's; {context}"


def test_health_endpoint_answers_from_every_worker(gunicorn_server: GunicornServer) -> None:
    for _ in range(20):  # new connections spread over the workers; each probes its own pool
        response = requests.get(gunicorn_server.base + "/healthz", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "pass"
        assert response.headers["Content-Type"] == "application/health+json"
    assert requests.head(gunicorn_server.base + "/healthz", timeout=10).status_code == 200
