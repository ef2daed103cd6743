"""A worker recovers by itself once an SQLite database that went read-only is writable again.

SQLite shares one memory-mapped index of the WAL (the ``-shm`` file) among all connections of a
process. When the file cannot be written (here: ``chattr +i``, as an operator's mistake or a
full or remounted volume would do), a connection opened meanwhile falls back to a read-only
mapping, and so does every later connection of that process while any of them stays open. A
worker whose pool kept them answered 503 until it was restarted (an audit saw 90 s). A worker
that had the index mapped writable when the file became immutable dies of SIGBUS on its next
write to it; gunicorn replaces it, and the replacement must recover the same way.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from ..support.immutable import chattr_works
from ..support.immutable import immutable
from .conftest import GunicornServer
from .conftest import running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _post(server: GunicornServer) -> int:
    try:
        response = requests.post(server.url, headers={"Upload-Length": "10"}, timeout=10)
    except requests.ConnectionError:
        return 0  # the worker died (SIGBUS) with this request in flight
    return response.status_code


def test_workers_write_again_once_the_database_is_writable(sqlite_template: Path, tmp_path: Path) -> None:
    if not chattr_works(tmp_path):
        pytest.skip("chattr +i is not permitted here (needs root and ext4/xfs)")
    db_file = tmp_path / "byterange.sqlite3"
    shutil.copyfile(sqlite_template, db_file)
    database_url = f"sqlite:///{db_file}"
    # One worker: every request meets the same process, so its recovery is what is measured.
    with running(GunicornServer(database_url, tmp_path / "server", workers=1, threads=4)) as server:
        created = server.allocate(10)
        shm = db_file.with_name(db_file.name + "-shm")
        assert shm.exists()
        with immutable(shm):
            during = [_post(server) for _ in range(4)]
            # Nothing claims success while the index cannot be written.
            assert 201 not in during, during
            time.sleep(1.5)  # a replaced worker boots while the file is still immutable
            during += [_post(server) for _ in range(4)]
            assert 201 not in during, during
        deadline = time.monotonic() + 20
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses.append(_post(server))
            if statuses[-5:] == [201] * 5:
                break
            time.sleep(0.2)
        assert statuses[-5:] == [201] * 5, f"still failing after the file became writable: {statuses[-20:]}"
        # What was created before is still there.
        assert requests.head(created, timeout=10).status_code == 200
