"""The request body as the service consumes it.

Servers disagree on how a disconnect looks: gunicorn returns short or empty reads and raises
nothing, while Werkzeug's ``LimitedStream`` (Flask's test client) raises ``ClientDisconnected``.
Counting bytes against ``Content-Length`` is the one check that works under both, so that is
what :class:`CountingReader` does (the tusd ``bodyReader`` idea).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from werkzeug.exceptions import ClientDisconnected

from ..protocol.headers import SUPPORTED_DIGESTS
from ..protocol.tus import CHECKSUM_ALGORITHMS

# Content-Digest names (sha-256) and tus Upload-Checksum names (sha256) do not collide.
_HASHES = {**SUPPORTED_DIGESTS, **CHECKSUM_ALGORITHMS}

#: Size of the first read of a body.
FIRST_READ = 16 * 1024


class CountingReader:
    """Iterates a WSGI input stream in bounded chunks, counting and optionally hashing them.

    Read errors end the iteration and are recorded, never raised: the service then commits
    what arrived (or not, under ``atomic``) and reports the interruption.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        content_length: int | None,
        chunk_size: int,
        digest_algorithm: str | None = None,
    ) -> None:
        self._stream = stream
        self.content_length = content_length
        self.chunk_size = chunk_size
        self.received = 0
        self.error: BaseException | None = None
        self._hash = _HASHES[digest_algorithm]() if digest_algorithm else None
        self._algorithm = digest_algorithm
        self._exhausted = False
        self._cut = False

    def cut(self) -> None:
        """Stop at the next chunk boundary, as if the client had gone (thread-safe: a flag)."""
        self._cut = True

    def __iter__(self) -> Iterator[bytes]:
        # The first read is small: a part's fields arrive at once, so its range is reserved
        # (and a conflicting writer refused) before a whole chunk of body has to arrive.
        want_next = min(self.chunk_size, FIRST_READ)
        while True:
            want, want_next = want_next, self.chunk_size
            if self.content_length is not None:
                want = min(want, self.content_length - self.received)
                if want <= 0:
                    break  # all of it arrived: a cut now changes nothing
            if self._cut:
                self.error = ConnectionAbortedError("the body was cut short by the server")
                break
            try:
                chunk = self._stream.read(want)
            except (OSError, ClientDisconnected, ValueError) as exc:
                # OSError covers gunicorn's NoMoreData/ChunkMissingTerminator and socket errors.
                self.error = exc
                break
            if not chunk:
                break
            self.received += len(chunk)
            if self._hash is not None:
                self._hash.update(chunk)
            yield chunk
        self._exhausted = True

    @property
    def interrupted(self) -> bool:
        if self.error is not None:
            return True
        return self.content_length is not None and self.received < self.content_length

    def digest(self, algorithm: str) -> bytes:
        if self._hash is None or algorithm != self._algorithm:
            raise ValueError(f"this reader was not hashing with {algorithm}")
        return self._hash.digest()

    def drain(self, limit: int) -> bool:
        """Read and drop up to ``limit`` leftover bytes so the connection can be reused.

        :returns: True when the body is now fully read (or broken anyway).
        """
        if self._exhausted or self.error is not None:
            return True
        left = limit
        try:
            while left > 0:
                chunk = self._stream.read(min(self.chunk_size, left))
                if not chunk:
                    return True
                left -= len(chunk)
        except (OSError, ClientDisconnected, ValueError):
            return True
        return False
