"""Parsing the resource state, sorting failures into retryable or not, and the backoff policy."""

from __future__ import annotations

import json
import random
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from email.utils import format_datetime

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.client.errors import ProtocolError
from byterange_server.client.errors import ServerRefused
from byterange_server.client.remote import RemoteState
from byterange_server.client.remote import parse_limits
from byterange_server.client.transport import RetryPolicy
from byterange_server.client.transport import Transient
from byterange_server.client.transport import Transport
from byterange_server.client.transport import check_response
from byterange_server.client.transport import normalize_url
from byterange_server.client.transport import parse_retry_after
from byterange_server.extents import Extent

URL = "http://example.test/files/abc"


# -- RemoteState ---------------------------------------------------------------------------------


def test_state_of_an_incomplete_byterange_resource():
    state = RemoteState.from_headers(
        URL,
        200,
        {
            "Upload-Offset": "4",
            "Upload-Length": "12",
            "Upload-Complete": "?0",
            "Committed-Ranges": "bytes=0-3,8-11",
            "Link": '</files/abc/committed-ranges>; rel="committed-ranges"',
            "Content-Length": "4",
        },
        head=True,
    )
    assert state.is_byterange_resource
    assert (state.length, state.offset, state.complete) == (12, 4, False)
    assert state.committed == [Extent(0, 4), Extent(8, 12)]
    assert state.committed_link == "http://example.test/files/abc/committed-ranges"
    assert state.etag is None and state.digests == {}


def test_state_of_a_complete_resource():
    state = RemoteState.from_headers(
        URL,
        200,
        {
            "Upload-Length": "12",
            "Upload-Complete": "?1",
            "Committed-Ranges": "bytes=0-11",
            "ETag": '"xyz"',
            "Repr-Digest": "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
            "Accept-Ranges": "bytes",
        },
        head=True,
    )
    assert state.complete and state.etag is not None and state.etag.format() == '"xyz"'
    assert state.digests["sha-256"].hex().startswith("e3b0c442")
    assert state.accept_ranges


def test_absent_committed_ranges_means_unknown_not_empty():
    state = RemoteState.from_headers(URL, 200, {"Upload-Complete": "?0", "Upload-Length": "5"})
    assert state.committed is None
    none = RemoteState.from_headers(URL, 200, {"Upload-Complete": "?0", "Committed-Ranges": "none"})
    assert none.committed == []


def test_plain_http_server_head():
    state = RemoteState.from_headers(
        URL, 200, {"Content-Length": "100", "ETag": '"v1"', "Accept-Ranges": "bytes"}, head=True
    )
    assert not state.is_byterange_resource
    assert state.length == 100 and state.etag is not None and state.accept_ranges


def test_weak_etags_cannot_validate_ranges():
    state = RemoteState.from_headers(URL, 200, {"ETag": 'W/"v1"'}, head=True)
    assert state.etag is None


def test_content_length_of_a_get_is_not_the_length():
    state = RemoteState.from_headers(URL, 206, {"Content-Length": "10"})
    assert state.length is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Upload-Length": "-1"},
        {"Upload-Length": "12a"},
        {"Upload-Offset": "1234567890123456"},
        {"Upload-Complete": "yes"},
        {"Committed-Ranges": "bytes=5-1"},
        {"Committed-Ranges": "items=0-1"},
        {"ETag": "unquoted"},
        {"Repr-Digest": "sha-256=:AAAA:"},
        {"Link": "no-brackets; rel=x"},
    ],
    ids=lambda h: next(iter(h.items()))[0] + "=" + next(iter(h.values())),
)
def test_malformed_state_is_a_protocol_error(headers):
    with pytest.raises(ProtocolError, match="malformed state header"):
        RemoteState.from_headers(URL, 200, headers, head=True)


@pytest.mark.parametrize(
    ("value", "limits"),
    [
        ("max-size=1099511627776, max-parts=10000, max-part-header-bytes=8192",
         {"max-size": 1099511627776, "max-parts": 10000, "max-part-header-bytes": 8192}),
        ("max-parts=4, note=\"text\", flag", {"max-parts": 4}),
        (None, {}),
        ("", {}),
        ("max-parts=", {}),
        ("max-parts=4\u00e9", {}),
    ],
)
def test_parse_limits(value, limits):
    assert parse_limits(value) == limits


# -- check_response --------------------------------------------------------------------------------


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> urllib3.HTTPResponse:
    return urllib3.HTTPResponse(body=body, status=status, headers=headers or {}, preload_content=True)


def problem(status: int, title: str, **headers: str) -> urllib3.HTTPResponse:
    body = json.dumps({"type": "tag:x", "title": title, "status": status, "detail": "the detail"}).encode()
    return response(status, {"Content-Type": "application/problem+json", **headers}, body)


@pytest.mark.parametrize("status", [200, 201, 204, 206])
def test_success_passes(status):
    check_response("PATCH", URL, response(status))


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "7"}, 7.0),
        (429, {"Retry-After": "2"}, 2.0),
        (429, {}, None),
        (409, {"Retry-After": "1"}, 1.0),
        (408, {}, None),  # the server timed the request out: a new one may be quicker
        (423, {}, None),  # locked for now
        (425, {}, None),  # too early: replayed early data
        (504, {}, None),
    ],
)
def test_retryable_statuses(status, headers, retry_after):
    with pytest.raises(Transient) as caught:
        check_response("PATCH", URL, problem(status, "busy", **headers))
    assert caught.value.retry_after == retry_after and caught.value.status == status
    assert str(status) in str(caught.value)
    assert "busy: the detail" in str(caught.value)  # the retry notice says why


@pytest.mark.parametrize("status", [501, 505])
def test_server_errors_that_no_repetition_changes_are_final(status):
    # 501: the server (or a proxy) does not implement the method; 505: nor the HTTP version.
    with pytest.raises(ServerRefused) as caught:
        check_response("PATCH", URL, problem(status, "Not Implemented"))
    assert caught.value.status == status and caught.value.exit_code == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 412, 413, 415, 416, 422])
def test_other_client_errors_are_final(status):
    with pytest.raises(ServerRefused) as caught:
        check_response("PATCH", URL, problem(status, "No way"))
    error = caught.value
    assert error.status == status and error.problem["title"] == "No way"
    assert str(error) == f"PATCH {URL}: HTTP {status} No way: the detail"
    assert error.exit_code == 4


def test_a_conflict_without_retry_after_is_final():
    # 409 for different bytes over committed ones: resending cannot help.
    with pytest.raises(ServerRefused):
        check_response("PATCH", URL, problem(409, "Conflicting bytes"))


def test_the_figures_of_a_problem_are_part_of_the_message():
    body = json.dumps({
        "type": "tag:x:too-large", "title": "Resource would exceed the maximum size", "status": 413,
        "detail": "The declared length exceeds the maximum resource size.", "instance": "/files",
        "request-id": "abc", "length": 2_000_000, "max-size": 1_048_576,
    }).encode()
    with pytest.raises(ServerRefused) as caught:
        check_response("POST", URL, response(413, {"Content-Type": "application/problem+json"}, body))
    assert str(caught.value) == (
        f"POST {URL}: HTTP 413 Resource would exceed the maximum size: The declared length exceeds the "
        "maximum resource size. (length 2000000 (1.9 MiB), max-size 1048576 (1.0 MiB))"
    )


def test_non_json_error_body_is_ignored():
    with pytest.raises(ServerRefused) as caught:
        check_response("GET", URL, response(404, {"Content-Type": "text/html"}, b"<h1>no</h1>"))
    assert caught.value.problem == {}
    assert str(caught.value) == f"GET {URL}: HTTP 404"


# -- Retry-After and backoff ---------------------------------------------------------------------


def test_retry_after_forms():
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("\u0665") is None  # a non-ASCII digit


@given(st.integers(1, 60), st.floats(0.01, 5), st.floats(0.1, 100), st.integers(0, 2**32))
def test_full_jitter_stays_below_the_capped_ceiling(failures, base, cap, seed):
    policy = RetryPolicy(base=base, cap=cap)
    wait = policy.delay(failures, rng=random.Random(seed))
    assert 0 <= wait <= min(cap, base * 2 ** (failures - 1))


@given(st.integers(1, 60), st.floats(0, 1000), st.integers(0, 2**32))
def test_retry_after_is_a_floor_capped_by_the_policy(failures, retry_after, seed):
    policy = RetryPolicy(base=0.5, cap=30)
    wait = policy.delay(failures, retry_after, rng=random.Random(seed))
    assert min(retry_after, 30) <= wait <= 30


def test_backoff_spreads_out():
    policy = RetryPolicy(base=1, cap=30)
    rng = random.Random(1)
    waits = [policy.delay(6, rng=rng) for _ in range(200)]
    assert max(waits) > 20 and min(waits) < 5  # full jitter: anywhere below the ceiling


# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://127.0.0.1:8080/files", "http://127.0.0.1:8080/files"),
        ("HTTPS://example.test/files", "HTTPS://example.test/files"),
        ("127.0.0.1:8080/files", "http://127.0.0.1:8080/files"),  # curl's rule: http://
        ("localhost:8080/files", "http://localhost:8080/files"),
        (" example.test/files ", "http://example.test/files"),
    ],
)
def test_urls_are_http_or_https(url, normal):
    assert normalize_url(url) == normal


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/files", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("http:///files", "no host"),
        ("http://host:port/files", "not a URL"),
        ("", "no host"),
    ],
)
def test_other_urls_are_refused_before_any_request(url, message):
    with pytest.raises(ValueError, match=message):
        normalize_url(url)


def test_a_url_the_transport_cannot_request_is_not_transient():
    # A Location the server sent (the client checks the URLs it is given): no retry can fix it.
    with Transport() as transport, pytest.raises(ProtocolError, match="not a URL the client can request"):
        transport.request("GET", "ftp://127.0.0.1/files")
