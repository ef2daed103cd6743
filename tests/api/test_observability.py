"""Metrics, request ids and access-log lines through the Flask test client, on SQLite and
PostgreSQL: each counter moves for its own cause, and only for it.

The app's metrics live in a registry of its own (no ``PROMETHEUS_MULTIPROC_DIR`` here), so every
test starts from zero; the counts are read back through ``GET /metrics`` itself. Responses are
read to their end: the observation of a request ends after its last body chunk.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from byterange_server import create_app
from byterange_server.db import clock
from byterange_server.db.ledger import resources
from byterange_server.runtime.requestlog import ACCESS_LOGGER
from byterange_server.runtime.requestlog import configure_logging

from .helpers import MESSAGE
from .helpers import MOUNT
from .helpers import BodyStream
from .helpers import allocate
from .helpers import patch_message
from .helpers import problem
from .helpers import put_range
from .helpers import send_stream
from .helpers import sha256_field
from .tus.helpers import final
from .tus.helpers import partial

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
HEX32 = re.compile(r"[0-9a-f]{32}")


def scrape(client: Any, path: str = "/metrics", **headers: str) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` of one scrape."""
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict) -> dict[tuple[str, frozenset], float]:
    """Samples that changed (histogram sums left out: durations are not for exact checks)."""
    changed = {}
    for key in set(before) | set(after):
        name = key[0]
        if name.endswith(("_sum", "_created", "_bucket")) or "in_flight" in name:
            continue
        diff = after.get(key, 0.0) - before.get(key, 0.0)
        if diff:
            changed[key] = diff
    return changed


def moved(before: dict, after: dict) -> dict[str, float]:
    """The changed samples as ``name{label=value,…}`` → difference."""
    out = {}
    for (name, labels), diff in delta(before, after).items():
        shown = ",".join(f"{k}={v}" for k, v in sorted(labels))
        out[f"{name}{{{shown}}}" if shown else name] = diff
    return out


def _message(first: int, data: bytes, length: int | str = "*") -> bytes:
    return f"Content-Range: bytes {first}-{first + len(data) - 1}/{length}\r\n\r\n".encode() + data


# -- each counter and its cause ----------------------------------------------------------------


def test_creation_write_completion_and_deletion(client) -> None:
    before = scrape(client)
    path = allocate(client, 8)
    response = patch_message(client, path, 0, b"12345678", 8)
    assert response.status_code == 204
    body_size = len(_message(0, b"12345678", 8))
    doomed = allocate(client)
    assert client.delete(doomed).status_code == 204
    after = scrape(client)
    assert moved(before, after) == {
        "byterange_resources_created_total": 2,
        "byterange_writes_committed_total": 1,
        "byterange_committed_bytes_total": 8,
        "byterange_resources_completed_total{outcome=ok}": 1,
        "byterange_resources_deleted_total": 1,
        "byterange_received_bytes_total{protocol=byterange}": body_size,
        "byterange_request_duration_seconds_count{method=POST,status_class=2xx}": 2,
        "byterange_request_duration_seconds_count{method=PATCH,status_class=2xx}": 1,
        "byterange_request_duration_seconds_count{method=DELETE,status_class=2xx}": 1,
        # the first scrape, finished before the second one read the values
        "byterange_request_duration_seconds_count{method=GET,status_class=2xx}": 1,
    }


def test_a_409_conflict_counts_as_a_conflict_and_commits_nothing(client) -> None:
    path = allocate(client, 4)
    assert patch_message(client, path, 0, b"abcd", 4).status_code == 204
    before = scrape(client)
    problem(patch_message(client, path, 0, b"abXd", 4), 409, "content-mismatch")
    after = scrape(client)
    changes = moved(before, after)
    assert changes["byterange_write_conflicts_total{code=content-mismatch,protocol=byterange}"] == 1
    assert changes["byterange_problems_total{code=content-mismatch}"] == 1
    assert changes["byterange_request_duration_seconds_count{method=PATCH,status_class=4xx}"] == 1
    assert "byterange_writes_committed_total" not in changes
    assert "byterange_committed_bytes_total" not in changes


def test_a_tus_offset_conflict_is_labelled_tus(client) -> None:
    response = client.post(MOUNT, headers={**TUS, "Upload-Length": "4"})
    assert response.status_code == 201
    path = response.headers["Location"]
    before = scrape(client)
    response = client.patch(path, data=b"cd", headers={**TUS, "Content-Type": OCTETS, "Upload-Offset": "2"})
    problem(response, 409, "offset-mismatch")
    assert moved(before, scrape(client)) == {
        "byterange_write_conflicts_total{code=offset-mismatch,protocol=tus}": 1,
        "byterange_problems_total{code=offset-mismatch}": 1,
        # refused before the body was used: the app reads none of it (gunicorn's worker
        # discards it or closes the connection), so no bytes are counted as received
        "byterange_request_duration_seconds_count{method=PATCH,status_class=4xx}": 1,
        "byterange_request_duration_seconds_count{method=GET,status_class=2xx}": 1,
    }


def test_a_refused_read_is_no_write_conflict(client) -> None:
    """409 incomplete-resource on GET: a problem, but not a write conflict."""
    path = allocate(client, 4)
    before = scrape(client)
    problem(client.get(path), 409, "incomplete-resource")
    changes = moved(before, scrape(client))
    assert changes["byterange_problems_total{code=incomplete-resource}"] == 1
    assert not [key for key in changes if key.startswith("byterange_write_conflicts")]


def test_an_interrupted_patch_counts_its_prefix_and_the_interruption(client) -> None:
    data = bytes(range(256)) * 4
    path = allocate(client, 2048)
    body = _message(100, data, 2048)
    sent = body.index(data) + 300  # 300 bytes of data arrive, then the client is gone
    before = scrape(client)
    response = send_stream(client, "PATCH", path, BodyStream(body[:sent], chunk=100), len(body),
                           {"Content-Type": MESSAGE})
    problem(response, 400, "truncated-body")
    assert moved(before, scrape(client)) == {
        "byterange_writes_interrupted_total{protocol=byterange}": 1,
        "byterange_problems_total{code=truncated-body}": 1,
        # persist (the default): the received prefix is committed
        "byterange_writes_committed_total": 1,
        "byterange_committed_bytes_total": 300,
        "byterange_received_bytes_total{protocol=byterange}": sent,
        "byterange_request_duration_seconds_count{method=PATCH,status_class=4xx}": 1,
        "byterange_request_duration_seconds_count{method=GET,status_class=2xx}": 1,
    }


def test_an_atomic_interrupted_patch_commits_nothing(client) -> None:
    path = allocate(client, 64)
    body = _message(0, b"x" * 64, 64)
    before = scrape(client)
    response = send_stream(client, "PATCH", path, BodyStream(body[:-10]), len(body),
                           {"Content-Type": MESSAGE, "Prefer": "transaction=atomic"})
    problem(response, 400, "truncated-body")
    changes = moved(before, scrape(client))
    assert changes["byterange_writes_interrupted_total{protocol=byterange}"] == 1
    assert "byterange_writes_committed_total" not in changes


def test_a_digest_mismatch_completion_has_its_own_outcome(client) -> None:
    path = allocate(client, 3, {"Repr-Digest": sha256_field(b"abc")})
    before = scrape(client)
    problem(put_range(client, path, 0, b"abd", 3), 409, "repr-digest-mismatch")
    changes = moved(before, scrape(client))
    assert changes["byterange_resources_completed_total{outcome=digest-mismatch}"] == 1
    assert "byterange_resources_completed_total{outcome=ok}" not in changes


def test_expiry_is_counted_by_the_sweep(client, service, monkeypatch) -> None:
    allocate(client, 10)
    allocate(client)
    before = scrape(client)
    # The database's clock decides expiry: move it past the resource's expiry.
    monkeypatch.setattr(clock, "offset_ms", (service.settings.expire_after + 1) * 1000)
    assert service.remove_expired() == 2
    assert moved(before, scrape(client)) == {
        "byterange_resources_expired_total": 2,
        "byterange_request_duration_seconds_count{method=GET,status_class=2xx}": 1,
    }


def test_a_rolled_back_creation_is_not_counted(client, service, monkeypatch) -> None:
    """Counted after commit only: an allocation whose transaction fails leaves no trace."""
    before = scrape(client)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database says no")

    monkeypatch.setattr(resources, "insert_resource", refuse)
    response = client.post(MOUNT, headers={"Upload-Length": "4"})
    problem(response, 500)
    changes = moved(before, scrape(client))
    assert "byterange_resources_created_total" not in changes
    assert changes["byterange_request_duration_seconds_count{method=POST,status_class=5xx}"] == 1


def test_a_tus_final_upload_is_created_and_completed_but_not_written(client) -> None:
    """Its ranges are its partials' bytes, by reference: no write, no committed bytes."""
    before = scrape(client)
    parts = [partial(client, b"abc"), partial(client, b"defg")]
    final(client, parts).get_data()
    assert moved(before, scrape(client)) == {
        "byterange_resources_created_total": 3,
        "byterange_resources_completed_total{outcome=ok}": 3,
        "byterange_writes_committed_total": 2,
        "byterange_committed_bytes_total": 7,
        "byterange_received_bytes_total{protocol=tus}": 7,
        "byterange_request_duration_seconds_count{method=POST,status_class=2xx}": 3,
        "byterange_request_duration_seconds_count{method=PATCH,status_class=2xx}": 2,
        "byterange_request_duration_seconds_count{method=GET,status_class=2xx}": 1,
    }


def test_in_flight_counts_the_scrape_itself_only(client) -> None:
    allocate(client)
    samples = scrape(client)
    assert value(samples, "byterange_requests_in_flight") == 1
    assert value(samples, "byterange_workers") == 1


# -- the endpoint ------------------------------------------------------------------------------


@pytest.fixture
def make_client(settings_overrides: dict[str, Any]) -> Iterator[Any]:
    apps = []

    def make(**overrides: str) -> Any:
        app = create_app({**settings_overrides, **overrides})
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["byterange"].db.dispose()


def test_the_token_guards_the_endpoint(make_client) -> None:
    client = make_client(METRICS_TOKEN="s3cret-scraper")
    for authorization in (None, "Bearer wrong", "Bearer s3cret-scraper-and-more", "Basic s3cret-scraper"):
        headers = {"Authorization": authorization} if authorization else {}
        body = problem(client.get("/metrics", headers=headers), 401, "invalid-credentials")
        assert "s3cret" not in json.dumps(body)
    response = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    response.get_data()
    assert scrape(client, Authorization="Bearer s3cret-scraper")
    assert scrape(client, Authorization="bearer  s3cret-scraper ")


def test_the_path_can_move_or_go(make_client) -> None:
    moved_client = make_client(METRICS_PATH="internal/prom/")
    assert scrape(moved_client, "/internal/prom")
    problem(moved_client.get("/metrics"), 404)
    off = make_client(METRICS_PATH="")
    problem(off.get("/metrics"), 404)
    # requests are still observed: ids and log lines do not depend on the endpoint
    response = off.post(MOUNT)
    assert HEX32.fullmatch(response.headers["X-Request-Id"])


def test_openmetrics_when_asked(client) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")


# -- request ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("req-7f3a.b:c/d@e+f=", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("has space", False),
        ("-leading-dash", False),
        ("quote\"d", False),
        ("ünïcode", False),
    ],
)
def test_an_incoming_request_id_is_kept_only_when_sane(client, sent: str, kept: bool) -> None:
    response = client.post(MOUNT, headers={"X-Request-Id": sent})
    echoed = response.headers["X-Request-Id"]
    assert response.headers.getlist("X-Request-Id") == [echoed]
    if kept:
        assert echoed == sent
    else:
        assert HEX32.fullmatch(echoed), echoed


def test_each_request_gets_its_own_id(client) -> None:
    ids = {client.post(MOUNT).headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5 and all(HEX32.fullmatch(rid) for rid in ids)


def test_problem_documents_carry_the_request_id(client) -> None:
    response = client.get(MOUNT + "/no-such-resource-id", headers={"X-Request-Id": "trace-42"})
    body = problem(response, 404, "not-found")
    assert body["request-id"] == "trace-42" == response.headers["X-Request-Id"]


# -- access-log lines --------------------------------------------------------------------------


def access_lines(stream_text: str) -> list[dict[str, Any]]:
    return [
        record
        for record in (json.loads(line) for line in stream_text.splitlines())
        if record["logger"] == ACCESS_LOGGER
    ]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("json", "info", stream=stream, force=True)
    assert handler is not None
    package = logging.getLogger("byterange_server")
    try:
        yield stream
    finally:
        package.removeHandler(handler)
        package.propagate = True
        package.setLevel(logging.NOTSET)
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_one_access_line_per_request_with_its_facts(client, log_stream) -> None:
    path = allocate(client, 4)
    resource_id = path.rsplit("/", 1)[1]
    body = _message(0, b"abXd", 4)
    first = client.patch(path, data=_message(0, b"abcd", 4), headers={"Content-Type": MESSAGE})
    assert first.status_code == 204
    response = client.patch(path + "?sig=SECRET&exp=1", data=body,
                            headers={"Content-Type": MESSAGE, "X-Request-Id": "conflict-1"})
    problem_size = len(response.get_data())
    lines = access_lines(log_stream.getvalue())
    assert [(line["method"], line["status"]) for line in lines] == [
        ("POST", 201), ("PATCH", 204), ("PATCH", 409)
    ]
    line = lines[-1]
    assert line == {
        "time": line["time"],
        "level": "info",
        "logger": ACCESS_LOGGER,
        "message": f"PATCH {path} 409",
        "pid": line["pid"],
        "request_id": "conflict-1",
        "method": "PATCH",
        "path": path,
        "route": MOUNT + "/<resource_id>",
        "status": 409,
        "bytes_in": len(body),
        "bytes_out": problem_size,
        "duration_ms": line["duration_ms"],
        "protocol": "byterange",
        "resource_id": resource_id,
        "problem": "content-mismatch",
        "client": "127.0.0.1",
    }
    assert line["duration_ms"] >= 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert "SECRET" not in log_stream.getvalue()


def test_protocols_are_told_apart(client, log_stream) -> None:
    client.post(MOUNT, headers={**TUS, "Upload-Length": "3"}).get_data()
    client.post(MOUNT, headers={"Upload-Draft-Interop-Version": "8", "Upload-Complete": "?0",
                                "Upload-Length": "3"}).get_data()
    client.post(MOUNT).get_data()
    client.get("/healthz").get_data()
    lines = access_lines(log_stream.getvalue())
    assert [(line["protocol"], line["status"]) for line in lines] == [
        ("tus", 201), ("ietf", 201), ("byterange", 201), ("other", 200)
    ]


def test_every_record_made_during_a_request_carries_its_id(client, service, monkeypatch, log_stream) -> None:
    path = allocate(client)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(service, "state", boom)
    response = client.get(path, headers={"X-Request-Id": "trace-500"})
    body = problem(response, 500)
    assert body["request-id"] == "trace-500"
    records = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    during = [record for record in records if record.get("request_id") == "trace-500"]
    loggers = [record["logger"] for record in during]
    assert "byterange_server.api" in loggers and ACCESS_LOGGER in loggers, records
    error = next(record for record in during if record["logger"] == "byterange_server.api")
    assert error["level"] == "error" and "RuntimeError: unexpected" in error["exception"]
    # and none outside it
    later = logging.getLogger("byterange_server.test")
    later.warning("after the request")
    last = json.loads(log_stream.getvalue().splitlines()[-1])
    assert last["message"] == "after the request" and "request_id" not in last


def test_the_access_log_can_be_turned_off(make_client, log_stream) -> None:
    client = make_client(REQUEST_LOG="off")
    client.post(MOUNT).get_data()
    assert access_lines(log_stream.getvalue()) == []
