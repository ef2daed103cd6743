"""The local file an upload reads: positional reads in bounded chunks, from any thread.

Segments are read with ``os.preadv`` into a buffer each thread reuses, so many segments can be
in flight at once without a shared file position, and memory stays at one chunk per thread
however large the file is. File objects without a descriptor (``io.BytesIO``) are read under a
lock with ``seek`` + ``readinto``.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .errors import IntegrityError

__all__ = ["CHUNK_SIZE", "FileIdentity", "Source"]

#: Bytes per read (and per socket send): large enough for few system calls, small enough that
#: memory per in-flight segment stays flat.
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class FileIdentity:
    """What says a file is still the file an upload started from: its path, size and mtime."""

    path: str
    size: int
    mtime_ns: int


class Source:
    """A readable file of known size. Use :meth:`open` for a path, the constructor for a file object.

    :raises ValueError: for a file object that cannot be read at arbitrary offsets.
    """

    def __init__(self, fileobj: BinaryIO, *, name: str | None = None, close: bool = False) -> None:
        self._file = fileobj
        self._close = close
        self._lock = threading.Lock()
        self._local = threading.local()
        self.identity: FileIdentity | None = None
        try:
            self._fd: int | None = fileobj.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None
        if self._fd is not None and stat.S_ISREG(os.fstat(self._fd).st_mode):
            self.size = os.fstat(self._fd).st_size
        else:
            self._fd = None
            if not fileobj.seekable():
                raise ValueError("the upload source must be a regular file or a seekable file object")
            self.size = fileobj.seek(0, io.SEEK_END)
        self.name = name or getattr(fileobj, "name", None)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Source:
        """Open a regular file by path and record its identity (for the resume state)."""
        fileobj = open(path, "rb")  # noqa: SIM115 - the Source owns and closes it
        try:
            info = os.fstat(fileobj.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{path}: not a regular file")
            source = cls(fileobj, name=os.fspath(path), close=True)
        except BaseException:
            fileobj.close()
            raise
        source.identity = FileIdentity(os.path.realpath(path), info.st_size, info.st_mtime_ns)
        return source

    def _buffer(self) -> memoryview:
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = memoryview(bytearray(CHUNK_SIZE))
        return buf

    def chunks(self, start: int, stop: int) -> Iterator[memoryview]:
        """The bytes ``[start, stop)`` in chunks of at most :data:`CHUNK_SIZE`.

        Each chunk is a view of this thread's buffer, valid only until the next one is asked
        for: consume it (send it, hash it) before advancing.

        :raises IntegrityError: the file is shorter than ``stop`` (it shrank during the upload).
        """
        buf = self._buffer()
        offset = start
        while offset < stop:
            want = min(CHUNK_SIZE, stop - offset)
            view = buf[:want]
            got = self._read_into(view, offset)
            if got <= 0:
                raise IntegrityError(
                    f"{self.name or 'the source'} ended at byte {offset}, before {stop}: "
                    "the file changed during the upload"
                )
            yield view[:got]
            offset += got

    def _read_into(self, view: memoryview, offset: int) -> int:
        if self._fd is not None:
            return os.preadv(self._fd, [view], offset)
        with self._lock:
            self._file.seek(offset)
            return self._file.readinto(view)  # type: ignore[attr-defined,no-any-return]

    def sha256(self) -> bytes:
        """SHA-256 of the whole file (what the server's ``Repr-Digest`` must equal)."""
        digest = hashlib.sha256()
        for chunk in self.chunks(0, self.size):
            digest.update(chunk)
        return digest.digest()

    def changed(self) -> bool:
        """The file at the opened path no longer has the size and mtime it was opened with."""
        if self.identity is None:
            return False
        try:
            info = os.stat(self.identity.path)
        except OSError:
            return True
        return (info.st_size, info.st_mtime_ns) != (self.identity.size, self.identity.mtime_ns)

    def close(self) -> None:
        if self._close:
            self._file.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
