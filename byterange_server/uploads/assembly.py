"""Assembly: the pieces of a complete resource on an object store become one object.

A complete resource is read from its pieces (its ``segments``) until then, so assembly may run
whenever it suits: the process whose write completed a resource starts it in a background
thread right after that commit (:meth:`Assembler.assemble_soon`), and the sweep (expiry.py)
assembles whatever that missed (a process killed or stopped meanwhile, a store that failed),
one resource at a time under a job lease of its own in the database, so two processes or hosts
never assemble one resource at once. Each attempt writes a new object
(``assembly_scope(attempt)``), recorded as garbage first; one transaction then swaps the
resource's segments for the single segment of that object and records the replaced pieces as
garbage after a grace period (a GET that began on the pieces finishes on them). An attempt that
fails or loses the race leaves only garbage; its lease is renewed while it runs, so one of a
process that died lapses within two minutes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import secrets
import threading
import time

from ..db.ledger import garbage
from ..db.ledger import jobs
from ..db.ledger import resources
from ..db.ledger import segments
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..errors import StorageError
from .values import WriteContext

__all__ = ["Assembler"]

log = logging.getLogger(__name__)

#: Seconds an assembly attempt's job lease (and the garbage row of its multipart upload) lasts
#: without renewal: a process killed mid-assembly holds the resource back from the sweep, and
#: its upload from the collector, only this long.
_ATTEMPT_LEASE = 120.0
#: Seconds between renewals while the attempt runs (an assembly of many GiB takes minutes).
_RENEW_EVERY = 30.0


def assembly_job(resource_id: str) -> str:
    return jobs.digest_job(resource_id).replace("digest:", "assemble:", 1)


class Assembler:
    def __init__(self, context: WriteContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        # One thread per process, made on first use (a gunicorn worker forks before that): an
        # assembly copies parts four at a time already, and completions queue behind it.
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def assemble_soon(self, resource_id: str) -> None:
        """Assemble ``resource_id`` in this process's background thread, after the request
        that completed it has answered; failures are logged and left to the sweep."""
        if not self.context.storage.uses_segments:
            return
        with self._lock:
            if resource_id in self._queued:
                return
            self._queued.add(resource_id)
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="byterange-assembly")
            pool = self._pool
        pool.submit(self._assemble_queued, resource_id)

    def _assemble_queued(self, resource_id: str) -> None:
        try:
            self.assemble(resource_id)
        except Exception:  # the sweep finds it again: it is still complete and unassembled
            log.warning("assembling %s failed; the next sweep retries", resource_id, exc_info=True)
        finally:
            with self._lock:
                self._queued.discard(resource_id)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until the assemblies queued so far have run (tests, shutdown)."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.submit(lambda: None).result(timeout)

    def assemble_pending(self, *, limit: int = 16) -> int:
        """Assemble up to ``limit`` complete resources; returns how many were."""
        if not self.context.storage.uses_segments:
            return 0
        with self.context.db.read() as conn:
            waiting = resources.awaiting_assembly(conn, limit=limit)
        done = 0
        for resource_id in waiting:
            try:
                done += self.assemble(resource_id)
            except StorageError:
                log.warning("assembling %s failed; the next sweep retries", resource_id, exc_info=True)
        return done

    def assemble(self, resource_id: str) -> bool:
        """Assemble one resource; False when there is nothing to do or another holder is at it."""
        db, storage = self.context.db, self.context.storage
        holder, job = secrets.token_hex(16), assembly_job(resource_id)
        attempt = secrets.token_urlsafe(9)
        with db.write() as conn:
            try:
                record = resources.load_resource(conn, resource_id, for_update=True)
            except (ResourceNotFoundError, ResourceGoneError):
                return False
            if not record.is_complete or record.assembled_at is not None or not record.length:
                return False
            if record.block_size is None or record.concat == "final":
                return False
            if not jobs.take_lease(conn, job, holder, seconds=_ATTEMPT_LEASE):
                return False
            found = segments.load_segments(conn, resource_id)
            scope = storage.assembly_scope(attempt)
            attempt_garbage = garbage.record(
                conn, resource_id, record.object_key, garbage.UNREFERENCED, scope=scope, delay=_ATTEMPT_LEASE
            )
        began = time.monotonic()
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(job, holder, attempt_garbage, done), name="byterange-assembly-lease",
            daemon=True,
        )
        renewer.start()
        try:
            whole = storage.assemble(record.object_key, found, record.length, record.block_size, attempt)
        except BaseException:
            done.set()
            renewer.join()
            with db.write(durable=False) as conn:
                garbage.postpone(conn, attempt_garbage, 0)
                jobs.release_job_lease(conn, job, holder)
            raise
        done.set()
        renewer.join()
        with db.write() as conn:
            swapped = False
            try:
                current = resources.load_resource(conn, resource_id, for_update=True)
            except (ResourceNotFoundError, ResourceGoneError):
                current = None
            same = current is not None and current.object_key == record.object_key
            if same and current.assembled_at is None:  # type: ignore[union-attr]
                if segments.load_segments(conn, resource_id) == found:
                    segments.replace_segments(conn, resource_id, whole)
                    resources.mark_assembled(conn, resource_id)
                    garbage.drop(conn, [attempt_garbage])
                    # The pieces go once every GET that began on them has had time to finish;
                    # so does whatever else no segment names (the runs of a two-level assembly,
                    # an attempt that lost).
                    garbage.record(
                        conn,
                        resource_id,
                        record.object_key,
                        garbage.UNREFERENCED,
                        scope="",
                        delay=self.context.settings.s3_gc_grace,
                    )
                    swapped = True
            if not swapped:
                garbage.postpone(conn, attempt_garbage, 0)
            jobs.release_job_lease(conn, job, holder)
        log.info(
            "assembled %s (%d bytes, %d pieces) in %.2f s",
            resource_id, record.length, len(found), time.monotonic() - began,
        )
        return swapped

    def _renew(self, job: str, holder: str, attempt_garbage: int, done: threading.Event) -> None:
        """Keep the attempt's job lease, and its upload out of the collector's reach, while it runs.

        A lost lease is no hazard (the swap checks that the segments are still the ones
        assembled); it only lets another holder start an attempt of its own.
        """
        while not done.wait(_RENEW_EVERY):
            try:
                with self.context.db.write(durable=False) as conn:
                    jobs.take_lease(conn, job, holder, seconds=_ATTEMPT_LEASE)
                    garbage.postpone(conn, attempt_garbage, _ATTEMPT_LEASE)
            except Exception:  # a database hiccup: the next renewal retries
                log.warning("renewing the assembly lease %s failed", job, exc_info=True)
