"""PATCH with multipart/byteranges (PROTOCOL.md §3; http-specs E1, E6, E7, E8)."""

from __future__ import annotations

import pytest

from ..helpers import BOUNDARY
from ..helpers import MULTIPART
from ..helpers import Case
from ..helpers import allocate
from ..helpers import extent_rows
from ..helpers import for_each
from ..helpers import head_state
from ..helpers import multipart_body
from ..helpers import parse_state
from ..helpers import patch_multipart
from ..helpers import patch_raw
from ..helpers import problem
from ..helpers import read_all
from ..helpers import run_case
from ..helpers import sha256_field
from ..helpers import stored_bytes
from ..helpers import write
from .write_rules import WriteRules


class TestWriteRules(WriteRules):
    media_type = MULTIPART


CT = f"{MULTIPART}; boundary={BOUNDARY}"


def test_several_parts_in_one_request(client, service):
    path = allocate(client, 12)
    response = patch_multipart(client, path, [(0, b"abcd", 12), (8, b"ijkl", 12)])
    assert response.status_code == 204
    state = parse_state(response.headers)
    assert state["ranges"] == [(0, 4), (8, 12)] and state["offset"] == 4
    assert response.headers["Preference-Applied"] == "transaction=persist"
    response = patch_multipart(client, path, [(4, b"efgh", 12)])
    assert parse_state(response.headers)["complete"] is True
    assert read_all(client, path) == b"abcdefghijkl"
    assert extent_rows(service, path) == [(0, 12)]


def test_parts_in_any_order_and_adjacent(client, service):
    path = allocate(client, 9)
    response = patch_multipart(client, path, [(6, b"ghi"), (0, b"abc"), (3, b"def")])
    assert response.status_code == 204
    assert parse_state(response.headers)["complete"] is True
    assert read_all(client, path) == b"abcdefghi"
    assert extent_rows(service, path) == [(0, 9)]


def test_mixed_content_range_content_offset_and_length_parts(client):
    path = allocate(client)
    parts = [
        ((("Content-Offset", "4"),), b"ef"),
        ((("Content-Range", "bytes 0-1/*"),), b"ab"),
        ((("Content-Range", "bytes */6"),), b""),
    ]
    response = patch_multipart(client, path, parts)
    assert response.status_code == 204, response.get_data()
    state = parse_state(response.headers)
    assert state["length"] == 6 and state["ranges"] == [(0, 2), (4, 6)]


def test_part_with_its_own_content_type_field(client):
    path = allocate(client, 2)
    fields = (("Content-Type", "text/plain"), ("Content-Range", "bytes 0-1/2"))
    assert patch_multipart(client, path, [(fields, b"hi")]).status_code == 204
    assert read_all(client, path) == b"hi"


def test_overlapping_parts_are_422_and_nothing_applied(client, service):
    path = allocate(client, 10)
    response = patch_multipart(client, path, [(0, b"abcd"), (3, b"dxyz")])
    problem(response, 422, "overlapping-parts")
    assert head_state(client, path)["ranges"] == []
    assert extent_rows(service, path) == []


def test_identical_duplicate_parts_still_overlap(client):
    path = allocate(client, 10)
    problem(patch_multipart(client, path, [(0, b"ab"), (0, b"ab")]), 422, "overlapping-parts")


def test_overlapping_content_offset_parts_are_422(client):
    path = allocate(client, 10)
    parts = [((("Content-Offset", "0"),), b"abcd"), ((("Content-Offset", "2"),), b"cd")]
    problem(patch_multipart(client, path, parts), 422)
    assert head_state(client, path)["ranges"] == []


def test_conflict_in_a_later_part_applies_nothing(client, service):
    """A 409 on part 3 leaves parts 1 and 2 (already streamed to storage) uncommitted."""
    path = allocate(client, 20)
    write(client, path, 10, b"KLMN")
    response = patch_multipart(client, path, [(0, b"abcd"), (5, b"fghi"), (10, b"kXmn")])
    problem(response, 409, "content-mismatch")
    state = head_state(client, path)
    assert state["ranges"] == [(10, 14)]
    assert extent_rows(service, path) == [(10, 14)]
    assert parse_state(response.headers)["ranges"] == [(10, 14)]
    # The same request with the right bytes goes through, so the reservations were released.
    response = patch_multipart(client, path, [(0, b"abcd"), (5, b"fghi"), (10, b"KLMN")])
    assert response.status_code == 204
    assert parse_state(response.headers)["ranges"] == [(0, 4), (5, 9), (10, 14)]


def test_conflict_in_an_earlier_part_applies_nothing(client, service):
    path = allocate(client, 20)
    write(client, path, 0, b"ABCD")
    response = patch_multipart(client, path, [(0, b"AbCD"), (10, b"klmn")])
    problem(response, 409, "content-mismatch")
    assert extent_rows(service, path) == [(0, 4)]


def test_later_part_without_range_applies_nothing(client, service):
    path = allocate(client, 20)
    response = patch_multipart(client, path, [(0, b"abcd"), ((("X-Foo", "1"),), b"efgh")])
    problem(response, 422, "missing-range")
    assert extent_rows(service, path) == []


def test_later_part_past_length_applies_nothing(client, service):
    path = allocate(client, 8)
    response = patch_multipart(client, path, [(0, b"abcd"), (6, b"ghij")])
    problem(response, 409, "length-conflict")
    assert extent_rows(service, path) == []


def test_later_part_with_bad_content_range_applies_nothing(client, service):
    path = allocate(client, 8)
    response = patch_multipart(client, path, [(0, b"abcd"), ((("Content-Range", "bytes 6-5/8"),), b"")])
    problem(response, 400)
    assert extent_rows(service, path) == []


def test_conflicting_lengths_in_one_request_are_409(client, service):
    path = allocate(client)
    response = patch_multipart(client, path, [(0, b"ab", 10), (4, b"ef", 11)])
    problem(response, 409, "length-conflict")
    state = head_state(client, path)
    assert state["length"] is None and state["ranges"] == []


def test_length_declared_after_bytes_past_it_applies_nothing(client, service):
    path = allocate(client)
    response = patch_multipart(client, path, [(4, b"efgh"), ((("Content-Range", "bytes */6"),), b"")])
    problem(response, 409, "length-conflict")
    state = head_state(client, path)
    assert state["length"] is None and state["ranges"] == []
    assert extent_rows(service, path) == []


def test_quoted_boundary_preamble_and_epilogue(client):
    path = allocate(client, 4)
    boundary = "a b'c(d)+_,-./:=?"
    body = b"This is the preamble.\r\n" + multipart_body([(0, b"wxyz")], boundary) + b"and an epilogue\r\n"
    response = patch_raw(client, path, body, f'{MULTIPART}; boundary="{boundary}"')
    assert response.status_code == 204, response.get_data()
    assert read_all(client, path) == b"wxyz"


def test_transport_padding_after_delimiter(client):
    path = allocate(client, 4)
    body = f"--{BOUNDARY}  \t\r\nContent-Range: bytes 0-3/4\r\n\r\nwxyz\r\n--{BOUNDARY}--".encode()
    assert patch_raw(client, path, body, CT).status_code == 204


def test_boundary_text_inside_data_not_after_crlf(client):
    path = allocate(client, 14)
    data = b"ab--SEP-7f3a\r\n"  # the boundary text, but not preceded by CRLF: plain data
    response = patch_multipart(client, path, [(0, data)])
    assert response.status_code == 204
    assert read_all(client, path) == data


BAD_BOUNDARIES = (
    MULTIPART,  # no boundary
    f"{MULTIPART}; boundary=",
    f'{MULTIPART}; boundary=""',
    f"{MULTIPART}; boundary=" + "b" * 71,
    f'{MULTIPART}; boundary="ends with space "',
    f'{MULTIPART}; boundary="bad\\"char"',
    f'{MULTIPART}; boundary="semi;colon"',
    f"{MULTIPART}; boundary=a; boundary=b",
)


def test_bad_boundary_is_400(client):
    path = allocate(client, 4)
    body = multipart_body([(0, b"wxyz")])

    def check(content_type):
        problem(patch_raw(client, path, body, content_type), 400)
        assert head_state(client, path)["ranges"] == []

    for_each(BAD_BOUNDARIES, check)


def test_seventy_character_boundary_is_fine(client):
    path = allocate(client, 4)
    boundary = "b" * 70
    response = patch_raw(
        client, path, multipart_body([(0, b"wxyz")], boundary), f"{MULTIPART}; boundary={boundary}"
    )
    assert response.status_code == 204


def test_over_large_part_header_block_is_400(client):
    path = allocate(client, 4)
    fields = (("X-Padding", "p" * 9000), ("Content-Range", "bytes 0-3/4"))
    problem(patch_multipart(client, path, [(fields, b"wxyz")]), 400)
    assert head_state(client, path)["ranges"] == []


def test_over_large_header_block_in_later_part_applies_nothing(client, service):
    path = allocate(client, 8)
    fields = (("X-Padding", "p" * 9000), ("Content-Range", "bytes 4-7/8"))
    problem(patch_multipart(client, path, [(0, b"abcd"), (fields, b"efgh")]), 400)
    assert extent_rows(service, path) == []


FRAMING_CASES = [
    Case("no parts", body=f"--{BOUNDARY}--\r\n".encode(), status=400),
    Case("empty body", body=b"", status=400),
    Case("no delimiter at all", body=b"Content-Range: bytes 0-3/8\r\n\r\nabcd", status=400),
    Case(
        "bare LF field block",
        body=f"--{BOUNDARY}\nContent-Range: bytes 0-3/8\n\nabcd\r\n--{BOUNDARY}--".encode(),
        status=400,
    ),
    Case(
        "field line without colon",
        body=f"--{BOUNDARY}\r\nContent-Range bytes 0-3/8\r\n\r\nabcd\r\n--{BOUNDARY}--".encode(),
        status=400,
    ),
    Case(
        "obs-fold",
        body=f"--{BOUNDARY}\r\nContent-Range: bytes 0-3/8\r\n x\r\n\r\nabcd\r\n--{BOUNDARY}--".encode(),
        status=400,
    ),
    Case(
        "field line with space before colon",
        body=f"--{BOUNDARY}\r\nContent-Range : bytes 0-3/8\r\n\r\nabcd\r\n--{BOUNDARY}--".encode(),
        status=400,
    ),
    Case(
        "length-only part carrying bytes",
        body=f"--{BOUNDARY}\r\nContent-Range: bytes */8\r\n\r\nabcd\r\n--{BOUNDARY}--".encode(),
        status=400,
    ),
]


def test_malformed_framing_is_400(client):
    def check(case):
        case.length = 8
        case.headers = {"Content-Type": CT}
        case.ranges_after = []
        run_case(client, case)

    for_each(FRAMING_CASES, check)


def test_content_digest_covers_whole_multipart_document(client):
    path = allocate(client, 8)
    parts = [(0, b"abcd"), (4, b"efgh")]
    body = multipart_body(parts)
    response = patch_multipart(client, path, parts, {"Content-Digest": sha256_field(body)})
    assert response.status_code == 204
    assert response.headers["Preference-Applied"] == "transaction=atomic"
    assert read_all(client, path) == b"abcdefgh"


def test_content_digest_mismatch_applies_no_part(client, service):
    path = allocate(client, 8)
    response = patch_multipart(
        client, path, [(0, b"abcd"), (4, b"efgh")], {"Content-Digest": sha256_field(b"x")}
    )
    problem(response, 400, "content-digest-mismatch")
    assert extent_rows(service, path) == []


def test_many_parts_coalesce_into_one_extent(client, service):
    path = allocate(client, 400)
    data = bytes(range(200)) * 2
    parts = [(i, data[i : i + 4]) for i in range(0, 400, 4)]
    response = patch_multipart(client, path, parts)
    assert response.status_code == 204
    assert extent_rows(service, path) == [(0, 400)]
    assert stored_bytes(service, path, 400) == data


class TestMaxParts:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_PARTS="3")

    def test_too_many_parts_is_400_and_nothing_applied(self, client, service):
        path = allocate(client, 10)
        response = patch_multipart(client, path, [(0, b"a"), (2, b"c"), (4, b"e"), (6, b"g")])
        body = problem(response, 400)
        assert body.get("max-parts") == 3, body
        assert extent_rows(service, path) == []

    def test_at_max_parts_is_fine(self, client):
        path = allocate(client, 10)
        assert patch_multipart(client, path, [(0, b"a"), (2, b"c"), (4, b"e")]).status_code == 204
