"""Health checks: can this process reach its database and use its storage right now?

A load balancer or orchestrator asks ``GET /healthz`` on every instance; an instance whose
database or storage fails answers 503 and is taken out of rotation instead of failing uploads.
Each check is a real round trip: ``SELECT 1`` on the database, and create-write-sync-delete of a
probe object in the storage (a read-only mount or a full disk fails it; file permission bits
alone would not tell).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ByterangeError
from .uploads.service import UploadService

__all__ = ["Check", "run_checks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One component's result: ``ok``, how long the probe took, and a reason when it failed."""

    name: str
    ok: bool
    milliseconds: float
    output: str | None = None


def _timed(name: str, probe: Callable[[], None]) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except (ByterangeError, OSError) as exc:
        # The reason is logged; the response says only which component failed (no paths or SQL).
        log.warning("health check %s failed: %r", name, exc)
        return Check(name, False, (time.perf_counter() - started) * 1000, f"{name} unavailable")
    return Check(name, True, (time.perf_counter() - started) * 1000)


def run_checks(service: UploadService) -> list[Check]:
    """Check the database and the storage of ``service``; both run even if the first fails."""
    return [_timed("database", service.db.ping), _timed("storage", service.storage.check)]
