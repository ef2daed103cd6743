"""Prometheus metrics, shared by every gunicorn worker (``prometheus_client`` multiprocess mode).

One :class:`Metrics` per app holds the metric objects. Where they count:

- lifecycle counters (created, completed, deleted, expired, commits and committed bytes) come
  from :class:`MetricsSink`, an :class:`~byterange_server.uploads.lifecycle.EventSink` that counts in
  ``after_commit``, so a change that rolled back is never counted;
- request figures (received bytes, latency, in-flight, conflicts, interruptions) come from the
  WSGI middleware in ``observe.py``.

Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set *before* ``prometheus_client``
is imported (it picks its value class at import time). ``gunicorn_conf.py`` sets it in the master
(a private temporary directory unless the operator gave one), so every worker forked afterwards
writes its values to its own memory-mapped files there, and any worker that serves ``/metrics``
reads all of them (:meth:`Metrics.exposition`). Without the variable each process counts on its own, in a
registry private to its app: right for one process and for tests.

Labels are bounded by construction: protocols, methods and status classes are mapped onto fixed
sets, problem codes are the fixed codes of errors.py. No resource ids and no paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import multiprocess
from prometheus_client import values
from prometheus_client.exposition import choose_encoder

from ..uploads.lifecycle import EventSink
from ..uploads.lifecycle import ResourceEvent
from .multiproc import MULTIPROC_ENV

__all__ = [
    "MULTIPROC_ENV",
    "Metrics",
    "MetricsSink",
    "method_label",
    "multiprocess_dir",
    "status_class",
]

log = logging.getLogger(__name__)


PROTOCOLS = ("byterange", "tus", "ietf", "other")
#: Methods with a label of their own; anything else is ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Uploads last from milliseconds (HEAD) to many minutes (a large PATCH).
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)


def multiprocess_dir() -> str | None:
    """The shared directory when multiprocess mode is on for this process, else None."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client was imported before the variable was set: values would stay private.
        log.warning("%s is set but prometheus_client was imported before it; metrics are per process",
                    MULTIPROC_ENV)
        return None
    return path


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    """The metric objects of one app.

    In multiprocess mode they are not registered anywhere (their values live in the shared
    files); otherwise in :attr:`registry`, which is private to this instance.
    """

    def __init__(self) -> None:
        self.shared_dir = multiprocess_dir()
        self.registry: CollectorRegistry | None = None if self.shared_dir else CollectorRegistry()
        registry = self.registry
        self.received_bytes = Counter(
            "byterange_received_bytes", "Request body bytes read, by protocol (counted as they arrive).",
            ["protocol"], registry=registry,
        )
        self.writes_committed = Counter(
            "byterange_writes_committed", "Write requests that committed new ranges (wholly or a prefix).",
            registry=registry,
        )
        self.committed_bytes = Counter(
            "byterange_committed_bytes", "Bytes in the ranges committed by writes.", registry=registry,
        )
        self.write_conflicts = Counter(
            "byterange_write_conflicts", "Writes refused with a 409 conflict, by problem code.",
            ["protocol", "code"], registry=registry,
        )
        self.writes_interrupted = Counter(
            "byterange_writes_interrupted", "Writes whose body ended early (truncated-body).",
            ["protocol"], registry=registry,
        )
        self.resources_created = Counter(
            "byterange_resources_created", "Resources allocated.", registry=registry,
        )
        self.resources_completed = Counter(
            "byterange_resources_completed", "Resources that became complete, by digest outcome.",
            ["outcome"], registry=registry,
        )
        self.resources_deleted = Counter(
            "byterange_resources_deleted", "Resources deleted by a client.", registry=registry,
        )
        self.resources_expired = Counter(
            "byterange_resources_expired", "Incomplete resources removed by the expiry sweep.",
            registry=registry,
        )
        self.problems = Counter(
            "byterange_problems", "Problem responses, by problem code.", ["code"], registry=registry,
        )
        self.request_duration = Histogram(
            "byterange_request_duration_seconds",
            "Time from the start of a request to the end of its response body.",
            ["method", "status_class"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.requests_in_flight = Gauge(
            "byterange_requests_in_flight", "Requests being handled now.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "byterange_workers", "Live processes serving the app (gunicorn workers).",
            registry=registry, multiprocess_mode="livesum",
        )
        self.workers.set(1)
        # Every series of a fixed label set exists from the start, so rate() sees the first
        # increment (a series born at 1 has no earlier sample to compare with).
        for protocol in PROTOCOLS:
            self.received_bytes.labels(protocol)
            self.writes_interrupted.labels(protocol)
        for outcome in ("ok", "digest-mismatch"):
            self.resources_completed.labels(outcome)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """This app's metrics (all workers' in multiprocess mode): ``(body, content type)``."""
        if self.registry is not None:
            registry = self.registry
        else:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.shared_dir)
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


class MetricsSink(EventSink):
    """Counts lifecycle events once their transaction committed."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def after_commit(self, event: ResourceEvent) -> None:
        metrics = self.metrics
        if event.kind == "created":
            metrics.resources_created.inc()
        elif event.kind == "progress":
            # A write's commit carries the offset after it; the assembly of a tus final upload
            # (its partials' bytes, referenced, not received) does not and is not a write.
            if "offset" in event.data:
                metrics.writes_committed.inc()
                metrics.committed_bytes.inc(_range_bytes(event.data))
        elif event.kind == "completed":
            metrics.resources_completed.labels("digest-mismatch" if event.data.get("failed") else "ok").inc()
        elif event.kind == "deleted":
            metrics.resources_deleted.inc()
        elif event.kind == "expired":
            metrics.resources_expired.inc()


def _range_bytes(data: Mapping[str, object]) -> int:
    ranges = data.get("ranges") or []
    return sum(stop - start for start, stop in ranges)  # type: ignore[union-attr,misc]
