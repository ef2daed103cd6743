"""HTTP for the client: one urllib3 connection pool, and what a failure means.

Why urllib3: its ``PoolManager`` is thread-safe and keeps one keep-alive connection per worker
thread; it sends a body given as an iterator chunk by chunk with the ``Content-Length`` we set
(so a segment streams from disk through a reused buffer, no chunked encoding, no copy of the
segment); it streams responses with ``read(amt)``; and it sits on the standard library's
``http.client``, whose send path is a plain ``sendall``. Its own retries are turned off: a retry
here is decided by the server's committed ranges, not by the transport (see ``upload.py``).

Outcomes are sorted once, in :func:`check_response`:

- 2xx: success;
- connection errors, timeouts, 5xx, 429, and 409 *with* ``Retry-After`` (another live request,
  often our own cut-off attempt, still holds the range): :class:`Transient`, retried after a
  backoff;
- every other status: :class:`~byterange_server.client.errors.ServerRefused`, never retried.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .. import __version__
from .errors import ServerRefused

__all__ = [
    "RetryPolicy",
    "Timeouts",
    "Transient",
    "Transport",
    "check_response",
    "parse_retry_after",
]

USER_AGENT = f"byterange-client/{__version__}"


class Transient(Exception):
    """A failure that a later attempt may not meet (network, timeout, 5xx, 429, busy range).

    :ivar retry_after: seconds the server asked us to wait, if it did.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection, and for each socket read or write once connected.

    ``read`` must also cover the server finishing a write: the request that completes a resource
    is answered after the server has hashed the whole file (about 2 s per GiB).
    """

    connect: float = 10.0
    read: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter.

    :ivar attempts: failed attempts in a row, without any new committed byte in between, after
        which a transfer gives up (and a re-run resumes it).
    :ivar base: the first backoff ceiling in seconds; it doubles with each failure ...
    :ivar cap: ... up to this many seconds.
    """

    attempts: int = 10
    base: float = 0.5
    cap: float = 30.0

    def delay(
        self, failures: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first).

        Full jitter (a uniform draw below the ceiling) spreads the retries of many segments
        that failed together; a server's ``Retry-After`` is a floor, capped at :attr:`cap`.
        """
        ceiling = min(self.cap, self.base * 2 ** max(0, failures - 1))
        wait = (rng or random).uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    ``None`` for an absent or unreadable value (a hint we cannot read is no hint).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        return float(int(value))
    try:
        moment: datetime = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _problem(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """The problem document of an error response, or ``{}`` if the body is not one."""
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not content_type.endswith("json"):
        return {}
    try:
        body = json.loads(response.data[:65536])
    except (ValueError, Urllib3Error, OSError):
        return {}
    return body if isinstance(body, dict) else {}


def check_response(method: str, url: str, response: urllib3.BaseHTTPResponse) -> None:
    """Raise for a response that is not a success (see the module docstring for the rules).

    The caller still owns the response: it must be read or released.

    :raises Transient: for a status worth retrying.
    :raises ServerRefused: for any other non-2xx status.
    """
    status = response.status
    if 200 <= status < 300:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status >= 500 or status == 429 or (status == 409 and retry_after is not None):
        problem = _problem(response)
        reason = problem.get("title") or response.reason or ""
        raise Transient(f"{method} {url}: HTTP {status} {reason}".rstrip(), retry_after=retry_after)
    raise ServerRefused(method, url, status, _problem(response), (response.reason or "").capitalize())


class Transport:
    """A thread-safe pool of keep-alive connections, at most ``connections`` per host.

    :param headers: sent with every request (e.g. ``Authorization``).
    """

    def __init__(
        self,
        *,
        connections: int = 4,
        timeouts: Timeouts | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeouts = timeouts = timeouts or Timeouts()
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=connections,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=timeouts.connect, read=timeouts.read),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Iterable[bytes | memoryview] | bytes | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; with ``stream`` the body is left to read with ``read(amt)``.

        :raises Transient: the connection failed or timed out (the request may or may not have
            reached the server: callers ask for the committed state before resending).
        """
        all_headers = {**self.headers, **(headers or {})}
        try:
            return self._pool.request(
                method,
                url,
                headers=all_headers,
                body=body,  # type: ignore[arg-type]
                preload_content=not stream,
                redirect=False,
            )
        except (Urllib3Error, OSError) as exc:
            raise Transient(f"{method} {url}: {_describe(exc)}") from exc

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    """A one-line reason for a transport failure, without urllib3's nested reprs."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc) or type(exc).__name__
    # urllib3 prefixes the pool repr ("HTTPConnectionPool(host=..., port=...): ..."); drop it.
    if "): " in text:
        text = text.split("): ", 1)[1]
    return text
