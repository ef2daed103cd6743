"""Assembly: the pieces of a complete resource on an object store become one object.

A complete resource is read from its pieces (its ``segments``) until then, so assembly may run
whenever it suits: the sweep does it (expiry.py), one resource at a time under a job lease of
its own. Each attempt writes a new object (``assembly_scope(attempt)``), recorded as garbage
first; one transaction then swaps the resource's segments for the single segment of that object
and records the replaced pieces as garbage after a grace period (a GET that began on the pieces
finishes on them). An attempt that fails or loses the race leaves only garbage.
"""

from __future__ import annotations

import logging
import secrets
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

#: Seconds an assembly attempt may take before its multipart upload counts as abandoned.
_ATTEMPT_LEASE = 3600.0


def assembly_job(resource_id: str) -> str:
    return jobs.digest_job(resource_id).replace("digest:", "assemble:", 1)


class Assembler:
    def __init__(self, context: WriteContext) -> None:
        self.context = context

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
        try:
            whole = storage.assemble(record.object_key, found, record.length, record.block_size, attempt)
        except BaseException:
            with db.write(durable=False) as conn:
                garbage.postpone(conn, attempt_garbage, 0)
                jobs.release_job_lease(conn, job, holder)
            raise
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
                    # The pieces go once every GET that began on them has had time to finish.
                    garbage.record(
                        conn,
                        resource_id,
                        record.object_key,
                        garbage.UNREFERENCED,
                        scope=storage.write_scope(""),
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
