"""Parallel, resumable download with ranges bound to one version of the file.

::

    from byterange_server.client import download
    result = download("http://127.0.0.1:8080/files/ab12…", "big.bin", parallel=8)

How it goes:

1. ``HEAD`` gives the length, the strong ``ETag`` and ``Repr-Digest``. A byte-range resource that
   is not complete yet is refused (holes are never served).
2. Bytes go to ``FILE.partial``, a sparse file of the final length; ``FILE.partial.json`` records
   the URL, the ETag and the ranges already written (each one ``fdatasync``ed before it is
   recorded). A new run with the same URL and ETag fetches only the rest. If the ETag changed,
   the old bytes belong to another version: they are thrown away, never stitched.
3. ``parallel`` workers ``GET`` segments with ``Range`` and ``If-Range: <etag>``. A ``200``
   answer to such a request means the representation changed mid-download: the download starts
   over (or, with ``restart_on_change=False``, fails with :class:`RemoteChanged`). An interrupted
   response keeps the bytes that arrived; the retry asks only for the rest.
4. At the end the file is hashed and compared with ``Repr-Digest`` (``sha-256`` or ``sha-512``),
   then renamed into place atomically.

Servers without a strong ETag or byte ranges get one plain ``GET``, restarted on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from urllib3.exceptions import HTTPError as Urllib3Error

from byterange_server import extents
from byterange_server.extents import Extent
from byterange_server.protocol.ranges import ContentRange
from byterange_server.units import format_size

from .engine import Engine
from .engine import NoticeCallback
from .engine import ProgressCallback
from .errors import ClientError
from .errors import IntegrityError
from .errors import ProtocolError
from .errors import RemoteChanged
from .plan import Segment
from .plan import plan_segments
from .plan import too_many_requests
from .remote import RemoteState
from .source import CHUNK_SIZE
from .transport import RetryPolicy
from .transport import Timeouts
from .transport import Transient
from .transport import check_response
from .transport import normalize_url
from .upload import DEFAULT_PARALLEL
from .upload import DEFAULT_SEGMENT_SIZE

__all__ = ["DownloadResult", "Downloader", "IncompleteResource", "download"]

#: Times a download starts over because the remote file changed under it.
MAX_RESTARTS = 3
_DIGESTS = {"sha-512": hashlib.sha512, "sha-256": hashlib.sha256}


class IncompleteResource(ClientError):
    """The byte-range resource is still being uploaded; only complete files are downloaded."""

    exit_code = 4


@dataclass(frozen=True)
class DownloadResult:
    """How a download ended.

    :ivar already_present: bytes a previous run had written, kept by this one.
    :ivar restarts: times the remote file changed and the download started over.
    :ivar verified: the file was checked against the server's ``Repr-Digest``.
    """

    url: str
    path: str
    size: int
    already_present: int
    transferred: int
    requests: int
    retries: int
    restarts: int
    seconds: float
    verified: bool


@dataclass
class _Control:
    """The ``FILE.partial.json`` record: which version is in ``FILE.partial``, and how much."""

    url: str
    etag: str
    length: int
    done: list[Extent]

    def to_json(self) -> str:
        return json.dumps(
            {"version": 1, "url": self.url, "etag": self.etag, "length": self.length,
             "done": [[extent.start, extent.stop] for extent in self.done]}
        )

    @classmethod
    def load(cls, path: Path) -> _Control | None:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != 1:
                return None
            return cls(
                str(data["url"]), str(data["etag"]), int(data["length"]),
                extents.normalize((int(a), int(b)) for a, b in data["done"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no record, or one we cannot trust: start afresh


class Downloader:
    """One download; :meth:`run` it once. :meth:`cancel` may be called from any thread.

    :param restart_on_change: when the remote file changes, start over (default) instead of
        raising :class:`RemoteChanged`.
    :param notify: receives one line for people: a retry about to happen, a warning about the
        options (default: the ``byterange_server.client`` logger).
    :raises ValueError: ``url`` is not an ``http``/``https`` URL, or ``segment_size`` is below 1.
    """

    def __init__(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        parallel: int = DEFAULT_PARALLEL,
        verify: bool = True,
        restart_on_change: bool = True,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        notify: NoticeCallback | None = None,
    ) -> None:
        if segment_size < 1:
            raise ValueError(f"segment size must be at least 1 byte: {segment_size}")
        self.url = normalize_url(url)
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.control_path = self.path.with_name(self.path.name + ".partial.json")
        self.segment_size = segment_size
        self.verify = verify
        self.restart_on_change = restart_on_change
        self.engine = Engine.connect(
            parallel=parallel, timeouts=timeouts, retry=retry, headers=headers, progress=progress,
            cancel_event=cancel_event, notify=notify,
        )
        self._warned = False
        self._lock = threading.Lock()
        self._control: _Control | None = None
        self._fd = -1
        #: Times the remote file changed and the download started over.
        self.restarts = 0

    def cancel(self) -> None:
        self.engine.cancel()

    def run(self) -> DownloadResult:
        started = time.monotonic()
        with self.engine.transport:
            while True:
                try:
                    already, verified = self._attempt()
                    break
                except RemoteChanged:
                    if not self.restart_on_change or self.restarts >= MAX_RESTARTS:
                        raise
                    self.restarts += 1
                    self._discard()
        return DownloadResult(
            url=self.url,
            path=str(self.path),
            size=self.engine.total or 0,
            already_present=already,
            transferred=self.engine.transferred,
            requests=self.engine.requests,
            retries=self.engine.retries,
            restarts=self.restarts,
            seconds=time.monotonic() - started,
            verified=verified,
        )

    # -- one attempt ---------------------------------------------------------------------------

    def _attempt(self) -> tuple[int, bool]:
        state = self.engine.state(self.url)
        if state.is_byterange_resource and not state.complete:
            committed = extents.total(state.committed or [])
            raise IncompleteResource(
                f"{self.url} is not complete yet ({committed} of {state.length or '?'} bytes "
                "committed); download it once the upload has finished"
            )
        length = state.length
        if length is None or state.etag is None or not (state.accept_ranges or state.is_byterange_resource):
            return 0, self._plain_get(state)
        etag = state.etag.format()
        control = _Control.load(self.control_path)
        if control is not None and control.url != self.url:
            control = None  # a partial download of another URL: not ours to resume
        if control is not None and (control.etag, control.length) != (etag, length):
            # Bytes of another version: never stitched to this one.
            if not self.restart_on_change:
                raise RemoteChanged(
                    f"{self.url} changed since the partial download in {self.partial} (ETag "
                    f"{control.etag}, {control.length} bytes; now {etag}, {length} bytes): delete "
                    "the partial file or allow a restart to download the new version"
                )
            self.restarts += 1
            control = None
        if control is None or not self.partial.exists() or self.partial.stat().st_size != length:
            self._discard()
            control = _Control(self.url, etag, length, [])
        already = extents.total(control.done)
        self._control = control
        self.engine.total = length
        self.engine.set_confirmed(already)
        self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(self._fd, length)
            self._save()
            segments = plan_segments(length, self.segment_size, control.done)
            if not self._warned and too_many_requests(len(segments), self.segment_size):
                self._warned = True
                self.engine.notify(
                    f"warning: segments of {format_size(self.segment_size)} cut these {format_size(length)} "
                    f"into {len(segments):,} range requests, so this will be slow "
                    f"(the default segment size is {format_size(DEFAULT_SEGMENT_SIZE)})"
                )
            self.engine.run_tasks(segments, lambda task, segment: self._fetch(task, segment, etag, length))
            verified = self._verify(state)
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        self._finish()
        return already, verified

    def _fetch(self, task: int, segment: Segment, etag: str, length: int) -> None:
        """Fetch one segment; after a transient failure, only the bytes that did not arrive."""
        pending: Segment | None = segment
        failures = 0
        while pending is not None:
            self.engine.check_running()
            try:
                pending = self._get_range(task, pending, etag, length)
            except Transient as failure:
                failures += 1
                self.engine.backoff(failures, failure)
                continue
            failures = 0

    def _get_range(self, task: int, segment: Segment, etag: str, length: int) -> Segment | None:
        """One ``GET`` of ``segment``; returns what is left of it (``None`` when all arrived).

        :raises Transient: the request failed before any byte arrived.
        """
        headers = {"Range": f"bytes={segment.start}-{segment.stop - 1}", "If-Range": etag}
        response = self.engine.request("GET", self.url, headers=headers, stream=True)
        offset = segment.start
        try:
            if response.status == 200 or response.status == 416:
                raise RemoteChanged(
                    f"{self.url} changed during the download (If-Range {etag} no longer matches)"
                )
            check_response("GET", self.url, response)
            expected = ContentRange(segment.start, segment.stop, length).format()
            if response.status != 206 or response.headers.get("Content-Range") != expected:
                raise ProtocolError(
                    f"GET {self.url} with Range: expected 206 and Content-Range {expected}, got "
                    f"{response.status} {response.headers.get('Content-Range')}"
                )
            while offset < segment.stop:
                self.engine.check_running()
                try:
                    chunk = response.read(min(CHUNK_SIZE, segment.stop - offset), decode_content=False)
                except (Urllib3Error, OSError) as exc:
                    raise Transient(f"GET {self.url}: {exc}") from exc
                if not chunk:
                    raise Transient(f"GET {self.url}: the response ended at byte {offset}")
                os.pwrite(self._fd, chunk, offset)
                offset += len(chunk)
                self.engine.moved(task, len(chunk))
        except Transient:
            if offset > segment.start:  # keep what arrived; ask only for the rest
                self._record(task, segment.start, offset)
                return Segment(offset, segment.stop)
            raise
        except BaseException:
            if offset > segment.start:  # cancelled or stopped: a re-run keeps what arrived
                self._record(task, segment.start, offset)
            raise
        finally:
            response.release_conn()
        self._record(task, segment.start, segment.stop)
        return None

    def _record(self, task: int, start: int, stop: int) -> None:
        with self._lock:
            assert self._control is not None
            self._control.done = extents.add(self._control.done, (start, stop))
            self._save()
        self.engine.settle(task)
        self.engine.confirm(stop - start)

    def _save(self) -> None:
        """Make the written bytes durable, then record them (never the other way round)."""
        assert self._control is not None
        os.fdatasync(self._fd)
        tmp = self.control_path.with_name(self.control_path.name + ".tmp")
        tmp.write_text(self._control.to_json())
        os.replace(tmp, self.control_path)

    def _verify(self, state: RemoteState) -> bool:
        if not self.verify:
            return False
        for algorithm, factory in _DIGESTS.items():
            expected = state.digests.get(algorithm)
            if expected is None:
                continue
            digest = factory()
            offset = 0
            while chunk := os.pread(self._fd, CHUNK_SIZE, offset):
                digest.update(chunk)
                offset += len(chunk)
            if digest.digest() != expected:
                self._discard()
                raise IntegrityError(
                    f"{self.url}: the downloaded bytes do not match the server's {algorithm} "
                    "Repr-Digest; the partial file was removed"
                )
            return True
        return False

    def _plain_get(self, state: RemoteState) -> bool:
        """One streamed ``GET`` of the whole file, restarted from zero after a failure."""
        self._discard()
        self.engine.total = state.length

        def attempt() -> None:
            self.engine.set_confirmed(0)
            response = self.engine.request("GET", self.url, stream=True)
            try:
                check_response("GET", self.url, response)
                with open(self.partial, "wb") as out:
                    while True:
                        try:
                            chunk = response.read(CHUNK_SIZE, decode_content=False)
                        except (Urllib3Error, OSError) as exc:
                            raise Transient(f"GET {self.url}: {exc}") from exc
                        if not chunk:
                            break
                        out.write(chunk)
                        self.engine.moved(0, len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                response.release_conn()
                self.engine.settle(0)

        self.engine.call(attempt)
        self._fd = os.open(self.partial, os.O_RDONLY)
        try:
            verified = self._verify(state)
        finally:
            os.close(self._fd)
            self._fd = -1
        self._finish()
        return verified

    def _finish(self) -> None:
        os.replace(self.partial, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.control_path.unlink(missing_ok=True)

    def _discard(self) -> None:
        self.partial.unlink(missing_ok=True)
        self.control_path.unlink(missing_ok=True)


def download(url: str, path: str | os.PathLike[str], **options: object) -> DownloadResult:
    """Download ``url`` to ``path``, resuming a previous partial download of the same version.

    Keyword options are those of :class:`Downloader`.

    :raises TransferFailed: the network kept failing (run it again to resume).
    :raises ServerRefused: the server refused a request for good.
    :raises IncompleteResource: the resource is still being uploaded.
    :raises RemoteChanged: the file changed and ``restart_on_change`` is False (or it kept changing).
    :raises IntegrityError: the bytes do not match the server's ``Repr-Digest``.
    """
    return Downloader(url, path, **options).run()  # type: ignore[arg-type]
