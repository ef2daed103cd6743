"""An in-memory fake of :class:`~byterange_server.storage.base.StorageBackend`, for tests only.

It keeps the real contract, so tests of the service can rely on it: keys are validated, objects
are sparse (64 KiB pages allocated on first write; holes read as zeros, so a write at a
terabyte offset costs one page), reads are short only at the end of the written data, and
handles stay usable after ``delete``, as with an unlinked file.

It also models durability, which a real disk cannot show in a unit test: writes become durable
only at ``sync()``, and :meth:`MemoryStorage.simulate_crash` throws away everything written
since. A service test can thus check the invariant of :mod:`~byterange_server.storage.base`
(sync before commit) by crashing right after a commit and reading back what its extents claim.

Not for production: nothing survives the process, and all objects share one lock.
"""

from __future__ import annotations

import threading

from .base import ClosingMixin
from .base import FileBackend
from .base import StorageError
from .base import StorageObjectExistsError
from .base import StorageObjectMissingError
from .base import validate_storage_key

__all__ = ["MemoryStorage", "MemoryStoredObject"]

PAGE_SIZE = 1 << 16
_ZERO_PAGE = bytes(PAGE_SIZE)


class _Blob:
    """One object: its current pages and size, and the state as of the last sync."""

    __slots__ = ("pages", "size", "dirty", "durable_pages", "durable_size")

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self.size = 0
        self.dirty: set[int] = set()
        self.durable_pages: dict[int, bytes] = {}
        self.durable_size = 0

    def write(self, offset: int, view: memoryview) -> None:
        done = 0
        while done < len(view):
            index, skip = divmod(offset + done, PAGE_SIZE)
            take = min(PAGE_SIZE - skip, len(view) - done)
            page = self.pages.get(index)
            if page is None:
                page = self.pages[index] = bytearray(PAGE_SIZE)
            page[skip : skip + take] = view[done : done + take]
            self.dirty.add(index)
            done += take
        self.size = max(self.size, offset + len(view))

    def readinto(self, offset: int, view: memoryview) -> int:
        available = max(0, min(len(view), self.size - offset))
        done = 0
        while done < available:
            index, skip = divmod(offset + done, PAGE_SIZE)
            take = min(PAGE_SIZE - skip, available - done)
            page = self.pages.get(index)
            source = _ZERO_PAGE if page is None else page
            view[done : done + take] = source[skip : skip + take]
            done += take
        return available

    def sync(self) -> None:
        for index in self.dirty:
            self.durable_pages[index] = bytes(self.pages[index])
        self.dirty.clear()
        self.durable_size = self.size

    def recovered(self) -> _Blob:
        """What a restart would find: the durable state only."""
        blob = _Blob()
        blob.pages = {index: bytearray(page) for index, page in self.durable_pages.items()}
        blob.size = self.durable_size
        blob.durable_pages = dict(self.durable_pages)
        blob.durable_size = self.durable_size
        return blob


class MemoryStoredObject(ClosingMixin):
    """A handle on one in-memory object; see :class:`MemoryStorage`."""

    def __init__(self, storage: MemoryStorage, blob: _Blob) -> None:
        self._storage = storage
        self._blob = blob
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed stored object")

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        """Write all of ``data`` at ``offset`` (durable only after :meth:`sync`).

        :raises ValueError: for a negative offset, or if closed.
        """
        self._check_open()
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(data) as source, source.cast("B") as view:
            if len(view):
                with self._storage._lock:
                    self._blob.write(offset, view)
            return len(view)

    def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; holes read as zeros.

        :raises ValueError: for a negative offset or size, or if closed.
        """
        self._check_open()
        if offset < 0 or size < 0:
            raise ValueError(f"negative offset or size: {offset}, {size}")
        with self._storage._lock:
            size = max(0, min(size, self._blob.size - offset))
        buffer = bytearray(size)
        count = self.readinto_at(offset, buffer)
        return bytes(buffer[:count])

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` from ``offset``; short only where the written data ends.

        :raises ValueError: for a negative offset, or if closed.
        """
        self._check_open()
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(buffer) as target, target.cast("B") as view:
            with self._storage._lock:
                return self._blob.readinto(offset, view)

    def sync(self) -> None:
        """Make every write to this object so far durable (survives :meth:`simulate_crash`).

        :raises ValueError: if closed.
        """
        self._check_open()
        with self._storage._lock:
            self._blob.sync()
            self._storage.sync_count += 1

    def fileno(self) -> None:
        """``None``: there is no descriptor to ``sendfile`` from."""
        self._check_open()
        return None

    def close(self) -> None:
        """Idempotent."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed


class MemoryStorage(FileBackend):
    """Objects in a dict, with the contract of a real backend (see the module docstring).

    :ivar sync_count: how many times ``sync()`` was called on any handle.
    :ivar healthy: set to ``False`` to make :meth:`check` fail.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, _Blob] = {}
        self.sync_count = 0
        self.healthy = True

    def create(self, key: str) -> None:
        """Create an empty object, durable at once.

        :raises InvalidResourceIdError: (400) for a malformed key.
        :raises StorageObjectExistsError: if it already exists.
        """
        validate_storage_key(key)
        with self._lock:
            if key in self._objects:
                raise StorageObjectExistsError()
            self._objects[key] = _Blob()

    def open(self, key: str) -> MemoryStoredObject:
        """Open a handle on the object.

        :raises InvalidResourceIdError: (400) for a malformed key.
        :raises StorageObjectMissingError: if there is no such object.
        """
        validate_storage_key(key)
        with self._lock:
            blob = self._objects.get(key)
        if blob is None:
            raise StorageObjectMissingError()
        return MemoryStoredObject(self, blob)

    def delete(self, key: str) -> None:
        """Remove the object; idempotent. Open handles keep the orphaned bytes.

        :raises InvalidResourceIdError: (400) for a malformed key.
        """
        validate_storage_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def exists(self, key: str) -> bool:
        """:raises InvalidResourceIdError: (400) for a malformed key."""
        validate_storage_key(key)
        with self._lock:
            return key in self._objects

    def check(self) -> None:
        """:raises StorageError: if :attr:`healthy` was set to ``False``."""
        if not self.healthy:
            raise StorageError("Storage is marked unhealthy.", status=503)

    def simulate_crash(self) -> None:
        """Lose every write not yet synced, as a power cut would.

        Handles opened before the crash belong to the dead process: their later writes land in
        orphaned copies and are never seen again.
        """
        with self._lock:
            self._objects = {rid: blob.recovered() for rid, blob in self._objects.items()}
