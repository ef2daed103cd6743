"""A full disk: a real (tiny) filesystem under the storage directory, not a patched ``pwrite``.

The storage directory is a 1 MiB tmpfs. A segment that does not fit is answered ``503`` with
``Retry-After`` (the space may come back: expiry, deletion, an operator), nothing of it is
reported committed, and once space is freed the same segment is accepted.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import GunicornServer
from .conftest import running

pytestmark = [pytest.mark.e2e]

MiB = 1024 * 1024


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


def _put(url: str, first: int, data: bytes, length: int) -> requests.Response:
    last = first + len(data) - 1
    return requests.put(
        url, data=data, headers={"Content-Range": f"bytes {first}-{last}/{length}"}, timeout=60
    )


def test_a_full_disk_is_a_503_with_retry_after_and_loses_nothing(database_url: str, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "objects", "1m") as objects:
        server = GunicornServer(
            database_url, tmp_path / "server", workers=1, extra_env={"BYTERANGE_STORAGE_DIR": str(objects)}
        )
        with running(server):
            small = server.allocate(64 * 1024)
            assert _put(small, 0, b"s" * 65536, 65536).status_code == 204

            big = server.allocate(4 * MiB)
            response = _put(big, 0, b"b" * (2 * MiB), 4 * MiB)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "30"
            problem = json.loads(response.content)
            assert problem["errno"] == "ENOSPC" and problem["type"].endswith("storage-error")
            assert str(objects) not in response.text
            # Nothing of the refused segment is claimed; what was committed before is intact.
            assert server.head(big).ranges == []
            assert requests.get(small, timeout=30).content == b"s" * 65536

            # Space comes back: the same segment, smaller than what is now free, goes through.
            assert requests.delete(small, timeout=30).status_code == 204
            assert requests.delete(big, timeout=30).status_code == 204
            again = server.allocate(512 * 1024)
            assert _put(again, 0, b"a" * (512 * 1024), 512 * 1024).status_code == 204
            assert server.head(again).ranges == [(0, 512 * 1024 - 1)]
