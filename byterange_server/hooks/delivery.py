"""Delivery of the outbox: one thread per worker process, HTTP and Python targets, retries.

The thread claims the oldest due head of some resource (outbox.py), sends it, and on success
marks it delivered and claims that resource's next event in the same transaction, so a resource's
events go out back to back. On failure the row is rescheduled with capped exponential backoff and
jitter, or given up (``abandoned``, logged as a warning) after ``hook_max_attempts`` attempts
or ``hook_max_age`` seconds; the next event of the resource then goes out.

The guarantee is **at least once, in order per resource**: a receiver may see an event again
(its lease ran out while a slow receiver was still answering, or the process died between the
receiver's 2xx and the commit of ``delivered``), always with the same ``Idempotency-Key``, and it
never sees event N+1 of a resource before event N was acknowledged or given up.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement

from ..config import Settings
from ..db import clock
from ..db.clock import utcnow
from ..db.engine import Database
from ..errors import ByterangeError
from . import outbox
from .outbox import OutboxRow
from .signature import SIGNATURE_HEADER
from .signature import sign

__all__ = ["DeliveryError", "DeliveryWorker", "HookEvent", "HttpTarget", "PythonTarget", "backoff"]

log = logging.getLogger(__name__)

USER_AGENT = "byterange-server-hooks/1"
#: How long past ``hook_timeout`` a lease lasts before another worker may take the row over.
LEASE_MARGIN_SECONDS = 30.0
#: Events of one resource sent back to back before the worker looks at other resources.
CHAIN_LIMIT = 100
PRUNE_EVERY_SECONDS = 600.0


class DeliveryError(Exception):
    """One failed attempt; the message goes to ``hook_events.last_error`` and the log."""


@dataclasses.dataclass(frozen=True)
class HookEvent:
    """What a Python hook receives: the fields of the JSON body, and the body itself."""

    id: str
    sequence: int
    type: str
    at: str
    resource_id: str
    owner: str | None
    length: int | None
    data: Mapping[str, Any]
    #: 1 on the first attempt.
    attempt: int
    #: The JSON document an HTTP hook gets, as a dict.
    payload: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: OutboxRow) -> HookEvent:
        body = row.body()
        return cls(
            id=body["id"],
            sequence=body["sequence"],
            type=body["type"],
            at=body["at"],
            resource_id=body["resource"]["id"],
            owner=body["resource"]["owner"],
            length=body["resource"]["length"],
            data=body["data"],
            attempt=row.attempts + 1,
            payload=body,
        )


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failures: a random point in the upper
    half of ``min(cap, base·2^(attempts-1))`` ("equal jitter"), so retries of many events spread
    out yet never come sooner than half the nominal delay."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


class HttpTarget:
    """POST the JSON body to ``url``; any 2xx within ``timeout`` seconds is success."""

    name = "http"

    def __init__(self, url: str, *, secret: str, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"hook URL must be http(s)://host/...: {url!r}")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def __call__(self, row: OutboxRow) -> None:
        body = json.dumps(row.body(), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": row.event_id,
            "Byterange-Event": row.kind,
            "Byterange-Delivery-Attempt": str(row.attempts + 1),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        status, text = post(self.url, body, headers, timeout=self.timeout)
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}: {text[:200]}")


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> tuple[int, str]:
    """One POST without redirects; (status, start of the body).

    :raises DeliveryError: the connection failed or timed out.
    """
    parsed = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection
    if parsed.scheme == "https":
        connection = http.client.HTTPSConnection(
            parsed.hostname or "", parsed.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=timeout)
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(4096).decode("utf-8", "replace")
        return response.status, text
    except (OSError, http.client.HTTPException) as exc:  # socket.timeout is an OSError
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


class PythonTarget:
    """Call ``handler(HookEvent)`` in the delivery thread; an exception is a failed attempt."""

    name = "python"

    def __init__(self, handler: Callable[[HookEvent], Any]) -> None:
        self.handler = handler

    def __call__(self, row: OutboxRow) -> None:
        try:
            self.handler(HookEvent.from_row(row))
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


class DeliveryWorker:
    """Delivers the outbox of one database; :meth:`start` runs it in a daemon thread."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        targets: Mapping[str, Callable[[OutboxRow], None]],
        *,
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.targets = dict(targets)
        self.holder = holder or f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(3).hex()}"
        self.lease_ms = int((settings.hook_timeout + LEASE_MARGIN_SECONDS) * 1000)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = time.monotonic() + random.uniform(0, PRUNE_EVERY_SECONDS)

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="byterange-hooks", daemon=True)
        self._thread.start()
        # gunicorn workers leave through sys.exit(), which runs atexit: finish the current
        # attempt rather than die mid-request (its lease would otherwise delay the retry).
        atexit.register(self.stop)

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.settings.hook_timeout + 1 if timeout is None else timeout)
        atexit.unregister(self.stop)

    def wake(self) -> None:
        """Something was committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.run_once()
                self._maybe_prune()
            except Exception:  # the database may be down; keep polling
                log.exception("hook delivery loop failed; retrying in %.1fs", self.settings.hook_poll_seconds)
            self._wake.wait(self.settings.hook_poll_seconds)

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        before = utcnow() - dt.timedelta(seconds=self.settings.hook_retention)
        with self.db.write() as conn:
            pruned = outbox.prune(conn, before=before)
        if pruned:
            log.info("pruned %d finished hook events", pruned)

    # -- one pass --------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One pass: attempt every due head once (and what follows it on success) until nothing
        is due; returns the number of attempts made."""
        with self.db.read() as conn:
            if not outbox.has_due(conn):
                return 0
        attempts = 0
        failed: set[int] = set()  # retried at the next pass, not in a tight loop within this one
        while not self._stopping.is_set():
            with self.db.write() as conn:
                row = outbox.claim(
                    conn, holder=self.holder, lease_ms=self.lease_ms, exclude=failed
                )
            if row is None:
                return attempts
            attempts += self._deliver_chain(row, failed)
        return attempts

    def _deliver_chain(self, row: OutboxRow | None, failed: set[int]) -> int:
        attempts = 0
        while row is not None:
            if attempts == CHAIN_LIMIT or self._stopping.is_set():
                self._release(row)  # claimed but not sent: let any worker take it at once
                break
            attempts += 1
            row = self._attempt(row, failed)
        return attempts

    def _attempt(self, row: OutboxRow, failed: set[int]) -> OutboxRow | None:
        """Send one row; on success return the resource's next row, claimed, if it is due."""
        target = self.targets.get(row.target)
        try:
            if target is None:
                raise DeliveryError(f"no hook target {row.target!r} is configured any more")
            target(row)
        except DeliveryError as exc:
            failed.add(row.id)
            self._failed(row, str(exc))
            return None
        except Exception as exc:  # a bug of ours: count the attempt rather than sit on the lease
            log.exception("hook event %s could not be sent", row.event_id)
            failed.add(row.id)
            self._failed(row, f"{type(exc).__name__}: {exc}")
            return None
        now = utcnow()
        with self.db.write() as conn:
            if not outbox.succeed(conn, row, holder=self.holder, now=now):
                log.warning("hook event %s (%s) was taken over after its lease ran out", row.id, row.event_id)
                return None
            return outbox.claim(
                conn,
                holder=self.holder,
                lease_ms=self.lease_ms,
                resource=(row.target, row.resource_id),
            )

    def _failed(self, row: OutboxRow, error: str) -> None:
        attempts = row.attempts + 1
        now = utcnow()
        age = (now - row.created_at).total_seconds()
        retry_at: ColumnElement[dt.datetime] | None = None
        delay = 0.0
        if attempts < self.settings.hook_max_attempts and age < self.settings.hook_max_age:
            delay = backoff(
                attempts, base=self.settings.hook_retry_base, cap=self.settings.hook_retry_max_delay
            )
            retry_at = clock.at_from_now(delay)
        try:
            with self.db.write() as conn:
                outbox.fail(conn, row, holder=self.holder, error=error, retry_at=retry_at)
        except ByterangeError:
            log.warning("could not record the failure of hook event %s; its lease will expire", row.id)
        if retry_at is None:
            log.warning(
                "hook event %s %s of %s to %s given up after %d attempts (%.0fs): %s",
                row.event_id, row.kind, row.resource_id, row.target, attempts, age, error,
            )
        else:
            log.info(
                "hook event %s %s of %s to %s failed (attempt %d), retry in %.1fs: %s",
                row.event_id, row.kind, row.resource_id, row.target, attempts, delay, error,
            )

    def _release(self, row: OutboxRow) -> None:
        """Hand a claimed, unsent row back at once (no attempt counted)."""
        with self.db.write() as conn:
            outbox.release(conn, row, holder=self.holder)
