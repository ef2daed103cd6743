"""The local input an upload reads: a file at any offset, or a stream once, in order.

:class:`Source` is a regular file (or a seekable file object) of known size. Segments are read
with ``os.preadv`` into a buffer each thread reuses, so many segments can be in flight at once
without a shared file position, and memory stays at one chunk per thread however large the file
is. File objects without a descriptor (``io.BytesIO``) are read under a lock with ``seek`` +
``readinto``.

:class:`StreamSource` is input that can be read only once: a pipe, a FIFO, a terminal. Its
length is known only at its end, and a byte that was read cannot be read again, so each segment
is held in memory until the server has committed it (a retry resends it from there). A thread
reads ahead of the sender; at most :data:`STREAM_BUFFERS` segments are in memory at once.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .errors import IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "STREAM_BUFFERS",
    "FileIdentity",
    "Source",
    "StreamSegment",
    "StreamSource",
    "is_stream",
]

#: Bytes per read (and per socket send): large enough for few system calls, small enough that
#: memory per in-flight segment stays flat.
CHUNK_SIZE = 1024 * 1024
#: Segments of a stream in memory at once: the one being sent, the next (read to learn whether
#: the one being sent is the last), and the one being read.
STREAM_BUFFERS = 3


def is_stream(path: str | os.PathLike[str]) -> bool:
    """The path names something that can only be read once, in order (a FIFO, a device)."""
    mode = os.stat(path).st_mode
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


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


@dataclass(frozen=True)
class StreamSegment:
    """The bytes ``[start, start + len(data))`` of a stream; ``last``: the stream ends with them."""

    start: int
    data: bytearray
    last: bool

    @property
    def stop(self) -> int:
        return self.start + len(self.data)


class StreamSource:
    """Input read once, in order, in segments of ``segment_size`` (see the module docstring).

    :meth:`segments` yields the stream's segments; each one is the **window** that
    :meth:`chunks` serves until the next is asked for. :attr:`size` is ``None`` until the
    segment that ends the stream has been yielded.

    :param hash: compute the SHA-256 of everything read (:meth:`sha256`).
    """

    identity: FileIdentity | None = None

    def __init__(
        self, fileobj: BinaryIO, segment_size: int, *, name: str | None = None, close: bool = False,
        hash: bool = True,
    ) -> None:
        if segment_size < 1:
            raise ValueError(f"segment size must be at least 1 byte: {segment_size}")
        self._file = fileobj
        self._close = close
        self.segment_size = segment_size
        name = name or getattr(fileobj, "name", None)
        # "<stdin>", /dev/stdin or /dev/fd/63 name no file the server should store.
        if not isinstance(name, str) or name.startswith(("<", "/dev/", "/proc/")):
            name = None
        self.name = name
        self.size: int | None = None
        self._hash = hashlib.sha256() if hash else None
        self._ready: queue.Queue[tuple[bytearray | None, BaseException | None]] = queue.Queue()
        self._slots = threading.Semaphore(STREAM_BUFFERS)
        self._closed = threading.Event()
        self._window_start = 0
        self._window = memoryview(b"")
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], segment_size: int, *, hash: bool = True) -> StreamSource:
        """Open a FIFO or a device by path (opening a FIFO waits for its writer).

        The file is unbuffered: the reading thread may be blocked in a read when the process
        exits, and a buffered reader's lock held then aborts the interpreter's shutdown.
        """
        fileobj = open(path, "rb", buffering=0)  # noqa: SIM115 - the StreamSource owns and closes it
        return cls(fileobj, segment_size, name=os.fspath(path), close=True, hash=hash)

    # -- the reading thread --------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                self._slots.acquire()
                if self._closed.is_set():
                    return
                data = self._read_segment()
                if self._hash is not None:
                    self._hash.update(data)
                self._ready.put((data, None))
                if len(data) < self.segment_size:
                    return
        except BaseException as exc:  # reported by segments()
            self._ready.put((None, exc))
        finally:
            if self._closed.is_set() and self._close:
                self._file.close()  # close() left it to this thread, which was reading it

    def _read_segment(self) -> bytearray:
        """Up to ``segment_size`` bytes: fewer only at the end of the stream."""
        buf = bytearray(self.segment_size)
        view = memoryview(buf)
        got = 0
        readinto = getattr(self._file, "readinto", None)
        while got < len(buf) and not self._closed.is_set():
            if readinto is not None:
                n = readinto(view[got:])
            else:
                chunk = self._file.read(len(buf) - got)
                n = None if chunk is None else len(chunk)
                if n:
                    view[got : got + n] = chunk
            if n is None:  # a non-blocking descriptor with nothing to read yet
                time.sleep(0.01)
                continue
            if n == 0:
                break
            got += n
        view.release()
        del buf[got:]
        return buf

    def _take(self) -> bytearray:
        data, error = self._ready.get()
        if error is not None:
            raise error
        assert data is not None
        return data

    # -- what the uploader sees ----------------------------------------------------------------

    def segments(self) -> Iterator[StreamSegment]:
        """The stream's segments, in order; the last one has ``last`` set (it may be empty).

        Before yielding a segment the next one is read, to know whether this one is the last:
        its ``Content-Range`` then carries the complete length.

        :raises OSError: reading the input failed.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="byterange-stdin", daemon=True)
            self._thread.start()
        start = 0
        current = self._take()
        while True:
            following: bytearray | None = None
            last = len(current) < self.segment_size
            if not last:
                following = self._take()
                if not following:
                    last, following = True, None
                    self._slots.release()
            if last:
                self.size = start + len(current)
            self._window_start, self._window = start, memoryview(current)
            yield StreamSegment(start, current, last)
            self._window = memoryview(b"")
            self._slots.release()
            if following is None:
                return
            start += len(current)
            current = following

    def chunks(self, start: int, stop: int) -> Iterator[memoryview]:
        """The bytes ``[start, stop)`` of the current window, in chunks of at most :data:`CHUNK_SIZE`.

        :raises ValueError: the range is not in the window (those bytes are gone, or not read yet).
        """
        offset = start - self._window_start
        end = stop - self._window_start
        if offset < 0 or end > len(self._window):
            raise ValueError(
                f"bytes {start}-{stop - 1} are not in the stream's window "
                f"({self._window_start}-{self._window_start + len(self._window) - 1})"
            )
        window = self._window
        for position in range(offset, end, CHUNK_SIZE):
            yield window[position : min(end, position + CHUNK_SIZE)]

    def sha256(self) -> bytes | None:
        """SHA-256 of the whole stream, once it has been read to its end (else ``None``)."""
        if self._hash is None or self.size is None:
            return None
        return self._hash.digest()

    def changed(self) -> bool:
        """A stream cannot be checked for changes: bytes read from it are gone."""
        return False

    def close(self) -> None:
        self._closed.set()
        for _ in range(STREAM_BUFFERS):
            self._slots.release()  # a reader waiting for a free buffer sees the close
        # A read blocked on a silent pipe cannot be interrupted, and closing the file under it
        # would block or hand its descriptor to the next open: the reading thread closes it.
        if self._close and (self._thread is None or not self._thread.is_alive()):
            self._file.close()

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
