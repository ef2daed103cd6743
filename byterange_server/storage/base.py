"""The storage seam: where the bytes of a resource live, and nothing else.

Theory of operation
-------------------
A backend stores the bytes of each *storage key* (one resource generation), written at
absolute offsets, in any order, by any number of writers at once. The service drives it like
this for every write request it accepts::

    writer = storage.begin_write(key, reservation_id, block_size)
    writer.write_at(offset, chunk)    # as many times as the body needs
    segments = writer.flush()         # now the bytes survive a crash
    # only now: INSERT the extent rows that claim them (and the segments) and COMMIT

Two kinds of backend fit behind this:

- **files** (:attr:`StorageBackend.uses_segments` False: local, memory): one mutable object
  per key holds every byte at its offset. ``write_at`` is a positional write, ``flush`` an
  ``fdatasync`` that returns no segments, and reads open the object (:meth:`open_read`).
- **object stores** (True: s3.py), which cannot write in place: each write stores its bytes in
  new objects that are never overwritten, and ``flush`` returns the :class:`Segment` s
  (resource range -> object, offset) the service commits with the extents. Reads get those
  segments back from the service (a loader: storage never reads SQL), completion
  :meth:`assembles <StorageBackend.assemble>` them into one object, and what is no longer
  referenced is removed by :meth:`StorageBackend.collect`.

**Storage keys.** A resource's row names its object's key. An id that can be created more
than once -- derived from a signed creation URL, which creates its resource again after a
DELETE -- gets a new *generation* at each creation, and its key is the id, a dot and that
generation (:func:`generation_key`): a writer that reserved in one generation can only ever
touch that generation's bytes, never a later one's. A random id is created once, so its key is
the bare id (as for every resource created before generations).

**Durability invariant.** Bytes are written and then flushed (:meth:`BlockWriter.flush`,
:meth:`StoredObject.sync` for files) *before* the extent row that claims them is committed. A
crash can therefore leave bytes that no extent claims (harmless: they are rewritten or expire
with the resource), but never a committed extent whose bytes are missing.
:meth:`StorageBackend.create` is durable on return for the same reason: the resource row that
points at the object is committed after it.

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

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol
from typing import runtime_checkable

from ..errors import StorageError

__all__ = [
    "BlockWriter",
    "FileBackend",
    "InvalidResourceIdError",
    "PositionalWriter",
    "Segment",
    "SegmentLoader",
    "fixed_segments",
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


class BufferedReader(ClosingMixin):
    """A read-only StoredObject built on :meth:`readinto_at` (the composed view of a tus final, an
    object store's pieces): :meth:`read_at` is what it fills, copied once."""

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:  # pragma: no cover
        raise NotImplementedError

    def read_at(self, offset: int, size: int) -> bytes:
        if size < 0:
            raise ValueError(f"negative size: {size}")
        buffer = bytearray(size)
        count = self.readinto_at(offset, buffer)
        return bytes(buffer) if count == size else bytes(buffer[:count])


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


@dataclasses.dataclass(frozen=True)
class Segment:
    """Bytes ``[start, stop)`` of a resource are bytes ``[object_offset, object_offset + stop -
    start)`` of the stored object ``object_key`` (object stores only)."""

    start: int
    stop: int
    object_key: str
    object_offset: int = 0
    #: CRC-32 of the piece as stored, None when unknown (an assembled object).
    checksum: int | None = None

    @property
    def length(self) -> int:
        return self.stop - self.start


#: How a reader gets segments: ``loader(at)`` returns the first segments that end after ``at``,
#: in order (the one holding ``at`` first). The service reads them from SQL.
SegmentLoader = Callable[[int], Sequence[Segment]]


def fixed_segments(found: Sequence[Segment]) -> SegmentLoader:
    """A loader over segments already in hand."""
    ordered = sorted(found, key=lambda segment: segment.start)
    return lambda at: [segment for segment in ordered if segment.stop > at]


@runtime_checkable
class BlockWriter(Protocol):
    """The bytes one write request stores; see the module docstring."""

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        """Take all of ``data`` at ``offset`` (absolute); durable only after :meth:`flush`.

        :returns: ``len(data)``.
        :raises StorageError: if storing failed (an object store's earlier background store of
            a full block failed); nothing of this writer may be committed then.
        """
        ...

    def flush(self) -> list[Segment]:
        """Make every byte taken so far durable; the segments stored since the last flush
        (always empty for files).

        :raises StorageError: if the bytes could not be made durable: treat as not written.
        """
        ...

    def close(self) -> None:
        """Release buffers and handles, waiting for any store still in flight. Idempotent;
        does not flush."""
        ...


class PositionalWriter:
    """The :class:`BlockWriter` of a file backend: positional writes into the one object of
    its key, an ``fdatasync`` (``sync``) on flush when anything was written since the last."""

    def __init__(self, stored: StoredObject) -> None:
        self._stored = stored
        self._dirty = False

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        self._dirty = True
        return self._stored.write_at(offset, data)

    def flush(self) -> list[Segment]:
        if self._dirty:
            self._stored.sync()
            self._dirty = False
        return []

    def close(self) -> None:
        self._stored.close()


@runtime_checkable
class StorageBackend(Protocol):
    """Stores, reads and deletes the bytes of storage keys (see the module docstring).

    Implementations must be safe to share between threads, and between processes over the
    same underlying store. Every method validates the key first (:func:`validate_storage_key`).
    """

    #: Whether reads need the segments writes returned (object stores), or open the key's one
    #: object (files).
    uses_segments: bool

    def block_size(self, length: int | None) -> int | None:
        """The block grid for a resource of ``length`` bytes (None: not known yet), stored in its
        row at allocation, or None when the backend has none (files)."""
        ...

    def create(self, key: str) -> None:
        """Create an empty object, durably (for local files: the file and its directory entry
        are fsynced) before returning; nothing to do for an object store.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageObjectExistsError: if the object already exists.
        :raises StorageError: if it could not be created.
        """
        ...

    def begin_write(self, key: str, writer_id: str, block_size: int | None) -> BlockWriter:
        """A writer for one write request; ``writer_id`` (its first reservation) names the new
        objects of an object store, ``block_size`` is the resource's grid.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageObjectMissingError: a file backend's object is gone (deleted meanwhile).
        :raises StorageError: if it could not be opened.
        """
        ...

    def open_read(self, key: str, segments: SegmentLoader | None = None) -> StoredObject:
        """A read-only handle on the bytes of ``key``: for an object store, those the segments
        that ``segments`` loads map out (only committed bytes are ever read).

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageObjectMissingError: if there is no such object (files).
        :raises StorageError: if it could not be opened.
        """
        ...

    def assemble(
        self, key: str, segments: Sequence[Segment], length: int, block_size: int, attempt: str
    ) -> Segment:
        """Object stores: join ``segments`` (covering ``[0, length)``) into one new object
        named by ``attempt``; returns its segment ``(0, length)``. Files never need it.

        :raises StorageError: if that failed (nothing of the attempt is left but garbage under
            its scope, ``assembly_scope(attempt)``).
        """
        ...

    def assembly_scope(self, attempt: str) -> str:
        """The :meth:`collect` scope of an assembly attempt's objects."""
        ...

    def write_scope(self, writer_id: str) -> str:
        """The :meth:`collect` scope of the objects one writer stores."""
        ...

    def collect(self, key: str, scope: str, referenced: Callable[[list[str]], set[str]] | None) -> int:
        """Delete the objects of ``key`` under ``scope`` (empty: all of them), except, when
        ``referenced`` is given, those it names (it is asked page by page); abort unfinished
        multipart uploads there. Idempotent. Returns how many objects went. Files: the empty
        scope deletes the object, any other scope holds nothing.

        :raises StorageError: if that could not be done (the garbage row stays for next time).
        """
        ...

    def delete(self, key: str) -> None:
        """Remove every byte of ``key``, durably. Idempotent: a missing object is not an error.

        Handles already open keep working on the removed object (POSIX ``unlink`` semantics)
        on file backends.

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageError: if it could not be removed.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether the object of ``key`` exists (an object store: whether anything of it does).

        :raises InvalidResourceIdError: (400) before touching storage.
        :raises StorageError: if that could not be determined.
        """
        ...

    def check(self) -> None:
        """Health check: return if the store can be used right now (files: create, write,
        sync and delete a probe; an object store: a cheap request to the bucket).

        :raises StorageError: if it cannot.
        """
        ...


class FileBackend:
    """What the file backends (one mutable object per key) share of :class:`StorageBackend`;
    they add ``create``, ``open``, ``delete``, ``exists`` and ``check``."""

    uses_segments = False

    def open(self, key: str) -> StoredObject:  # pragma: no cover - overridden
        raise NotImplementedError

    def delete(self, key: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def block_size(self, length: int | None) -> int | None:
        return None

    def begin_write(self, key: str, writer_id: str, block_size: int | None) -> BlockWriter:
        return PositionalWriter(self.open(key))

    def open_read(self, key: str, segments: SegmentLoader | None = None) -> StoredObject:
        return self.open(key)

    def assemble(
        self, key: str, segments: Sequence[Segment], length: int, block_size: int, attempt: str
    ) -> Segment:
        raise StorageError("Files are never assembled: their bytes are one object already.")

    def assembly_scope(self, attempt: str) -> str:
        return f"whole/{attempt}"

    def write_scope(self, writer_id: str) -> str:
        return f"w/{writer_id}"

    def collect(self, key: str, scope: str, referenced: Callable[[list[str]], set[str]] | None) -> int:
        if scope or referenced is not None:
            return 0  # a file has no parts: a write's or an assembly's garbage is never stored
        self.delete(key)
        return 1
