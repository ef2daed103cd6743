"""The engine drops every connection of a process that opened an SQLite database read-only.

SQLite shares the WAL's shared-memory index among all connections of one process; one opened
while the ``-shm`` file could not be written maps it read-only, and every later connection of
the process inherits that while any of them is open. These tests make the file immutable with
``chattr +i`` while another process holds the database open (so the index exists), open our
connections meanwhile, and check that writes succeed as soon as the file is writable again.
The end-to-end version (a gunicorn worker, its SIGBUS and replacement) is in
tests/e2e/test_database_recovery.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from byterange_server.db.engine import Database
from byterange_server.db.engine import DatabaseUnavailableError

from ..support.immutable import chattr
from ..support.immutable import chattr_works

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
conn.execute("INSERT INTO t VALUES (0)")
print("ready", flush=True)
sys.stdin.read()  # hold the database (and its -shm file) open until stdin closes
"""


def _insert(db: Database, value: int) -> None:
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})


def test_writes_succeed_once_the_index_is_writable_again(tmp_path: Path) -> None:
    if not chattr_works(tmp_path):
        pytest.skip("chattr +i is not permitted here (needs root and ext4/xfs)")
    path = tmp_path / "db.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        shm = path.with_name(path.name + "-shm")
        db = Database(f"sqlite:///{path}")
        chattr("+i", shm)
        try:
            # Several pooled connections, all opened while the index is read-only.
            held = [db.engine.connect() for _ in range(3)]
            for conn in held:
                conn.close()
            for value in range(3):
                with pytest.raises(DatabaseUnavailableError):
                    _insert(db, value)
        finally:
            chattr("-i", shm)
        _insert(db, 10)  # the very next transaction
        _insert(db, 11)
        with db.read() as conn:
            assert conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [0, 10, 11]
        db.dispose()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
