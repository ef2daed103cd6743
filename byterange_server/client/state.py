"""Where an upload remembers its resource URL between runs of the client.

Running the same upload command again must continue, not start over, even after the process was
killed. The only thing that has to survive is *which resource* the upload fills: the server
knows what is committed. So the store maps a key -- the file's real path, size and modification
time, and the collection URL -- to the resource URL. A file that changed (new size or mtime)
has a new key and gets a new resource; a resource the server forgot (404/410) is dropped.

It is a SQLite database in ``$BYTERANGE_STATE_DIR`` or else ``$XDG_STATE_HOME/byterange``
(``~/.local/state/byterange``): SQLite makes concurrent runs of the command safe and every
update atomic, with nothing but the standard library.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .source import FileIdentity

__all__ = ["StateStore", "UploadKey", "default_state_dir"]

#: Records untouched for this long are pruned at the next write.
RETENTION_SECONDS = 30 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    path       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    collection TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    updated    REAL    NOT NULL,
    PRIMARY KEY (path, size, mtime_ns, collection)
)
"""


def default_state_dir() -> Path:
    explicit = os.environ.get("BYTERANGE_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "byterange"


@dataclass(frozen=True)
class UploadKey:
    """One file, as it is now, uploaded to one collection."""

    file: FileIdentity
    collection: str

    def _params(self) -> tuple[str, int, int, str]:
        return (self.file.path, self.file.size, self.file.mtime_ns, self.collection)


class StateStore:
    """The resume records of uploads; safe to use from several processes at once."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_state_dir()
        self.path = self.directory / "uploads.sqlite3"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Autocommit mode; writes take their own BEGIN IMMEDIATE. The busy timeout then covers
        # every wait for another process or thread: a write that first read under a shared lock
        # and then asked for the write lock would get "database is locked" at once instead.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_SCHEMA)
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def lookup(self, key: UploadKey) -> str | None:
        """The resource URL recorded for ``key``, or ``None``."""
        with self._connect() as conn:
            try:
                row = conn.execute(
                    "SELECT url FROM uploads WHERE path = ? AND size = ? AND mtime_ns = ? AND collection = ?",
                    key._params(),
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None  # nothing was ever recorded here
                raise
        return row[0] if row else None

    def remember(self, key: UploadKey, url: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM uploads WHERE updated < ?", (time.time() - RETENTION_SECONDS,))
            conn.execute(
                "INSERT OR REPLACE INTO uploads (path, size, mtime_ns, collection, url, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*key._params(), url, time.time()),
            )

    def forget(self, key: UploadKey) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM uploads WHERE path = ? AND size = ? AND mtime_ns = ? AND collection = ?",
                key._params(),
            )
