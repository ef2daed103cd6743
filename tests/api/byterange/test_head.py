"""HEAD and the state headers (PROTOCOL.md §4)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import event
from werkzeug.http import parse_range_header

from byterange_server import create_app
from byterange_server.protocol.ranges import format_ranges

from ..helpers import MOUNT
from ..helpers import all_committed_ranges
from ..helpers import allocate
from ..helpers import committed_link
from ..helpers import extent_rows
from ..helpers import head_state
from ..helpers import parse_state
from ..helpers import patch_message
from ..helpers import patch_multipart
from ..helpers import problem
from ..helpers import sha256_field
from ..helpers import upload
from ..helpers import write


def test_head_of_empty_incomplete_resource(client):
    path = allocate(client, 100)
    response = client.head(path)
    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Content-Length"] == "0"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Committed-Ranges"] == "none"
    assert response.headers["Cache-Control"] == "no-store"
    assert committed_link(response.headers)
    assert "ETag" not in response.headers and "Repr-Digest" not in response.headers


def test_head_of_sparse_resource(client):
    path = allocate(client, 100)
    write(client, path, 0, b"a" * 10)
    write(client, path, 50, b"b" * 10)
    write(client, path, 90, b"c" * 10)
    response = client.head(path)
    assert response.headers["Upload-Offset"] == "10"
    assert response.headers["Content-Length"] == "10"  # the committed prefix (byte-range draft)
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Committed-Ranges"] == "bytes=0-9,50-59,90-99"
    assert response.headers["Cache-Control"] == "no-store"


def test_head_offset_is_zero_while_byte_zero_is_missing(client):
    path = allocate(client)
    write(client, path, 1, b"bcd")
    state = head_state(client, path)
    assert state["offset"] == 0 and state["content_length"] == "0"
    assert state["ranges_header"] == "bytes=1-3"
    assert state["length"] is None and "Upload-Length" not in state["headers"]


def test_committed_ranges_is_an_rfc9110_ranges_specifier(client):
    path = allocate(client, 1000)
    for first in (0, 100, 300, 999):
        write(client, path, first, b"x")
    value = head_state(client, path)["ranges_header"]
    parsed = parse_range_header(value)  # any Range parser reads it
    assert parsed is not None and parsed.units == "bytes"
    assert parsed.ranges == [(0, 1), (100, 101), (300, 301), (999, 1000)]


def test_head_of_complete_resource(client):
    data = b"0123456789"
    path = upload(client, data)
    response = client.head(path)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "10"
    assert response.headers["Content-Length"] == "10"
    assert response.headers["Upload-Length"] == "10"
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Committed-Ranges"] == "bytes=0-9"
    assert response.headers.get("Cache-Control") != "no-store"
    assert response.headers["Repr-Digest"] == sha256_field(data)
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.get_data() == b""


def test_head_if_none_match_on_complete_is_304(client):
    path = upload(client, b"abc")
    etag = client.head(path).headers["ETag"]
    response = client.head(path, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["ETag"] == etag


def test_head_of_unknown_resource_is_404(client):
    response = client.head(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 404
    assert response.get_data() == b""


@pytest.mark.parametrize(
    ("resource_id", "status", "code"),
    [
        ("..", 400, "invalid-resource-id"),
        ("a/b", 404, "not-found"),  # not a resource URL at all: no route
        ("%2e%2e", 400, "invalid-resource-id"),
        ("x" * 300, 400, "invalid-resource-id"),
        ("bad id", 400, "invalid-resource-id"),
    ],
    ids=["dot-dot", "slash", "encoded-dot-dot", "too-long", "space"],
)
def test_head_of_invalid_id_is_4xx(client, resource_id, status, code):
    response = client.head(MOUNT + "/" + resource_id)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json" and response.get_data() == b""
    # The same request as a GET shows the problem document HEAD describes.
    problem(client.get(MOUNT + "/" + resource_id), status, code)


def test_adjacent_writes_coalesce(client, service):
    path = allocate(client, 1000)
    for first in range(0, 500, 10):
        write(client, path, first, bytes([first % 256]) * 10)
    assert extent_rows(service, path) == [(0, 500)]
    assert head_state(client, path)["ranges_header"] == "bytes=0-499"


def test_backwards_and_overlapping_writes_coalesce(client, service):
    path = allocate(client, 100)
    data = bytes(range(100))
    write(client, path, 90, data[90:100])
    write(client, path, 70, data[70:85])
    write(client, path, 80, data[80:95])  # overlaps both, identical bytes
    assert extent_rows(service, path) == [(70, 100)]
    write(client, path, 0, data[0:10])
    write(client, path, 20, data[20:30])
    assert extent_rows(service, path) == [(0, 10), (20, 30), (70, 100)]
    write(client, path, 5, data[5:75])  # bridges everything
    assert extent_rows(service, path) == [(0, 100)]
    state = head_state(client, path)
    assert state["complete"] is True and state["ranges_header"] == "bytes=0-99"


def test_gap_filling_in_one_multipart_request_coalesces(client, service):
    path = allocate(client)
    write(client, path, 0, b"a")
    write(client, path, 4, b"e")
    response = patch_multipart(client, path, [(1, b"bc"), (3, b"d")])
    assert response.status_code == 204
    assert extent_rows(service, path) == [(0, 5)]


def test_state_headers_on_error_responses(client):
    path = allocate(client, 10)
    write(client, path, 0, b"abcd")
    response = patch_message(client, path, 2, b"XX")
    problem(response, 409)
    state = parse_state(response.headers)
    assert state["offset"] == 4 and state["length"] == 10 and state["ranges"] == [(0, 4)]
    response = patch_message(client, path, 20, b"XX")
    problem(response, 409)
    assert parse_state(response.headers)["ranges"] == [(0, 4)]


def _sparse_parts(count: int):
    return [(2 * i, b"x") for i in range(count)]


def _header_limit_parts(count: int):
    return [(10 * i, bytes([65 + i % 26])) for i in range(count)]


@pytest.fixture
def many_extents(client):
    """A resource with 1100 disjoint 1-byte extents, written with one multipart request."""
    path = allocate(client)
    response = patch_multipart(client, path, _sparse_parts(1100))
    assert response.status_code == 204, response.get_data()[:300]
    return path, response


def test_many_extents_move_to_a_paginated_linked_document(client, service, many_extents):
    path, write_response = many_extents
    assert len(extent_rows(service, path)) == 1100
    for headers in (write_response.headers, client.head(path).headers):
        assert "Committed-Ranges" not in headers
        assert committed_link(headers)
        assert headers["Upload-Offset"] == "1"
        assert headers["Upload-Complete"] == "?0"
    expected = [(2 * i, 2 * i) for i in range(1100)]
    assert all_committed_ranges(client, path) == expected

    url = committed_link(client.head(path).headers)
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers.get("Cache-Control") == "no-store"
    body = response.get_json()
    assert 0 < len(body["ranges"]) < 1100
    assert body["next"]
    assert 'rel="next"' in response.headers.get("Link", "")
    # Pages with an explicit small limit still list everything exactly once.
    seen = []
    next_url = url + "?limit=300"
    pages = 0
    while next_url:
        page = client.get(next_url).get_json()
        assert len(page["ranges"]) <= 300
        seen.extend(tuple(r) for r in page["ranges"])
        next_url = page["next"]
        pages += 1
    assert pages == 4
    assert seen == expected


def test_committed_ranges_header_just_over_4kib_is_omitted(client):
    """Few enough extents for one snapshot, but a value longer than 4096 characters."""
    path = allocate(client)
    # "bytes=" + "0-0,10-10,20-20,..." : 500 ranges make well over 4096 characters.
    parts = _header_limit_parts(500)
    response = patch_multipart(client, path, parts)
    assert response.status_code == 204
    assert "Committed-Ranges" not in response.headers
    assert committed_link(response.headers)
    ranges = all_committed_ranges(client, path)
    assert ranges == [(10 * i, 10 * i) for i in range(500)]


def test_committed_ranges_header_under_4kib_is_sent(client):
    path = allocate(client)
    response = patch_multipart(client, path, _header_limit_parts(300))
    value = response.headers["Committed-Ranges"]
    assert len(value) <= 4096
    assert parse_state(response.headers)["ranges"] == [(10 * i, 10 * i + 1) for i in range(300)]


@pytest.mark.parametrize("slack", [0, -1])
def test_committed_ranges_header_exactly_at_its_limit(settings_overrides, slack):
    """Sent when its value is exactly the limit long, left out one character below it."""
    value = "bytes=" + ",".join(f"{10 * i}-{10 * i}" for i in range(40))
    application = create_app({**settings_overrides, "COMMITTED_RANGES_HEADER_LIMIT": str(len(value) + slack)})
    try:
        client = application.test_client()
        path = allocate(client)
        patch_multipart(client, path, _header_limit_parts(40))
        headers = client.head(path).headers
        assert headers.get("Committed-Ranges") == (value if slack == 0 else None)
        assert headers["Upload-Offset"] == "1"
        assert all_committed_ranges(client, path) == [(10 * i, 10 * i) for i in range(40)]
    finally:
        application.extensions["byterange"].db.dispose()


def test_state_reads_only_the_extents_the_header_can_hold(client, service, many_extents):
    """1100 extents: the state stops at the first one past the header limit (the list is in the
    linked document), so a HEAD's cost is bounded by the header, not the extent count."""
    path, _ = many_extents
    # A byte-range HEAD's budget is its header limit (the caller decides how much it shows).
    budget = service.settings.committed_ranges_header_limit
    state = service.state(path.rsplit("/", 1)[1], ranges_budget=budget)
    assert state.truncated and state.offset == 1
    assert len(format_ranges(state.extents[:-1])) <= 4096 < len(format_ranges(state.extents))
    assert len(state.extents) < 1100


def test_committed_ranges_document_for_unknown_resource_is_404(client):
    problem(client.get(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA/committed-ranges"), 404)


def test_committed_ranges_document_of_empty_resource(client):
    path = allocate(client)
    body = client.get(committed_link(client.head(path).headers)).get_json()
    assert body["ranges"] == [] and body["next"] is None


@pytest.mark.parametrize("query", ["?after=-1", "?limit=abc", "?after=1234567890123456"])
def test_committed_ranges_document_bad_query_is_400(client, query):
    path = allocate(client)
    problem(client.get(path + "/committed-ranges" + query), 400)


@contextlib.contextmanager
def count_statements(service):
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(service.db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(service.db.engine, "before_cursor_execute", before)


def test_head_cost_does_not_grow_with_writes(client, service):
    path = allocate(client, 10_000)
    write(client, path, 0, b"x")
    with count_statements(service) as few:
        client.head(path)
    for first in range(1, 60):
        write(client, path, first, b"x")
    with count_statements(service) as many:
        client.head(path)
    assert len(many) == len(few)
    assert extent_rows(service, path) == [(0, 60)]


def test_head_of_digest_failed_resource_advertises_no_validators(client):
    path = allocate(client, 4, {"Repr-Digest": sha256_field(b"nope")})
    problem(patch_message(client, path, 0, b"abcd", 4), 409, "repr-digest-mismatch")
    problem(client.get(path), 409, "repr-digest-mismatch")
    response = client.head(path)
    assert response.status_code == 409  # HEAD answers as GET does
    assert response.headers["Upload-Complete"] == "?1"  # every byte arrived
    assert "ETag" not in response.headers
    assert "Repr-Digest" not in response.headers


@settings(
    max_examples=12,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=63), max_size=8, unique=True),
    order=st.randoms(use_true_random=False),
    overlap=st.integers(min_value=0, max_value=3),
)
def test_any_write_order_coalesces_to_the_committed_set(client, service, cuts, order, overlap):
    """Segments written in any order, overlapping by identical bytes: the extent table always
    equals the union of what was written, coalesced, and the result is the original data."""
    data = bytes((i * 37) % 251 for i in range(64))
    bounds = [0, *sorted(cuts), 64]
    segments = [(max(0, a - overlap), min(64, b + overlap)) for a, b in zip(bounds, bounds[1:], strict=False)]
    order.shuffle(segments)
    path = allocate(client, 64)
    written: list[tuple[int, int]] = []
    for start, stop in segments:
        write(client, path, start, data[start:stop], 64)
        written.append((start, stop))
        union: list[tuple[int, int]] = []
        for a, b in sorted(written):
            if union and a <= union[-1][1]:
                union[-1] = (union[-1][0], max(union[-1][1], b))
            else:
                union.append((a, b))
        assert extent_rows(service, path) == union
        state = head_state(client, path)
        assert state["ranges"] == union
        assert state["offset"] == (union[0][1] if union[0][0] == 0 else 0)
    assert client.get(path).get_data() == data


def test_a_many_part_request_does_not_renew_every_earlier_lease_at_each_part(client, service):
    """Renewing all earlier parts' leases at every part made N parts cost O(N²) statement
    parameters; they are renewed with the next part only when a renewal is due."""
    path = allocate(client)
    with count_statements(service) as statements:
        response = patch_multipart(client, path, _sparse_parts(300))
    assert response.status_code == 204
    renewals = [sql for sql in statements if sql.startswith("UPDATE reservations")]
    assert len(renewals) <= 5
    assert len(extent_rows(service, path)) == 300
