"""tus concatenation by reference: a final upload reads its bytes from its partial uploads.

Why by reference
----------------
Copying is too slow for the promise that concatenating 1 GiB takes well under a second of
server CPU: through Python it is a memcpy plus two syscalls per MiB, and even in the kernel
(``os.copy_file_range`` on ext4, which has no reflinks) it measured 1.2 s of system time per GiB
on the reference machine. A final upload instead records *which* partial fills *which* range
of it (table ``concat_sources``) and stores no bytes of its own. Its committed extents are the
ranges whose partial is complete, so everything that reads extents (HEAD, range GET, the
committed-ranges document) works unchanged, and :class:`ComposedObject` turns a read of the
final into reads of its partials.

Why that is safe
----------------
- A complete resource is immutable (writes over it may only repeat its bytes), and a range of
  the final becomes committed only when its partial is complete. So a byte the final serves
  never changes afterwards.
- The partial's bytes were ``fdatasync``-ed before its own extents were committed, which was
  before the final's extent row that points at them: the durability rule holds transitively.
- A partial that a final still reads from cannot disappear: the foreign key refuses it, and
  terminating it only hides it (``terminated_at``) until the last final that reads from it is
  deleted or expires (see :meth:`UploadService.delete`).
- A final takes no writes at all (403 ``final-upload``): it has nothing to write into.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Sequence

from .base import BufferedReader
from .base import StorageError
from .base import StoredObject


@dataclasses.dataclass(frozen=True)
class Piece:
    """Bytes ``[start, start + length)`` of a final upload are the partial ``source_id``."""

    position: int
    source_id: str
    start: int
    length: int

    @property
    def stop(self) -> int:
        return self.start + self.length


class ComposedObject(BufferedReader):
    """A read-only :class:`StoredObject` over the partials of a final upload.

    ``pieces`` are in order and contiguous from 0; ``objects`` are the partials' open objects,
    one per piece (the same partial may appear several times). Only committed ranges are ever
    read (the caller checks extents first), so every byte read lies inside some piece.
    """

    def __init__(self, pieces: Sequence[Piece], objects: Sequence[StoredObject]) -> None:
        self._pieces = list(pieces)
        self._objects = list(objects)
        self._starts = [piece.start for piece in self._pieces]
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed stored object")

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:
        self._check()
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(buffer) as target, target.cast("B") as view:
            done = 0
            index = bisect_right(self._starts, offset) - 1
            while done < len(view) and 0 <= index < len(self._pieces):
                piece = self._pieces[index]
                position = offset + done
                if position >= piece.stop:
                    index += 1
                    continue
                want = min(len(view) - done, piece.stop - position)
                got = self._objects[index].readinto_at(
                    position - piece.start, view[done : done + want]
                )
                done += got
                if got < want:
                    break  # the partial's data ends early: short, as at the end of a file
                index += 1
            return done

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        # The service refuses writes to final uploads before storage is reached.
        raise StorageError("A concatenated upload is read-only.")

    def sync(self) -> None:
        self._check()  # nothing written, nothing to make durable

    def fileno(self) -> int | None:
        return None  # no single file behind it: readers fall back to read_at

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stored in self._objects:
            stored.close()
