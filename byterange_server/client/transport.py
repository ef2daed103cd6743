"""HTTP for the client: one urllib3 connection pool, and what a failure means.

Why urllib3: its ``PoolManager`` is thread-safe and keeps one keep-alive connection per worker
thread; it sends a body given as an iterator chunk by chunk with the ``Content-Length`` we set
(so a segment streams from disk through a reused buffer, no chunked encoding, no copy of the
segment); it streams responses with ``read(amt)``; and it sits on the standard library's
``http.client``, whose send path is a plain ``sendall``. Its own retries are turned off: a retry
here is decided by the server's committed ranges, not by the transport (see ``upload.py``).

Outcomes are sorted once, in :func:`check_response`:

- 2xx: success;
- connection errors, timeouts, 408, 423, 425, 429, 5xx other than 501 and 505, and 409 *with*
  ``Retry-After`` (another live request, often our own cut-off attempt, still holds the range):
  :class:`Transient`, retried after a backoff;
- every other status: :class:`~byterange_server.client.errors.ServerRefused`, never retried. 501
  (a method the server or a proxy does not implement) and 505 (an HTTP version it refuses) stay
  the same however often they are asked again.

URLs are checked before the first request (:func:`normalize_url`): only ``http`` and ``https``
are spoken, and a URL written without a scheme means ``http://``, as for curl.
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
from urllib3.exceptions import LocationValueError
from urllib3.util import parse_url

from .. import __version__
from .errors import ProtocolError
from .errors import ServerRefused

__all__ = [
    "RetryPolicy",
    "Timeouts",
    "Transient",
    "Transport",
    "check_response",
    "is_transient_status",
    "normalize_url",
    "parse_retry_after",
]

USER_AGENT = f"byterange-client/{__version__}"

#: 4xx statuses that say "not now" rather than "never" (RFC 9110 §15.5.9, RFC 4918 §11.3,
#: RFC 8470 §5.2, RFC 6585 §4).
TRANSIENT_4XX = frozenset({408, 423, 425, 429})
#: 5xx statuses that repeating the request cannot change (RFC 9110 §15.6.2, §15.6.6).
PERMANENT_5XX = frozenset({501, 505})
SCHEMES = ("http", "https")
#: Most bytes of an error body read for its problem document.
PROBLEM_BYTES = 65536


def normalize_url(url: str) -> str:
    """``url`` as the transport will request it: ``http`` or ``https``, with a host.

    A URL without ``scheme://`` gets ``http://`` (curl's rule), so ``127.0.0.1:8080/files``
    means ``http://127.0.0.1:8080/files``.

    :raises ValueError: another scheme (``ftp://``), no host, or a URL that does not parse.
    """
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        text = "http://" + text
    elif scheme.lower() not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}: byterange speaks http:// and https://")
    try:
        parsed = parse_url(text)
    except LocationValueError as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    if not parsed.host:
        raise ValueError(f"not a URL: {url!r} (no host)")
    return text


def is_transient_status(status: int, retry_after: float | None = None) -> bool:
    """Whether a request answered with ``status`` is worth repeating after a wait.

    409 is transient only with ``Retry-After``: the server sends it while another live request
    holds the range; without it, a 409 is a conflict with committed bytes or the length, which
    no repetition resolves.
    """
    if status >= 500:
        return status not in PERMANENT_5XX
    return status in TRANSIENT_4XX or (status == 409 and retry_after is not None)


class Transient(Exception):
    """A failure that a later attempt may not meet (network, timeout, 5xx, 429, busy range).

    :ivar retry_after: seconds the server asked us to wait, if it did.
    :ivar status: the HTTP status, or ``None`` for a network failure.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


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


def read_problem(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """The problem document of an error response, or ``{}`` if the body is not one.

    Reads at most :data:`PROBLEM_BYTES` of a streamed body.
    """
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not content_type.endswith("json"):
        return {}
    try:
        # A streamed body is read only this far; a preloaded one is already in .data.
        data = response.read(PROBLEM_BYTES, decode_content=True) or response.data
        body = json.loads(data[:PROBLEM_BYTES])
    except (ValueError, Urllib3Error, OSError):
        return {}
    return body if isinstance(body, dict) else {}


def check_response(
    method: str, url: str, response: urllib3.BaseHTTPResponse, *, problem: dict[str, Any] | None = None
) -> None:
    """Raise for a response that is not a success (see the module docstring for the rules).

    The caller still owns the response: it must be read or released.

    :param problem: the problem document when the caller fetched it elsewhere (a ``HEAD``
        carries no body: see :meth:`.engine.Engine.head`); by default it is read from the body.
    :raises Transient: for a status worth retrying.
    :raises ServerRefused: for any other non-2xx status.
    """
    status = response.status
    if 200 <= status < 300:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if problem is None:
        problem = read_problem(response)
    if is_transient_status(status, retry_after):
        title = problem.get("title") or response.reason or ""
        detail = str(problem.get("detail") or "")
        reason = f"{title}: {detail}" if title and detail and not detail.startswith(str(title)) else title
        raise Transient(
            f"{method} {url}: HTTP {status} {reason}".rstrip(), retry_after=retry_after, status=status
        )
    raise ServerRefused(method, url, status, problem, (response.reason or "").capitalize())


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
        :raises ProtocolError: ``url`` is not an ``http``/``https`` URL (callers check the URLs
            they are given with :func:`normalize_url`, so this is one the server sent).
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
        except LocationValueError as exc:  # no later attempt can fix the URL itself
            raise ProtocolError(f"{method} {url}: not a URL the client can request ({exc})") from None
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
