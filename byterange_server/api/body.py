"""The request body as the service consumes it.

Servers disagree on how a disconnect looks: gunicorn returns short or empty reads and raises
nothing, while Werkzeug's ``LimitedStream`` (Flask's test client) raises ``ClientDisconnected``.
Counting bytes against ``Content-Length`` is the one check that works under both, so that is
what :class:`CountingReader` does (the tusd ``bodyReader`` idea).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import BinaryIO

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from ..protocol.chunked import BodyFramingError
from ..protocol.digests import HASHES

#: Size of the first read of a body.
FIRST_READ = 16 * 1024
#: Later reads aim to take about this long (see CountingReader._next_read_size).
READ_SECONDS = 0.5


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
        max_bytes: int | None = None,
    ) -> None:
        self._stream = stream
        #: Most bytes taken from a body of unknown length (chunked); more ends it as too large.
        self.max_bytes = max_bytes
        #: Why the server ended the body early: ``"cut"`` (shutdown, revocation), ``"too-slow"``
        #: (the throughput guard), ``"too-large"`` or ``"malformed-chunk"`` (broken chunked
        #: framing); None when it did not.
        self.stop_reason: str | None = None
        #: Seconds spent blocked in reads of the body (waiting for the client), and the start of
        #: the read in progress; the throughput guard divides bytes by this, not by wall time,
        #: so a server that is itself slow to consume (a busy disk) never blames the client.
        self._waited = 0.0
        self._read_started: float | None = None
        self.content_length = content_length
        self.chunk_size = chunk_size
        self.received = 0
        self.error: BaseException | None = None
        self._hash = HASHES[digest_algorithm]() if digest_algorithm else None
        self._algorithm = digest_algorithm
        self._exhausted = False
        self._cut = False

    def cut(self, reason: str = "cut") -> None:
        """Stop at the next chunk boundary, as if the client had gone (thread-safe: a flag)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._cut = True

    def _next_read_size(self, got: int, elapsed: float) -> int:
        """About :data:`READ_SECONDS` worth of body at the rate the last read arrived, within
        [FIRST_READ, chunk_size]: a fast client gets whole chunks at once, while a slow client's
        bytes become visible to the throughput guard every fraction of a second instead of once
        per megabyte (a read only returns when it is full)."""
        if elapsed <= 0:
            return self.chunk_size
        return max(min(self.chunk_size, FIRST_READ), min(self.chunk_size, int(got / elapsed * READ_SECONDS)))

    def waited(self, now: float | None = None) -> float:
        """Seconds spent waiting for body bytes so far (including a read in progress)."""
        started = self._read_started
        if started is None:
            return self._waited
        return self._waited + max(0.0, (time.monotonic() if now is None else now) - started)

    def __iter__(self) -> Iterator[bytes]:
        # The first read is small: a part's fields arrive at once, so its range is reserved
        # (and a conflicting writer refused) before a whole chunk of body has to arrive.
        want_next = min(self.chunk_size, FIRST_READ)
        while True:
            want = want_next
            if self.content_length is not None:
                want = min(want, self.content_length - self.received)
                if want <= 0:
                    break  # all of it arrived: a cut now changes nothing
            elif self.max_bytes is not None:
                want = min(want, self.max_bytes + 1 - self.received)  # one byte more tells
            if self._cut:
                self.error = ConnectionAbortedError("the body was cut short by the server")
                break
            started = self._read_started = time.monotonic()
            try:
                chunk = self._stream.read(want)
            except (OSError, ClientDisconnected, ValueError, ParseException) as exc:
                # OSError covers gunicorn's NoMoreData and socket errors; the worker's body
                # (worker.WireBody) raises BodyFramingError for a malformed chunk, after
                # returning every byte that came before it. gunicorn's own body (plain gthread,
                # TLS) raises ParseException subclasses for one, and loses what it buffered.
                if isinstance(exc, (BodyFramingError, ParseException)):
                    self.stop_reason = self.stop_reason or "malformed-chunk"
                self.error = exc
                break
            finally:
                elapsed = time.monotonic() - started
                self._waited += elapsed
                self._read_started = None
            want_next = self._next_read_size(len(chunk), elapsed)
            if not chunk:
                break
            if self.max_bytes is not None and self.received + len(chunk) > self.max_bytes:
                # Too large: keep what came before this chunk, refuse the rest.
                self.stop_reason = self.stop_reason or "too-large"
                self.error = ConnectionAbortedError("the body exceeded the request size limit")
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
