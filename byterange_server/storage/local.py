"""One sparse file per stored object on a local (or shared POSIX) filesystem.

Layout: ``<root>/<key[:2]>/<key>``, where the key is the id, or ``<id>.<generation>`` for an id
that can be created more than once, so every generation of a resource is in the same shard.
The two-character shard directories keep any one directory small; they are created on demand
and never removed (removing one would race with a ``create`` in the same shard). Unwritten
ranges are holes, so a resource of declared length ``L`` uses disk only for the bytes that
arrived.

Writes are positional (``os.pwrite``/``os.pread``/``os.preadv``): no shared file position, so
any number of threads and processes may write disjoint ranges of one file at once, each through
its own descriptor. Durability follows :mod:`byterange_server.storage.base`: ``sync()`` is
``fdatasync``; ``create`` and ``delete`` fsync the directory that holds the entry.

Every ``OSError`` becomes a :class:`~byterange_server.errors.StorageError` here, where it
enters, with the errno name but never the path (error details reach clients).
"""

from __future__ import annotations

import errno
import os
import secrets
import warnings
from pathlib import Path

from .base import ClosingMixin
from .base import FileBackend
from .base import StorageError
from .base import StorageObjectExistsError
from .base import StorageObjectMissingError
from .base import validate_storage_key

__all__ = ["LocalSparseStorage", "LocalStoredObject"]

# Errors that may clear up without an operator (space freed by expiry, descriptors released):
# reported as 503 so clients retry the segment instead of giving up.
_TRANSIENT_ERRNOS = frozenset(
    code
    for code in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EAGAIN,
        errno.EBUSY,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.EINTR,
    )
    if code is not None
)

_SPACE_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
#: Seconds a client should wait before retrying after the disk (or a quota) was full.
_SPACE_RETRY_AFTER = 30

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def _storage_error(action: str, exc: OSError) -> StorageError:
    """Translate ``exc`` without its filename: ``str(OSError)`` includes the path."""
    name = errno.errorcode.get(exc.errno or 0, "unknown error")
    reason = os.strerror(exc.errno) if exc.errno else "unknown error"
    if exc.errno not in _TRANSIENT_ERRNOS:
        return StorageError(f"Storage could not {action}: {reason}.", extra={"errno": name}, status=500)
    # A 503 says when to come back (RFC 9110 §10.2.3): space comes back when uploads expire or
    # an operator frees it, descriptors and memory within moments.
    retry_after = _SPACE_RETRY_AFTER if exc.errno in _SPACE_ERRNOS else 1
    return StorageError(
        f"Storage could not {action}: {reason}.",
        extra={"errno": name},
        status=503,
        headers={"Retry-After": str(retry_after)},
    )


def _fdatasync(fd: int) -> None:
    # Looked up per call (not bound at import) so tests can observe it; macOS has no fdatasync.
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def _fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a file created or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStoredObject(ClosingMixin):
    """An open descriptor on one stored object's file. Not for direct construction: use
    :meth:`LocalSparseStorage.open`.

    Safe to share between threads: every operation is positional.
    """

    def __init__(self, fd: int, *, fsync: bool) -> None:
        self._fd = fd
        self._fsync = fsync

    def _live_fd(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on a closed stored object")
        return self._fd

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        """See :meth:`StoredObject.write_at <byterange_server.storage.base.StoredObject.write_at>`.

        :raises ValueError: for a negative offset, or if closed.
        :raises StorageError: if a write failed or made no progress.
        """
        fd = self._live_fd()
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        # A byte view slices without copying; cast flattens typed views (e.g. array('I')).
        with memoryview(data) as source, source.cast("B") as view:
            size = len(view)
            written = 0
            try:
                while written < size:
                    # Linux caps one write at about 2 GiB, and signals can cut one short.
                    count = os.pwrite(fd, view[written:], offset + written)
                    if count == 0:
                        raise StorageError("Storage could not write: no progress was made.")
                    written += count
            except OSError as exc:
                raise _storage_error("write", exc) from exc
        return size

    def read_at(self, offset: int, size: int) -> bytes:
        """See :meth:`StoredObject.read_at <byterange_server.storage.base.StoredObject.read_at>`.

        :raises ValueError: for a negative offset or size, or if closed.
        :raises StorageError: if the read failed.
        """
        fd = self._live_fd()
        if offset < 0 or size < 0:
            raise ValueError(f"negative offset or size: {offset}, {size}")
        chunks: list[bytes] = []
        position = offset
        remaining = size
        try:
            while remaining > 0:
                chunk = os.pread(fd, remaining, position)
                if not chunk:
                    break  # end of the written data
                chunks.append(chunk)
                position += len(chunk)
                remaining -= len(chunk)
        except OSError as exc:
            raise _storage_error("read", exc) from exc
        # The common case is one pread: hand its bytes back without another copy.
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:
        """See :meth:`StoredObject.readinto_at
        <byterange_server.storage.base.StoredObject.readinto_at>`.

        :raises ValueError: for a negative offset, or if closed.
        :raises StorageError: if the read failed.
        """
        fd = self._live_fd()
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(buffer) as target, target.cast("B") as view:
            size = len(view)
            done = 0
            try:
                while done < size:
                    if hasattr(os, "preadv"):
                        count = os.preadv(fd, [view[done:]], offset + done)
                    else:  # pragma: no cover - platforms without preadv
                        chunk = os.pread(fd, size - done, offset + done)
                        count = len(chunk)
                        view[done : done + count] = chunk
                    if count == 0:
                        break  # end of the written data
                    done += count
            except OSError as exc:
                raise _storage_error("read", exc) from exc
        return done

    def sync(self) -> None:
        """``fdatasync`` the file: every write to it so far, through any descriptor, is durable.

        A no-op when the storage was made with ``fsync=False``.

        :raises ValueError: if closed.
        :raises StorageError: if the data could not be made durable.
        """
        fd = self._live_fd()
        if not self._fsync:
            return
        try:
            _fdatasync(fd)
        except OSError as exc:
            raise _storage_error("sync", exc) from exc

    def fileno(self) -> int:
        """The file descriptor, for ``os.sendfile``.

        :raises ValueError: if closed.
        """
        return self._live_fd()

    def close(self) -> None:
        """Close the descriptor. Idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError as exc:
                raise _storage_error("close", exc) from exc

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __del__(self) -> None:
        # A leaked descriptor in a long-running server runs the process out of them; close it
        # and say so, as io.FileIO does.
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

    def __repr__(self) -> str:
        return f"<LocalStoredObject fd={self._fd}>"


class LocalSparseStorage(FileBackend):
    """Sparse files under ``root``; see the module docstring for the layout.

    Nothing is touched on construction; the root directory is created by the first
    :meth:`create` or :meth:`check`.

    :param root: directory that holds the shard directories.
    :param fsync: ``False`` skips every ``fsync``/``fdatasync``, giving up durability: only
        for tests and for benchmarks of the non-durable path, never in production.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        # Directories this instance has seen made durable (see _ensure_dir).
        self._ready_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"LocalSparseStorage(root={str(self.root)!r}, fsync={self.fsync})"

    def _path(self, key: str) -> str:
        key = validate_storage_key(key)
        return os.path.join(self.root, key[:2], key)

    def _ensure_dir(self, path: str) -> None:
        """Make sure directory ``path`` exists and its entry is durable.

        Its parent is fsynced even when another process made it: that process may not have
        synced yet, and our file must not outlive a crash that loses its directory. Done once
        per directory and process, so it costs nothing after warm-up.
        """
        if path in self._ready_dirs:
            return
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(path):
            if parent != path:
                self._ensure_dir(parent)
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                pass  # another worker won the race; we still sync its entry below
        if self.fsync:
            _fsync_dir(parent)
        self._ready_dirs.add(path)

    def create(self, key: str) -> None:
        """Create an empty file; the file and its directory entry are fsynced before returning.

        :raises InvalidResourceIdError: (400) before touching the filesystem.
        :raises StorageObjectExistsError: if the file already exists.
        :raises StorageError: if it could not be created.
        """
        path = self._path(key)
        shard = os.path.dirname(path)
        try:
            self._ensure_dir(shard)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            try:
                if self.fsync:
                    # fsync, not fdatasync: the new inode's metadata is what must persist.
                    os.fsync(fd)
            finally:
                os.close(fd)
            if self.fsync:
                _fsync_dir(shard)
        except FileExistsError as exc:
            raise StorageObjectExistsError() from exc
        except OSError as exc:
            raise _storage_error("create the object", exc) from exc

    def open(self, key: str) -> LocalStoredObject:
        """Open the file read-write; the caller closes it (use ``with``).

        :raises InvalidResourceIdError: (400) before touching the filesystem.
        :raises StorageObjectMissingError: if there is no such file.
        :raises StorageError: if it could not be opened.
        """
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise StorageObjectMissingError() from exc
        except OSError as exc:
            raise _storage_error("open the object", exc) from exc
        return LocalStoredObject(fd, fsync=self.fsync)

    def delete(self, key: str) -> None:
        """Unlink the file and fsync its directory; a missing file is not an error.

        :raises InvalidResourceIdError: (400) before touching the filesystem.
        :raises StorageError: if it could not be removed.
        """
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return  # idempotent: already gone (or its shard never existed)
        except OSError as exc:
            raise _storage_error("delete the object", exc) from exc
        if self.fsync:
            try:
                _fsync_dir(os.path.dirname(path))
            except OSError as exc:
                raise _storage_error("delete the object", exc) from exc

    def exists(self, key: str) -> bool:
        """Whether the file exists.

        :raises InvalidResourceIdError: (400) before touching the filesystem.
        :raises StorageError: if that could not be determined.
        """
        path = self._path(key)
        try:
            os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _storage_error("look up the object", exc) from exc
        return True

    def check(self) -> None:
        """Create ``root`` if needed, then create, write, sync and remove a probe file in it.

        A probe, not ``os.access``: permission bits do not tell about read-only mounts, full
        disks or root's privileges. The probe name starts with a dot, so it can never be a
        shard directory.

        :raises StorageError: if any step fails.
        """
        root = os.fspath(self.root)
        probe = os.path.join(root, f".check-{secrets.token_hex(8)}")
        try:
            self._ensure_dir(root)
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            try:
                os.pwrite(fd, b"\0", 0)
                if self.fsync:
                    _fdatasync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise _storage_error("use its root directory", exc) from exc
