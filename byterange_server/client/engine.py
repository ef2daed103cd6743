"""What uploads and downloads share: retries, the committed state, parallel tasks, progress.

A transfer is a set of independent **tasks** (a batch of segments to send, a range to fetch)
run by ``parallel`` worker threads over one connection pool. A task that meets a
:class:`~byterange_server.client.transport.Transient` failure backs off (capped exponential,
full jitter, ``Retry-After`` as a floor), asks the server what is committed, and carries on with
only what is still missing; it gives up after :attr:`RetryPolicy.attempts` failures in a row
that brought no new committed byte. Any other error stops every task and is raised once.

Each wait is announced through the ``notify`` callback ("retrying in 2.1 s (attempt 3 of 11):
reason"), once per attempt number however many tasks meet the same outage; without a callback,
notices go to the ``byterange_server.client`` logger.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any
from typing import TypeVar
from urllib.parse import urljoin

import urllib3

from byterange_server import extents
from byterange_server.extents import Extent

from .errors import Cancelled
from .errors import ClientError
from .errors import ProtocolError
from .errors import TransferFailed
from .remote import RemoteState
from .transport import RetryPolicy
from .transport import Timeouts
from .transport import Transient
from .transport import Transport
from .transport import check_response
from .transport import read_problem

__all__ = ["Engine", "NoticeCallback", "Progress", "ProgressCallback"]

T = TypeVar("T")

_log = logging.getLogger("byterange_server.client")

#: Most pages of the committed-range document we follow (10,000 ranges a page).
MAX_COMMITTED_PAGES = 10_000


@dataclass(frozen=True)
class Progress:
    """A snapshot of a transfer, passed to the progress callback.

    :ivar total: bytes of the whole file (``None`` while unknown).
    :ivar done: bytes already in place: committed (or written locally) plus what this run's
        requests have moved so far; it can step back when a request fails.
    :ivar transferred: body bytes this run moved over the network, resends included.
    :ivar retries: failed attempts so far in this run.
    """

    total: int | None
    done: int
    transferred: int
    retries: int


ProgressCallback = Callable[[Progress], None]
#: Receives one line for people: a retry about to happen, a warning about the options.
NoticeCallback = Callable[[str], None]


class _Stopped(Exception):
    """Raised in a worker when another worker failed: its result no longer matters."""


class Engine:
    """Retry loop, state fetching and the worker pool of one transfer."""

    def __init__(
        self,
        transport: Transport,
        *,
        parallel: int,
        retry: RetryPolicy,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        notify: NoticeCallback | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1: {parallel}")
        self.transport = transport
        self.parallel = parallel
        self.retry = retry
        self._progress_callback = progress
        self._notice_callback = notify
        #: The highest attempt number announced since the last success (see :meth:`backoff`).
        self._announced = 0
        self.cancel_event = cancel_event or threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.total: int | None = None
        self._confirmed = 0
        self._inflight: dict[int, int] = {}
        self.transferred = 0
        self.retries = 0
        self.requests = 0

    @classmethod
    def connect(
        cls,
        *,
        parallel: int,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        notify: NoticeCallback | None = None,
    ) -> Engine:
        """An engine over a new connection pool of ``parallel`` connections."""
        transport = Transport(connections=parallel, timeouts=timeouts or Timeouts(), headers=headers)
        retry = retry or RetryPolicy()
        return cls(
            transport, parallel=parallel, retry=retry, progress=progress, cancel_event=cancel_event,
            notify=notify,
        )

    # -- notices -------------------------------------------------------------------------------

    def notify(self, message: str) -> None:
        """Tell the person running the transfer (the ``notify`` callback, else the logger)."""
        if self._notice_callback is not None:
            self._notice_callback(message)
        else:
            _log.warning("%s", message)

    # -- cancellation and waiting --------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the transfer as soon as possible; it then raises :class:`Cancelled`."""
        self.cancel_event.set()

    def check_running(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
        if self._stop.is_set():
            raise _Stopped

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.cancel_event.wait(min(left, 0.25)) or self._stop.is_set():
                break
        self.check_running()

    # -- progress ------------------------------------------------------------------------------

    def set_confirmed(self, done: int) -> None:
        with self._lock:
            self._confirmed = done
        self._emit()

    def confirm(self, nbytes: int) -> None:
        """``nbytes`` more are in place for good (which also ends a run of failures)."""
        with self._lock:
            self._confirmed += nbytes
            if nbytes:
                self._announced = 0
        self._emit()

    def moved(self, task: int, nbytes: int) -> None:
        """A request of ``task`` moved ``nbytes`` more body bytes."""
        with self._lock:
            self._inflight[task] = self._inflight.get(task, 0) + nbytes
            self.transferred += nbytes
        self._emit()

    def settle(self, task: int) -> None:
        """The request of ``task`` ended: its in-flight bytes count no more (until confirmed)."""
        with self._lock:
            self._inflight.pop(task, None)

    def snapshot(self) -> Progress:
        with self._lock:
            done = self._confirmed + sum(self._inflight.values())
            return Progress(self.total, done, self.transferred, self.retries)

    def _emit(self) -> None:
        if self._progress_callback is not None:
            self._progress_callback(self.snapshot())

    # -- retries -------------------------------------------------------------------------------

    def backoff(self, failures: int, failure: Transient) -> None:
        """Count a failed attempt, then announce and wait, or give up after too many without progress.

        Several tasks that meet the same outage announce each attempt number once: the first
        task to reach it speaks, the others wait in silence.

        :raises TransferFailed: the retry budget is spent.
        """
        with self._lock:
            self.retries += 1
        if failures > self.retry.attempts:
            raise TransferFailed(gave_up(failures, failure), cause=failure)
        delay = self.retry.delay(failures, failure.retry_after)
        with self._lock:
            announce = failures > self._announced
            if announce:
                self._announced = failures
        if announce:
            self.notify(
                f"retrying in {delay:.1f} s (attempt {failures + 1} of {self.retry.attempts + 1}): {failure}"
            )
        self.sleep(delay)

    def call(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried on :class:`Transient` failures with backoff."""
        failures = 0
        while True:
            self.check_running()
            try:
                result = attempt()
            except Transient as failure:
                failures += 1
                self.backoff(failures, failure)
                continue
            if failures:
                with self._lock:
                    self._announced = 0
            return result

    # -- the committed state -------------------------------------------------------------------

    def request(self, method: str, url: str, **options: Any) -> urllib3.BaseHTTPResponse:
        """:meth:`Transport.request <.transport.Transport.request>`, counted."""
        with self._lock:
            self.requests += 1
        return self.transport.request(method, url, **options)

    def head(self, url: str) -> RemoteState:
        """One ``HEAD``, parsed; the committed ranges are fetched if the header left them out.

        :raises Transient: network failure or a retryable status.
        :raises ServerRefused: any other error status.
        """
        response = self.request("HEAD", url)
        try:
            problem = None
            if not 200 <= response.status < 300:
                problem = self._problem_by_get(url, response.status)
            check_response("HEAD", url, response, problem=problem)
            state = RemoteState.from_headers(url, response.status, response.headers, head=True)
        finally:
            response.release_conn()
        if state.committed is None and state.committed_link is not None:
            committed = self._committed_document(state.committed_link)
            state = dataclasses.replace(state, committed=committed)
        return state

    def _problem_by_get(self, url: str, status: int) -> dict[str, Any]:
        """The problem document explaining a failed ``HEAD``, which cannot carry one.

        A ``GET`` of the same URL is refused the same way, with the document in its body. A GET
        answered otherwise (another status, a success) explains nothing: its body is not read.
        """
        try:
            response = self.request("GET", url, stream=True, headers={"Accept": "application/problem+json"})
        except Transient:
            return {}
        try:
            return read_problem(response) if response.status == status else {}
        finally:
            response.close()  # never reuse a connection with a body left unread
            response.release_conn()

    def _committed_document(self, url: str) -> list[Extent]:
        """The whole committed-range list from the paginated JSON document."""
        ranges: list[tuple[int, int]] = []
        next_url: str | None = url
        for _ in range(MAX_COMMITTED_PAGES):
            if next_url is None:
                return extents.normalize(ranges)
            response = self.request("GET", next_url)
            try:
                check_response("GET", next_url, response)
                page = json.loads(response.data)
                ranges += [(int(first), int(last) + 1) for first, last in page["ranges"]]
                following = page.get("next")
            except (ValueError, KeyError, TypeError) as exc:
                raise ProtocolError(f"GET {next_url}: not a committed-range document ({exc})") from None
            finally:
                response.release_conn()
            next_url = urljoin(next_url, following) if following else None
        raise ProtocolError(f"{url}: the committed-range document has over {MAX_COMMITTED_PAGES} pages")

    def state(self, url: str) -> RemoteState:
        """:meth:`head` with retries."""
        return self.call(lambda: self.head(url))

    # -- the worker pool -----------------------------------------------------------------------

    def run_tasks(self, tasks: Sequence[T], work: Callable[[int, T], None]) -> None:
        """Run ``work(index, task)`` for every task on ``parallel`` threads.

        The first error stops the other tasks (at their next chunk or wait) and is raised here
        once they have all returned; Ctrl-C in the calling thread cancels the transfer.
        """
        if not tasks:
            return
        self._stop.clear()

        def guarded(index: int, task: T) -> None:
            try:
                work(index, task)
            except BaseException:
                self._stop.set()
                raise
            finally:
                self.settle(index)

        workers = min(self.parallel, len(tasks))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="byterange") as pool:
            futures = [pool.submit(guarded, index, task) for index, task in enumerate(tasks)]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except KeyboardInterrupt:
                self.cancel()
                wait(futures)
            else:
                if self._stop.is_set():
                    wait(futures)
        # The pool is done: a later round (a restart, the next plan) starts unstopped.
        self._stop.clear()
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        real = [e for e in errors if not isinstance(e, _Stopped)]
        if self.cancel_event.is_set():
            raise Cancelled()
        if real:
            raise _first_error(real)

    def close(self) -> None:
        self.transport.close()


def gave_up(failures: int, failure: BaseException) -> str:
    """What a transfer says when its retry budget is spent after ``failures`` failed attempts."""
    if failures == 1:
        return f"failed, and retries are off: {failure}"
    return f"gave up after {failures} failed attempts in a row: {failure}"


def _first_error(errors: Iterable[BaseException]) -> BaseException:
    """The error to report: a client error (with its exit code) before anything unexpected."""
    errors = list(errors)
    for error in errors:
        if isinstance(error, ClientError):
            return error
    return errors[0]
