"""The storage seam: where the bytes of a resource live, and nothing else.

Theory of operation
-------------------
A backend stores one object per *storage key*: a byte sequence written at absolute offsets, in
any order, by any number of writers at once. Bytes never written (holes) read as zeros. The
service drives it like this for every segment it accepts::

    with storage.open(key) as obj:
        obj.write_at(offset, chunk)   # as many times as the body needs
        obj.sync()                    # now the bytes survive a crash
    # only now: INSERT the extent row that claims [offset, offset + n) and COMMIT

**Storage keys.** A resource's row names its object's key. An id that can be created more
than once -- derived from a signed creation URL, which creates its resource again after a
DELETE -- gets a new *generation* at each creation, and its key is the id, a dot and that
generation (:func:`generation_key`): a writer that reserved in one generation can only ever
touch that generation's bytes, never a later one's. A random id is created once, so its key is
the bare id (as for every resource created before generations).

**Durability invariant.** Bytes are written and then :meth:`StoredObject.sync`-ed *before* the
extent row that claims them is committed. A crash can therefore leave bytes that no extent
claims (harmless: they are rewritten or expire with the resource), but never a committed extent
whose bytes are missing. :meth:`StorageBackend.create` is durable on return for the same reason:
the resource row that points at the object is committed after it.

**What storage does not do.** It never decides what is committed -- the extent table in SQL is
the only truth, and a byte is served only if an extent claims it -- and it never serves anything
itself. It knows nothing of HTTP or SQL: it takes storage keys and offsets, and raises
:class:`~byterange_server.errors.StorageError` (wrapping the ``OSError`` or client error it
caught, with ``raise ... from exc``). Error details reach clients, so they never contain a
filesystem path.

**Concurrency.** Writers of disjoint ranges need no lock from storage: the service reserves a
range before writing it, and positional writes to disjoint ranges do not interfere, even through
different :class:`StoredObject` handles of the same object, in different processes.

**Keys** are checked by :func:`validate_storage_key` before a backend touches anything, so a
key can be used as a file name or an object key without escaping. Client-supplied resource ids
are checked, more strictly, by :func:`validate_resource_id` (no dot: an id is never a key of
another resource's generation).
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Protocol
from typing import runtime_checkable

from ..errors import StorageError

__all__ = [
    "InvalidResourceIdError",
    "RESOURCE_ID_PATTERN",
    "StorageBackend",
    "StorageError",
    "StorageObjectExistsError",
    "StorageObjectMissingError",
    "STORAGE_KEY_PATTERN",
    "StoredObject",
    "generation_key",
    "validate_resource_id",
    "validate_storage_key",
]

#: What a resource id may look like: URL-safe base64 characters, 16 to 64 of them. No dots or
#: separators, so an id is always a safe path component and object key.
RESOURCE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: What a storage key may look like: a resource id, optionally followed by a dot and a
#: generation of 1 to 32 of the same characters. Still a safe path component: it never starts
#: with a dot and holds no separator.
STORAGE_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}(?:\.[A-Za-z0-9_-]{1,32})?")


class InvalidResourceIdError(StorageError):
    """The resource id is not of the form :data:`RESOURCE_ID_PATTERN`; nothing was touched."""

    status = 400
    code = "invalid-resource-id"
    title = "Invalid resource id"


class StorageObjectMissingError(StorageError):
    """The object of a resource is not in storage.

    A 500: the service looks the resource up in SQL first, so a row without its object means
    lost data, not a client mistake.
    """

    code = "storage-object-missing"
    title = "Stored object is missing"


class StorageObjectExistsError(StorageError):
    """:meth:`StorageBackend.create` found an object already there (keys are random: a bug)."""

    code = "storage-object-exists"
    title = "Stored object already exists"


def validate_resource_id(resource_id: str) -> str:
    """Return ``resource_id`` if it matches :data:`RESOURCE_ID_PATTERN`.

    Every backend method calls this first, so a hostile id (``../etc``, ``a/b``, NUL bytes)
    never reaches the filesystem or an object store.

    :raises InvalidResourceIdError: (400) for anything else, including non-strings.
    """
    # fullmatch, not match + "$": "$" would accept a trailing newline.
    if not isinstance(resource_id, str) or RESOURCE_ID_PATTERN.fullmatch(resource_id) is None:
        # The id is not echoed back: it may be arbitrary bytes.
        raise InvalidResourceIdError(
            "A resource id is 16 to 64 characters from A-Z, a-z, 0-9, '_' and '-'."
        )
    return resource_id


def validate_storage_key(key: str) -> str:
    """Return ``key`` if it matches :data:`STORAGE_KEY_PATTERN`; every backend method calls
    this first.

    :raises InvalidResourceIdError: (400) for anything else, including non-strings.
    """
    if not isinstance(key, str) or STORAGE_KEY_PATTERN.fullmatch(key) is None:
        raise InvalidResourceIdError(
            "A storage key is a resource id, optionally followed by '.' and 1 to 32 characters "
            "from A-Z, a-z, 0-9, '_' and '-'."
        )
    return key


def generation_key(resource_id: str, generation: str) -> str:
    """The storage key of one generation of a resource.

    :raises InvalidResourceIdError: (400) if the result is not a valid key.
    """
    return validate_storage_key(f"{validate_resource_id(resource_id)}.{generation}")


class ClosingMixin:
    """``with stored:`` closes the object; shared by the backends' StoredObject classes."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@runtime_checkable
class StoredObject(Protocol):
    """An open handle on the object of one resource; a context manager that closes it.

    Offsets are absolute. Methods other than :meth:`close` raise ``ValueError`` once closed.
    """

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        """Write all of ``data`` at ``offset``, growing the object (with a hole) if needed.

        Loops over short writes: on return every byte was handed to storage, but is durable
        only after :meth:`sync`.

        :returns: ``len(data)`` in bytes.
        :raises ValueError: for a negative offset.
        :raises StorageError: if the write failed; a prefix may have been written.
        """
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; holes read as zeros.

        Short only where the written data ends (empty at or past it). ``size`` is the caller's
        bound on memory: read large ranges in chunks.

        :raises ValueError: for a negative offset or size.
        :raises StorageError: if the read failed.
        """
        ...

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` from ``offset``, as :meth:`read_at` without the copy.

        :returns: bytes read; fewer than ``len(buffer)`` only where the written data ends.
        :raises ValueError: for a negative offset.
        :raises StorageError: if the read failed.
        """
        ...

    def sync(self) -> None:
        """Make every write to this object so far durable (``fdatasync`` for local files).

        Covers writes made through any handle of the object, not only this one.

        :raises StorageError: if the data could not be made durable: treat as not written.
        """
        ...

    def fileno(self) -> int | None:
        """The OS file descriptor behind this object, for ``sendfile``; ``None`` if none."""
        ...

    def close(self) -> None:
        """Release the handle. Idempotent. Does not sync."""
        ...

    def __enter__(self) -> StoredObject: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class StorageBackend(Protocol):
    """Creates, opens and deletes stored objects, by storage key (see the module docstring).

    Implementations must be safe to share between threads, and between processes over the
    same underlying store. Every method validates the key first (:func:`validate_storage_key`).
    """

    def create(self, key: str) -> None:
        """Create an empty object, durably (for local files: the file and its directory entry
        are fsynced) before returning.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageObjectExistsError: if the object already exists.
        :raises StorageError: if it could not be created.
        """
        ...

    def open(self, key: str) -> StoredObject:
        """Open the object of ``key`` for reading and writing.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageObjectMissingError: if there is no such object.
        :raises StorageError: if it could not be opened.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the object, durably. Idempotent: a missing object is not an error.

        Handles already open keep working on the removed object (POSIX ``unlink`` semantics).

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageError: if it could not be removed.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether the object of ``key`` exists.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageError: if that could not be determined.
        """
        ...

    def check(self) -> None:
        """Health check: return if the store can create, write, sync and delete objects.

        :raises StorageError: if it cannot.
        """
        ...
