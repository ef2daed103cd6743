"""Two hosts, one PostgreSQL, one object store (the session's SeaweedFS), no shared directory:
two real gunicorn servers on different ports, each with a data directory of its own.

- A host whose clock runs ten minutes ahead (tests/e2e/clock_ahead/sitecustomize.py) can
  neither take over a live writer's range on the other host nor expire its resource early:
  leases and expiry follow the database's clock (db/clock.py).
- Sixteen clients spread the segments of one 256 MiB resource over both hosts in random order;
  one host is killed with ``kill -9`` midway and the rest goes through the other: the digest is
  exact, no segment lacks its bytes, and after the sweep no object is left that no segment names.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from byterange_server import create_app
from byterange_server.db.models import resources as resources_table
from tests.s3.helpers import assert_consistent
from tests.s3.helpers import make_garbage_due
from tests.s3.helpers import stored_objects
from tests.support.pgcluster import create_database
from tests.support.pgcluster import drop_database

from .conftest import LEASE_SECONDS
from .conftest import REPO_ROOT
from .conftest import GunicornServer
from .conftest import running
from .upload_worker import put_segment

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
AHEAD_SECONDS = 600
#: A sitecustomize.py that runs the host's own clock ahead (see its docstring: why not libfaketime).
CLOCK_AHEAD = Path(__file__).resolve().with_name("clock_ahead")


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated PostgreSQL database: several hosts need a database server."""
    server = request.getfixturevalue("postgres_server")
    name = f"byterange_multihost_{next(server['counter'])}"
    yield create_database(server["base_url"], name, template=server["template"])
    drop_database(server["base_url"], name)


@pytest.fixture
def store_env(s3_server: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The settings of both hosts for the one bucket, a prefix of this test's own."""
    prefix = f"multihost/{os.urandom(6).hex()}/"
    return {
        "BYTERANGE_STORAGE": "s3",
        "BYTERANGE_S3_ENDPOINT": s3_server["endpoint"],
        "BYTERANGE_S3_BUCKET": s3_server["bucket"],
        "BYTERANGE_S3_REGION": s3_server["region"],
        "BYTERANGE_S3_PREFIX": prefix,
        "AWS_ACCESS_KEY_ID": s3_server["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3_server["secret_key"],
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def local_service(postgres_url: str, store_env: dict[str, str], data_dir: Path) -> Any:
    """A service in this process on the same database and store, to look at rows and objects."""
    settings = {name.removeprefix("BYTERANGE_"): value for name, value in store_env.items() if
                name.startswith("BYTERANGE_")}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"):
        os.environ[name] = store_env[name]
    app = create_app(
        dict(settings, DATABASE_URL=postgres_url, DATA_DIR=str(data_dir), AUTH="off", CLEANUP_INTERVAL="0",
             LEASE_SECONDS=str(LEASE_SECONDS))
    )
    return app.extensions["byterange"]


def on(server: GunicornServer, url: str) -> str:
    """The same resource URL, through ``server``."""
    return server.base + urlsplit(url).path


def server_time(server: GunicornServer) -> float:
    response = requests.options(server.url, timeout=10)
    return parsedate_to_datetime(response.headers["Date"]).timestamp()


# -- a clock that runs ahead ----------------------------------------------------------------------


def test_a_host_whose_clock_runs_ahead_takes_over_nothing_and_expires_nothing(
    postgres_url, store_env, tmp_path
) -> None:
    common = {**store_env, "BYTERANGE_EXPIRE_AFTER": "300"}
    slow = GunicornServer(postgres_url, tmp_path / "a", workers=1, threads=4, extra_env=common)
    fast = GunicornServer(
        postgres_url,
        tmp_path / "b",
        workers=1,
        threads=4,
        extra_env={
            **common,
            # Its sweeper runs every second: it would remove the resource if it judged expiry
            # by its own clock (five minutes of life, ten minutes ahead).
            "BYTERANGE_CLEANUP_INTERVAL": "1",
            "CLOCK_AHEAD_SECONDS": str(AHEAD_SECONDS),
            "PYTHONPATH": os.pathsep.join([str(CLOCK_AHEAD), str(REPO_ROOT)]),
        },
    )
    length = 4 * MiB
    data = os.urandom(length)
    with running(slow), running(fast):
        skew = server_time(fast) - server_time(slow)
        assert 9 * 60 < skew < 11 * 60, f"the fast host's clock is {skew:.0f} s ahead, not ten minutes"
        url = slow.allocate(length)
        # A live writer on the slow host: 3 MiB, the last two paced at 192 KiB/s, its range
        # reserved from the first chunk on, its lease (2 s) renewed by its host while the body
        # streams (~11 s).
        live: list[Any] = []
        writer = threading.Thread(
            target=lambda: live.append(
                put_segment(url, 0, data[: 3 * MiB], length, rate=192 * 1024, burst=1 * MiB, timeout=120)
            )
        )
        writer.start()
        try:
            time.sleep(LEASE_SECONDS + 1.5)  # past one whole lease: renewed at least once
            assert writer.is_alive(), live[0].describe()
            # The fast host sees the lease's deadline ten minutes in its past; it must not care.
            taken = put_segment(on(fast, url), MiB, data[MiB : 3 * MiB], length)
            assert taken.status == 409, taken.describe()
            assert taken.problem["type"].endswith("write-in-progress"), taken.describe()
            head = requests.head(on(fast, url), timeout=10)
            assert head.status_code in (200, 204), head.status_code  # not 410: it has not expired
        finally:
            writer.join(timeout=120)
        assert live and live[0].status in (200, 201, 204), live[0].describe()
        time.sleep(2.5)  # the fast host's sweeper has run at least once since
        cleanup = subprocess.run(
            [sys.executable, "-m", "byterange_server.cli", "cleanup"],
            cwd=REPO_ROOT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("BYTERANGE_")}, **fast._env()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cleanup.returncode == 0, cleanup.stderr
        assert "removed 0 expired" in cleanup.stdout, cleanup.stdout
        for server in (slow, fast):
            response = requests.get(on(server, url), headers={"Range": f"bytes=0-{3 * MiB - 1}"}, timeout=30)
            assert response.status_code == 206, (server.port, response.status_code)
            assert response.content == data[: 3 * MiB]


# -- 16 clients, two hosts, one killed ------------------------------------------------------------


LENGTH = 256 * MiB
SEGMENT = 4 * MiB
CLIENTS = 16


def test_sixteen_clients_two_hosts_one_killed(postgres_url, store_env, tmp_path) -> None:
    data = os.urandom(LENGTH)
    digest = hashlib.sha256(data).hexdigest()
    hosts = [
        GunicornServer(postgres_url, tmp_path / name, workers=2, threads=8, extra_env=store_env)
        for name in ("a", "b")
    ]
    survivor, victim = hosts
    assert survivor.data_dir != victim.data_dir
    segments = [(start, min(start + SEGMENT, LENGTH)) for start in range(0, LENGTH, SEGMENT)]
    rng = random.Random(13)
    rng.shuffle(segments)
    lock = threading.Lock()
    stats = {"sent": 0, "attempts": 0, "after_kill": 0, "conflicts": 0, "failed": 0}
    killed = threading.Event()

    with running(survivor), running(victim):
        url = survivor.allocate(LENGTH)

        def upload(segment: tuple[int, int]) -> None:
            start, stop = segment
            for _ in range(200):
                host = survivor if killed.is_set() else rng_choice(hosts)
                reply = put_segment(on(host, url), start, memoryview(data)[start:stop], LENGTH, timeout=120)
                with lock:
                    stats["attempts"] += 1
                    stats["sent"] += reply.sent
                    if killed.is_set():
                        stats["after_kill"] += 1
                if reply.status in (200, 201, 204):
                    return
                with lock:
                    if reply.status == 409:
                        stats["conflicts"] += 1
                    else:
                        stats["failed"] += 1
                time.sleep(min(2.0, reply.retry_after or 0.2))
            raise AssertionError(f"segment {segment} not stored after 200 attempts")

        picker = random.Random(7)
        picker_lock = threading.Lock()

        def rng_choice(choices: list[GunicornServer]) -> GunicornServer:
            with picker_lock:
                return picker.choice(choices)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(upload, segment) for segment in segments]
            finished = 0
            for future in concurrent.futures.as_completed(futures):
                future.result()
                finished += 1
                if finished == len(segments) // 2 and not killed.is_set():
                    victim.kill_workers_hard()
                    killed.set()
        upload_seconds = time.monotonic() - started
        assert killed.is_set()

        service = local_service(postgres_url, store_env, tmp_path / "inspect")
        resource_id = urlsplit(url).path.rsplit("/", 1)[1]
        state = service.state(resource_id)
        assert state.complete, state
        response, got = survivor.sha256_of(url)
        assert response.status_code == 200
        assert got == digest
        # Assembly runs after the completing request; wait for it, then sweep what it replaced
        # and what the killed host's writers left.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with service.db.read() as conn:
                assembled = conn.execute(
                    select(resources_table.c.assembled_at).where(resources_table.c.id == resource_id)
                ).scalar_one()
            if assembled is not None:
                break
            service.assemble_pending()
            time.sleep(0.5)
        assert assembled is not None, "not assembled within 120 s"
        time.sleep(LEASE_SECONDS + 0.5)  # the killed host's leases lapse
        before = len(stored_objects(service.storage))
        collected = 0
        for _ in range(3):
            make_garbage_due(service.db)
            collected += service.collect_garbage()
        assert_consistent(service.storage, service.db)
        after = stored_objects(service.storage)
        response, got = survivor.sha256_of(url)
        assert got == digest
    resent = stats["sent"] - LENGTH
    print(
        f"\nmultihost: {len(segments)} segments of {SEGMENT // MiB} MiB by {CLIENTS} clients in "
        f"{upload_seconds:.1f} s; {stats['attempts']} attempts ({stats['after_kill']} after the kill, "
        f"{stats['conflicts']} answered 409, {stats['failed']} failed); {resent / MiB:.1f} MiB re-sent; "
        f"objects before the sweep {before}, collected {collected}, left {len(after)}"
    )
    assert len(after) == 1, after  # the assembled object, nothing else
    shutil.rmtree(tmp_path / "inspect", ignore_errors=True)
