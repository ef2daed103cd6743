"""Parallel, resumable upload of a file into a byte-range resource.

::

    from byterange_server.client import upload
    result = upload("big.bin", "http://127.0.0.1:8080/files", parallel=8)
    print(result.url)

How it goes:

1. **Find the resource.** The resume store (:mod:`.state`) may know one for this file as it is
   now (path, size, mtime) and this collection; if the server still has it, it is reused.
   Otherwise ``POST`` allocates one (``Upload-Length``, filename, media type) and the store
   records it before any byte is sent.
2. **Plan.** ``HEAD`` gives the committed ranges; :func:`~.plan.plan_segments` cuts the gaps on
   a fixed grid, and :func:`~.wire.batch_segments` groups them into requests.
3. **Send** ``parallel`` requests at a time over keep-alive connections, each streamed from disk
   and, by default, carrying ``Content-Digest: sha-256`` (the server then commits nothing of a
   damaged or cut-off request). A request that fails transiently is retried after a backoff for
   only what ``HEAD`` says is still missing, so a fault costs at most the segment it hit.
4. **Check.** When the server reports the resource complete, its ``Repr-Digest`` must equal the
   SHA-256 of the local file (hashed on a background thread while the upload runs).

Input of unknown length (a pipe, a FIFO, a terminal: :class:`~.source.StreamSource`) can be read
only once, in order, so it goes one segment at a time: ``POST`` without ``Upload-Length``, then
each segment as ``bytes a-b/*``, held in memory until the server has committed it; the segment
that ends the input carries the complete length (``bytes a-b/L``), which completes the
resource. Input that ends within its first two segments is allocated with its ``Upload-Length``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import mimetypes
import os
import stat
import threading
import time
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO
from typing import Union
from urllib.parse import urljoin

from byterange_server import extents
from byterange_server.extents import Extent
from byterange_server.protocol.digests import format_digest
from byterange_server.protocol.params import format_content_disposition
from byterange_server.protocol.ranges import ContentRange
from byterange_server.units import format_size

from .engine import Engine
from .engine import NoticeCallback
from .engine import ProgressCallback
from .errors import IntegrityError
from .errors import ProtocolError
from .errors import ServerRefused
from .plan import Segment
from .plan import plan_segments
from .plan import too_many_requests
from .remote import RemoteState
from .remote import parse_limits
from .source import Source
from .source import StreamSource
from .source import is_stream
from .state import StateStore
from .state import UploadKey
from .transport import SCHEMES
from .transport import RetryPolicy
from .transport import Timeouts
from .transport import Transient
from .transport import check_response
from .transport import normalize_url
from .wire import WireFormat
from .wire import WireRequest
from .wire import batch_segments
from .wire import build_request

__all__ = ["DEFAULT_PARALLEL", "DEFAULT_SEGMENT_SIZE", "UploadResult", "Uploader", "upload"]

DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024
DEFAULT_PARALLEL = 4
#: Most parts one multipart/byteranges request carries (the server's default limit is 1000).
DEFAULT_MAX_PARTS = 256
#: Data bytes of the probe request that follows a failure (see ``Uploader._deliver``).
PROBE_BYTES = 16 * 1024
#: Plan-send-check rounds before concluding that the server will not complete the resource.
MAX_ROUNDS = 3

UploadSource = Union[str, "os.PathLike[str]", BinaryIO]


@dataclass(frozen=True)
class UploadResult:
    """How an upload ended.

    :ivar url: the resource URL (``GET`` it to read the file back).
    :ivar size: bytes in the file (for a stream, what it turned out to hold).
    :ivar resumed: the resource existed before this run (a resumed or repeated upload).
    :ivar already_committed: bytes the server had before this run started.
    :ivar transferred: body bytes this run sent, resends included.
    :ivar sha256: hex SHA-256 of the file, checked against the server's ``Repr-Digest`` when
        ``verified``.
    """

    url: str
    size: int
    resumed: bool
    already_committed: int
    transferred: int
    requests: int
    retries: int
    seconds: float
    sha256: str | None
    verified: bool


class Uploader:
    """One upload; :meth:`run` it once. :meth:`cancel` may be called from any thread.

    :param source: a path, or a binary file object. A regular file (or a seekable object) is
        read at any offset, in parallel; a pipe, a FIFO or a device is read once, in order,
        one segment at a time (see the module docstring).
    :param url: the collection to allocate in (``.../files``), or with ``existing=True`` the
        URL of a resource to fill. Without ``scheme://`` it means ``http://``.
    :param segment_size: bytes per segment; also the most a fault can cost.
    :param parallel: requests in flight at once (a stream sends one at a time).
    :param wire_format: how segments travel (:class:`~.wire.WireFormat`).
    :param content_digest: send ``Content-Digest: sha-256`` with each request.
    :param verify: compare the server's ``Repr-Digest`` with the file's SHA-256 at the end.
    :param resume: use the resume store (uploads from a path only).
    :param state_dir: where the resume store lives (default: see :mod:`.state`).
    :param notify: receives one line for people: a retry about to happen, a warning about the
        options (default: the ``byterange_server.client`` logger).
    :raises ValueError: ``url`` is not an ``http``/``https`` URL, or ``segment_size`` is below 1.
    """

    def __init__(
        self,
        source: UploadSource,
        url: str,
        *,
        existing: bool = False,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        parallel: int = DEFAULT_PARALLEL,
        wire_format: WireFormat | str = WireFormat.MESSAGE,
        content_digest: bool = True,
        verify: bool = True,
        resume: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        max_parts: int = DEFAULT_MAX_PARTS,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        notify: NoticeCallback | None = None,
    ) -> None:
        if segment_size < 1:
            raise ValueError(f"segment size must be at least 1 byte: {segment_size}")
        self.source_arg = source
        self.url = normalize_url(url)
        self.existing = existing
        self.segment_size = segment_size
        self.wire_format = WireFormat.parse(wire_format) if isinstance(wire_format, str) else wire_format
        self.content_digest = content_digest
        self.verify = verify
        self.resume = resume
        self.store = StateStore(state_dir) if resume else None
        self.filename = filename
        self.content_type = content_type
        self.max_parts = max_parts
        self.engine = Engine.connect(
            parallel=parallel, timeouts=timeouts, retry=retry, headers=headers, progress=progress,
            cancel_event=cancel_event, notify=notify,
        )
        self.source: Source | StreamSource
        #: The resource being filled, once it is known (after a failure too: resume it there).
        self.resource_url: str | None = None
        #: The input is a stream (known once :meth:`run` has opened it).
        self.streaming = False
        self._key: UploadKey | None = None

    def cancel(self) -> None:
        self.engine.cancel()

    # -- the run -------------------------------------------------------------------------------

    def _open(self) -> Source | StreamSource:
        arg = self.source_arg
        if isinstance(arg, (str, os.PathLike)):
            if is_stream(arg):
                return StreamSource.open(arg, self.segment_size, hash=self.verify)
            return Source.open(arg)
        try:
            fd: int | None = arg.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fd = None
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            return StreamSource(arg, self.segment_size, hash=self.verify)  # a pipe, a terminal
        try:
            return Source(arg)
        except ValueError:  # an object without a position
            return StreamSource(arg, self.segment_size, hash=self.verify)

    def run(self) -> UploadResult:
        started = time.monotonic()
        source = self._open()
        if isinstance(source, StreamSource):
            self.streaming = True
            with source, self.engine.transport:
                self.source = source
                return self._run_stream(source, started)
        with source, self.engine.transport:
            self.source = source
            self.engine.total = source.size
            url, state, resumed = self._resolve()
            self.resource_url = url
            committed = self._committed(state)
            already = extents.total(extents.clip(committed, 0, source.size)) if committed else 0
            self.engine.set_confirmed(already)
            hasher = _Hasher(source) if self.verify else None
            try:
                state = self._fill(url, state, committed)
                digest = hasher.result() if hasher else None
            finally:
                if hasher:
                    hasher.stop()
            if digest is not None and "sha-256" not in state.digests:
                state = self.engine.state(url)  # e.g. an empty file, complete at allocation
            try:
                verified = self._check(state, digest)
            except IntegrityError:
                if self._key is not None and self.store is not None:
                    self.store.forget(self._key)  # a re-run must not resume into this resource
                raise
        return UploadResult(
            url=url,
            size=source.size,
            resumed=resumed,
            already_committed=already,
            transferred=self.engine.transferred,
            requests=self.engine.requests,
            retries=self.engine.retries,
            seconds=time.monotonic() - started,
            sha256=digest.hex() if digest else None,
            verified=verified,
        )

    def _resolve(self) -> tuple[str, RemoteState, bool]:
        """The resource to fill: given, remembered, or newly allocated."""
        if self.existing:
            state = self.engine.state(self.url)
            self._check_compatible(state, strict=True)
            return self.url, state, True
        store = self.store
        if store is not None and self.source.identity is not None:
            self._key = UploadKey(self.source.identity, self.url)
            remembered = store.lookup(self._key)
            if remembered is not None:
                state = self._remembered_state(remembered)
                if state is not None and self._check_compatible(state, strict=False):
                    return remembered, state, True
                store.forget(self._key)
        url, state = self.engine.call(self._allocate)
        if store is not None and self._key is not None:
            store.remember(self._key, url)  # before any byte is sent: a killed run resumes here
        return url, state, False

    def _remembered_state(self, url: str) -> RemoteState | None:
        try:
            return self.engine.state(url)
        except ServerRefused as refused:
            if refused.status in (404, 410):  # expired or deleted: start a new resource
                return None
            raise

    def _check_compatible(self, state: RemoteState, *, strict: bool) -> bool:
        """Can this resource take this file? With ``strict``, say why not instead of False."""
        problem = None
        if not state.is_byterange_resource:
            problem = "is not a byte-range upload resource (no Upload-Complete in its HEAD)"
        elif state.length is not None and state.length != self.source.size:
            problem = f"has length {state.length}, but the file has {self.source.size} bytes"
        if problem is None:
            return True
        if strict:
            raise ProtocolError(f"{state.url} {problem}")
        return False

    def _allocate(self) -> tuple[str, RemoteState]:
        headers = {"Upload-Length": str(self.source.size)} if self.source.size is not None else {}
        name = self.filename or (os.path.basename(self.source.name) if self.source.name else None)
        if name:
            headers["Content-Disposition"] = format_content_disposition(name)
        media_type = self.content_type or (mimetypes.guess_type(name)[0] if name else None)
        if media_type:
            headers["Content-Type"] = media_type
        response = self.engine.request("POST", self.url, headers=headers)
        try:
            check_response("POST", self.url, response)
            location = response.headers.get("Location")
            # 200: a signed creation URL used again finds the resource it created before.
            if response.status not in (200, 201) or not location:
                raise ProtocolError(f"POST {self.url}: expected 201 with a Location, got {response.status}")
            url = urljoin(self.url, location)
            if url.partition("://")[0].lower() not in SCHEMES:
                raise ProtocolError(f"POST {self.url}: the Location {location!r} is not an http(s) URL")
            return url, RemoteState.from_headers(url, response.status, response.headers)
        finally:
            response.release_conn()

    def _committed(self, state: RemoteState) -> list[Extent]:
        if state.committed is not None:
            return state.committed
        if state.complete:
            return [Extent(0, state.length)] if state.length else []
        # The allocation response carries no list when the header would be too long; ask.
        fetched = self.engine.state(state.url)
        if fetched.committed is None:
            raise ProtocolError(f"{state.url}: the server reports no committed ranges")
        return fetched.committed

    def _fill(self, url: str, state: RemoteState, committed: list[Extent]) -> RemoteState:
        """Send what is missing until the server reports the resource complete."""
        size = self.source.size
        assert size is not None
        segment_size = self.segment_size
        limits: dict[str, int] | None = None
        warned = False
        for _ in range(MAX_ROUNDS):
            if state.complete:
                return state
            if limits is None and not state.complete:
                limits = self._server_limits(url)
                segment_size = _fit_segment(self.segment_size, limits.get("max-request-bytes"))
            segments = plan_segments(size, segment_size, committed)
            if segments:
                max_parts = 1
                if self.wire_format.batches and len(segments) > 1:
                    max_parts = max(1, min(self.max_parts, limits.get("max-parts", self.max_parts)))
                    if limits.get("max-request-bytes"):  # every part's framing must fit too
                        room = _framing_room(limits["max-request-bytes"])
                        max_parts = max(1, min(max_parts, room // PART_FRAMING))
                batches = batch_segments(
                    self.wire_format, segments, max_bytes=segment_size, max_parts=max_parts
                )
                if not warned:
                    warned = True
                    self._warn_requests(len(batches), segment_size, size)
                self.engine.run_tasks(batches, lambda index, batch: self._deliver(url, index, batch))
            elif state.length is None:
                # All bytes are there (an empty file) but the length was never declared.
                self.engine.call(lambda: self._declare_length(url))
            state = self.engine.state(url)
            committed = self._committed(state)
        if not state.complete:
            raise ProtocolError(
                f"{url}: every byte was acknowledged but the server does not report the upload complete"
            )
        return state

    def _warn_requests(self, requests: int, segment_size: int, size: int | None) -> bool:
        """Warn once the segment size makes the transfer mostly overhead; True if it did."""
        if not too_many_requests(requests, segment_size):
            return False
        # A stream is warned about as it passes the threshold: "over" the requests so far.
        what = f"cut these {format_size(size)} into" if size is not None else "make over"
        count = requests if size is not None else requests - 1
        self.engine.notify(
            f"warning: segments of {format_size(segment_size)} {what} {count:,} requests; each costs "
            f"the server a disk flush, so this will be slow (the default segment size is "
            f"{format_size(DEFAULT_SEGMENT_SIZE)})"
        )
        return True

    # -- input of unknown length ---------------------------------------------------------------

    def _run_stream(self, source: StreamSource, started: float) -> UploadResult:
        """Send a stream in order, one segment at a time (see the module docstring)."""
        engine = self.engine
        segments = source.segments()
        first = next(segments)  # reads ahead: a short input is allocated with its length
        engine.total = source.size
        if self.existing:
            state = engine.state(self.url)
            if not state.is_byterange_resource:
                raise ProtocolError(
                    f"{self.url} is not a byte-range upload resource (no Upload-Complete in its HEAD)"
                )
            url, resumed = self.url, True
        else:
            url, state = engine.call(self._allocate)
            resumed = False
        self.resource_url = url
        expected = state.length
        if expected is not None:
            engine.total = expected
        committed = self._committed(state)
        limits = self._server_limits(url)
        segment_size = _fit_segment(self.segment_size, limits.get("max-request-bytes"))
        already = 0
        index = 0
        warned = False
        for segment in itertools.chain([first], segments):
            too_long = expected is not None and segment.stop > expected
            if too_long or (expected is not None and segment.last and segment.stop != expected):
                got = f"{segment.stop} bytes" if segment.last else f"over {expected} bytes"
                raise ProtocolError(f"{url} has length {expected}, but the input has {got}")
            if segment.last:
                engine.total = segment.stop
            pieces = _cut(extents.gaps(committed, segment.start, segment.stop), segment_size)
            skipped = len(segment.data) - _total(pieces)
            if skipped:
                already += skipped
                engine.confirm(skipped)
            for piece in pieces:
                index += 1
                if not warned and index in (101, 10_001):
                    warned = self._warn_requests(index, segment_size, None)
                self._deliver(url, 0, [piece])
        state = engine.state(url)
        if not state.complete and state.length is None:
            # Everything was committed before this run, but no request declared the length.
            engine.call(lambda: self._declare_length(url))
            state = engine.state(url)
        if not state.complete:
            raise ProtocolError(
                f"{url}: every byte was acknowledged but the server does not report the upload complete"
            )
        digest = source.sha256()
        verified = self._check(state, digest)
        assert source.size is not None
        return UploadResult(
            url=url,
            size=source.size,
            resumed=resumed,
            already_committed=already,
            transferred=engine.transferred,
            requests=engine.requests,
            retries=engine.retries,
            seconds=time.monotonic() - started,
            sha256=digest.hex() if digest else None,
            verified=verified,
        )

    def _server_limits(self, url: str) -> dict[str, int]:
        """The server's ``Byterange-Limits`` (``OPTIONS``): parts and bytes per request."""
        try:
            response = self.engine.request("OPTIONS", url)
        except Transient:
            return {}  # advice only: a refused request would say so itself
        try:
            return parse_limits(response.headers.get("Byterange-Limits"))
        finally:
            response.release_conn()

    def _deliver(self, url: str, task: int, batch: Sequence[Segment]) -> None:
        """Send one batch; after a transient failure, resend only what is still missing.

        The first request after a failure is a small probe (:data:`PROBE_BYTES`): when the
        server still holds the range for our own cut-off request, it refuses the probe with
        409 and ``Retry-After``, and the refusal costs a probe's bytes instead of a segment's.
        """
        engine = self.engine
        pending = list(batch)
        failures = 0
        need_state = False
        while True:
            engine.check_running()
            if need_state:
                try:
                    state = engine.head(url)
                except Transient as failure:
                    failures += 1
                    engine.backoff(failures, failure)
                    continue
                remaining = _restrict(pending, state.committed)
                newly = _total(pending) - _total(remaining)
                if newly:
                    engine.confirm(newly)
                    failures = 0
                pending, need_state = remaining, False
                if not pending:
                    return
            sending = _first_bytes(pending, PROBE_BYTES) if failures else pending
            try:
                self._send(url, task, sending)
            except Transient as failure:
                engine.settle(task)
                failures += 1
                engine.backoff(failures, failure)
                need_state = True
                continue
            engine.settle(task)
            engine.confirm(_total(sending))
            pending = _restrict(pending, extents.normalize((s.start, s.stop) for s in sending))
            if not pending:
                return
            failures = 0

    def _send(self, url: str, task: int, segments: Sequence[Segment]) -> None:
        request = build_request(self.wire_format, segments, self.source.size)
        headers = {**request.headers, "Content-Length": str(request.content_length)}
        if self.content_digest:
            headers["Content-Digest"] = format_digest("sha-256", self._digest(request))
        response = self.engine.request(request.method, url, headers=headers, body=self._body(task, request))
        try:
            check_response(request.method, url, response)
        except ServerRefused as refused:
            if not refused.problem.get("type", "").endswith(":content-digest-mismatch"):
                raise
            if self.source.changed():
                raise IntegrityError(
                    f"{self.source.name} changed while it was being uploaded; upload it again"
                ) from None
            # The file is as it was: the bytes were damaged on the way. Send them again.
            raise Transient(f"{request.method} {url}: the server received damaged bytes") from None
        finally:
            response.release_conn()

    def _declare_length(self, url: str) -> None:
        assert self.source.size is not None
        content_range = ContentRange.unsatisfied(self.source.size).format()
        headers = {"Content-Range": content_range, "Content-Length": "0"}
        response = self.engine.request("PUT", url, headers=headers, body=b"")
        try:
            check_response("PUT", url, response)
        finally:
            response.release_conn()

    def _digest(self, request: WireRequest) -> bytes:
        digest = hashlib.sha256()
        for piece in request.pieces:
            if isinstance(piece, bytes):
                digest.update(piece)
            else:
                for chunk in self.source.chunks(piece.start, piece.stop):
                    self.engine.check_running()
                    digest.update(chunk)
        return digest.digest()

    def _body(self, task: int, request: WireRequest) -> Iterator[bytes | memoryview]:
        """The request body, streamed from disk; progress is counted as chunks leave."""
        delimiter = request.boundary
        for piece in request.pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            # The part's data follows the blank line's CRLF, so a delimiter could start there.
            tail = b"\r\n"
            for chunk in self.source.chunks(piece.start, piece.stop):
                self.engine.check_running()
                if delimiter is not None:
                    tail = _check_delimiter(delimiter, tail, chunk)
                yield chunk
                self.engine.moved(task, len(chunk))

    def _check(self, state: RemoteState, digest: bytes | None) -> bool:
        """Compare the server's digest of the resource with the file's; True if compared."""
        if self.source.changed():
            raise IntegrityError(
                f"{self.source.name} changed while it was being uploaded; upload it again"
            )
        if digest is None:
            return False
        remote = state.digests.get("sha-256")
        if remote is None:
            return False
        if remote != digest:
            raise IntegrityError(
                f"{state.url}: the server's sha-256 ({remote.hex()}) differs from the file's "
                f"({digest.hex()})"
            )
        return True


def upload(source: UploadSource, url: str, **options: object) -> UploadResult:
    """Upload ``source`` into a new (or the remembered) resource of collection ``url``.

    Keyword options are those of :class:`Uploader`. Returns when the server reports the resource
    complete and its digest matched.

    :raises TransferFailed: the network kept failing (run it again to resume).
    :raises ServerRefused: the server refused a request for good (a 4xx other than 409 busy/429).
    :raises IntegrityError: the file changed during the upload, or the digests differ.
    :raises Cancelled: :meth:`Uploader.cancel` was called.
    """
    return Uploader(source, url, **options).run()  # type: ignore[arg-type]


# -- helpers -----------------------------------------------------------------------------------


#: Room left for the framing (field blocks, multipart delimiters) in a size-limited request.
FRAMING_ROOM = 4096
#: Framing bytes one part of a batch may take (its delimiter and field block).
PART_FRAMING = 160


def _framing_room(max_request_bytes: int) -> int:
    return min(FRAMING_ROOM, max_request_bytes // 2)


def _fit_segment(segment_size: int, max_request_bytes: int | None) -> int:
    """Segments small enough that a request, framing included, stays under the server's limit."""
    if not max_request_bytes:
        return segment_size
    return max(1, min(segment_size, max_request_bytes - _framing_room(max_request_bytes)))


def _cut(gaps: Sequence[Extent], size: int) -> list[Segment]:
    """``gaps`` cut into segments of at most ``size`` bytes, in order."""
    return [
        Segment(start, min(gap.stop, start + size))
        for gap in gaps
        for start in range(gap.start, gap.stop, size)
    ]


def _total(segments: Sequence[Segment]) -> int:
    return sum(segment.length for segment in segments)


def _first_bytes(segments: Sequence[Segment], limit: int) -> list[Segment]:
    """The leading ``limit`` bytes of ``segments`` (all of them if they are shorter)."""
    out = []
    for segment in segments:
        if limit <= 0:
            break
        out.append(Segment(segment.start, min(segment.stop, segment.start + limit)))
        limit -= out[-1].length
    return out


def _restrict(segments: Sequence[Segment], committed: list[Extent] | None) -> list[Segment]:
    """The parts of ``segments`` not in ``committed`` (all of them when the state is unknown)."""
    if committed is None:
        return list(segments)
    out = []
    for segment in segments:
        out += [Segment(gap.start, gap.stop) for gap in extents.gaps(committed, segment.start, segment.stop)]
    return out


def _check_delimiter(delimiter: bytes, tail: bytes, chunk: memoryview) -> bytes:
    """Refuse a chunk that would contain the multipart delimiter; return the new tail.

    The chunk is searched in place (it is a view of a reused ``bytearray``); only the few bytes
    around the seam with the previous chunk are copied.

    :raises Transient: the delimiter occurs (the retry draws a new random boundary).
    """
    keep = len(delimiter) - 1
    seam = tail + bytes(chunk[:keep])
    found = delimiter in seam
    if not found:
        base = chunk.obj
        if isinstance(base, bytearray) and chunk.c_contiguous:
            found = base.find(delimiter, 0, len(chunk)) >= 0
        else:
            found = delimiter in bytes(chunk)
    if found:
        raise Transient("the multipart boundary occurs in the data; retrying with a fresh boundary")
    return (tail + bytes(chunk[-keep:]))[-keep:]


class _Hasher:
    """SHA-256 of the source on a background thread, while the upload runs."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._digest: bytes | None = None
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="byterange-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            for chunk in self._source.chunks(0, self._source.size):
                if self._stopped.is_set():
                    return
                digest.update(chunk)
            self._digest = digest.digest()
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self) -> bytes:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
