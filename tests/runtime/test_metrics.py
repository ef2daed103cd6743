"""The metrics module: what each lifecycle event counts, bounded labels, and prometheus_client's
multiprocess mode across real processes (as gunicorn workers use it)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from byterange_server.runtime import multiproc
from byterange_server.runtime.metrics import Metrics
from byterange_server.runtime.metrics import MetricsSink
from byterange_server.runtime.metrics import method_label
from byterange_server.runtime.metrics import multiprocess_dir
from byterange_server.runtime.metrics import status_class
from byterange_server.uploads.lifecycle import ResourceEvent

REPO_ROOT = Path(__file__).resolve().parents[2]


def event(kind: str, **data: object) -> ResourceEvent:
    return ResourceEvent(kind=kind, resource_id="r1", at=dt.datetime.now(dt.timezone.utc), data=data)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    assert metrics.registry is not None
    return metrics.registry.get_sample_value(name, labels)


def test_each_event_counts_what_it_means() -> None:
    metrics = Metrics()
    sink = MetricsSink(metrics)
    sink.after_commit(event("created"))
    sink.after_commit(event("progress", ranges=[[0, 10], [20, 25]], offset=10))
    # a tus final's assembly: partials' bytes by reference, no offset, not a write
    sink.after_commit(event("progress", ranges=[[0, 100]]))
    sink.after_commit(event("completed", failed=False))
    sink.after_commit(event("completed", failed=True))
    sink.after_commit(event("deleted"))
    sink.after_commit(event("expired"))
    sink.after_commit(event("expired"))
    assert sample(metrics, "byterange_resources_created_total") == 1
    assert sample(metrics, "byterange_writes_committed_total") == 1
    assert sample(metrics, "byterange_committed_bytes_total") == 15
    assert sample(metrics, "byterange_resources_completed_total", outcome="ok") == 1
    assert sample(metrics, "byterange_resources_completed_total", outcome="digest-mismatch") == 1
    assert sample(metrics, "byterange_resources_deleted_total") == 1
    assert sample(metrics, "byterange_resources_expired_total") == 2


def test_in_transaction_counts_nothing() -> None:
    """Only after_commit counts: a change that rolls back was never made."""
    metrics = Metrics()
    MetricsSink(metrics).in_transaction(None, event("created"))  # type: ignore[arg-type]
    assert sample(metrics, "byterange_resources_created_total") == 0


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.resources_created.inc()
    assert sample(first, "byterange_resources_created_total") == 1
    assert sample(second, "byterange_resources_created_total") == 0


def test_labels_are_bounded() -> None:
    assert [method_label(m) for m in ("GET", "PATCH", "PROPFIND", "get", "X" * 500)] == [
        "GET", "PATCH", "other", "other", "other"
    ]
    assert [status_class(s) for s in (100, 204, 308, 404, 460, 503, 99, 600)] == [
        "1xx", "2xx", "3xx", "4xx", "4xx", "5xx", "other", "other"
    ]


def test_every_metric_is_prefixed_and_documented() -> None:
    body, content_type = Metrics().exposition()
    assert content_type.startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    names = {family.name for family in families}
    assert names >= {
        "byterange_received_bytes", "byterange_writes_committed", "byterange_committed_bytes",
        "byterange_write_conflicts", "byterange_writes_interrupted", "byterange_resources_created",
        "byterange_resources_completed", "byterange_resources_deleted", "byterange_resources_expired",
        "byterange_problems", "byterange_request_duration_seconds", "byterange_requests_in_flight",
        "byterange_workers",
    }
    documented = (REPO_ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for family in families:
        if family.name.removesuffix("_created") in names - {family.name}:
            continue  # the creation time a single-process counter adds (not in multiprocess mode)
        assert family.name.startswith("byterange_"), family.name
        assert family.documentation, family.name
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}`" in documented, f"{shown} is not in docs/observability.md"


# -- multiprocess mode, across processes ---------------------------------------------------------

_CHILD = """
import json, os, sys
from byterange_server.runtime.metrics import Metrics, MetricsSink, multiprocess_dir
from byterange_server.uploads.lifecycle import ResourceEvent
import datetime as dt
assert multiprocess_dir() == os.environ["PROMETHEUS_MULTIPROC_DIR"]
metrics = Metrics()
action = sys.argv[1]
if action == "count":
    sink = MetricsSink(metrics)
    for _ in range(3):
        sink.after_commit(ResourceEvent("created", "r", dt.datetime.now(dt.timezone.utc)))
    metrics.received_bytes.labels("tus").inc(1000)
    metrics.requests_in_flight.inc()
    metrics.request_duration.labels("PATCH", "2xx").observe(0.2)
    print(json.dumps({"pid": os.getpid()}))
else:
    body, _ = metrics.exposition()
    print(json.dumps({"pid": os.getpid(), "body": body.decode()}))
"""


def _child(shared: Path, action: str) -> dict:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _CHILD, action], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _values(body: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_processes_add_up_and_dead_ones_keep_their_counts(tmp_path: Path) -> None:
    shared, private = multiproc.prepare({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "shared")})
    assert private is False and shared.is_dir()
    first = _child(shared, "count")["pid"]
    second = _child(shared, "count")["pid"]
    seen = _values(_child(shared, "scrape")["body"])
    assert seen[("byterange_resources_created_total", frozenset())] == 6
    assert seen[("byterange_received_bytes_total", frozenset({("protocol", "tus")}))] == 2000
    histogram_count = ("byterange_request_duration_seconds_count",
                       frozenset({("method", "PATCH"), ("status_class", "2xx")}))
    assert seen[histogram_count] == 2
    # Nobody said they died: their live gauges still count (and the scraper's own, 1).
    assert seen[("byterange_requests_in_flight", frozenset())] == 2
    assert seen[("byterange_workers", frozenset())] == 3

    environ = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    for pid in (first, second):
        multiproc.mark_process_dead(pid, environ)
    scraped = _child(shared, "scrape")
    seen = _values(scraped["body"])
    assert seen[("byterange_resources_created_total", frozenset())] == 6  # never backwards
    assert seen[histogram_count] == 2
    assert seen[("byterange_requests_in_flight", frozenset())] == 0
    assert seen[("byterange_workers", frozenset())] == 2  # the two scrapers (not marked dead)
    multiproc.mark_process_dead(scraped["pid"], environ)

    # A new start empties the directory: the values of the last run do not add up.
    multiproc.prepare({"PROMETHEUS_MULTIPROC_DIR": str(shared)})
    assert list(shared.glob("*.db")) == []
    seen = _values(_child(shared, "scrape")["body"])
    assert seen[("byterange_resources_created_total", frozenset())] == 0


def test_prepare_makes_a_private_directory_when_none_is_given(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    path, private = multiproc.prepare(environ)
    try:
        assert private and path.is_dir() and environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
        assert path.name.startswith("byterange-metrics-")
    finally:
        multiproc.remove(path)
    assert not path.exists()
    environ = {"PROMETHEUS_MULTIPROC_DIR": ""}  # empty counts as unset
    path, private = multiproc.prepare(environ)
    multiproc.remove(path)
    assert private


def test_prepare_keeps_what_is_not_a_metrics_file(tmp_path: Path) -> None:
    shared = tmp_path / "m"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"x")
    (shared / "README").write_text("mine")
    multiproc.prepare({"PROMETHEUS_MULTIPROC_DIR": str(shared)})
    assert sorted(p.name for p in shared.iterdir()) == ["README"]


def _worker_files(directory: Path, pid: int) -> list[str]:
    names = [f"gauge_livesum_{pid}.db", f"gauge_liveall_{pid}.db", f"counter_{pid}.db", "gauge_livesum_7.db"]
    for name in names:
        (directory / name).write_bytes(b"")
    return names


def test_mark_process_dead_drops_the_live_gauges_of_that_worker_only(tmp_path: Path) -> None:
    _worker_files(tmp_path, 12345)
    multiproc.mark_process_dead(12345, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_12345.db", "gauge_livesum_7.db"]


def test_mark_process_dead_without_the_directory_is_a_no_op(monkeypatch, tmp_path: Path) -> None:
    """The environment passed in decides, not the process's own: without the variable there,
    nothing is removed, even where the process's variable points."""
    names = _worker_files(tmp_path, 12345)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for environ in ({}, {"PROMETHEUS_MULTIPROC_DIR": ""}):
        multiproc.mark_process_dead(12345, environ)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_late_variable_falls_back_to_per_process_values(monkeypatch, tmp_path, caplog) -> None:
    """prometheus_client picks its mode at import; a variable set afterwards (already imported
    here) must not make the app write nowhere: it counts per process and says so."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert multiprocess_dir() is None
    assert "imported before" in caplog.text
    metrics = Metrics()
    assert metrics.registry is not None
    metrics.resources_created.inc()
    assert sample(metrics, "byterange_resources_created_total") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=1.0.0", None])
def test_the_exposition_format_follows_accept(accept: str | None) -> None:
    body, content_type = Metrics().exposition(accept)
    if accept:
        assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    else:
        assert content_type.startswith("text/plain")
