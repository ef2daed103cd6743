"""PATCH with application/byteranges, the varint-framed binary format (PROTOCOL.md §3; E19)."""

from __future__ import annotations

import pytest

from byterange_server.protocol.binary import encode_known_length_head
from byterange_server.protocol.binary import encode_varint

from ..helpers import BINARY
from ..helpers import Case
from ..helpers import allocate
from ..helpers import binary_body
from ..helpers import extent_rows
from ..helpers import for_each
from ..helpers import parse_state
from ..helpers import patch_binary
from ..helpers import patch_raw
from ..helpers import problem
from ..helpers import read_all
from ..helpers import run_case
from ..helpers import sha256_field
from ..helpers import write
from .write_rules import WriteRules


class TestWriteRules(WriteRules):
    media_type = BINARY


class TestIndeterminate:
    """The main rules again with indeterminate-length messages (framing indicator 10)."""

    def send(self, client, path, parts, headers=None):
        return patch_binary(client, path, parts, headers, indeterminate=True)

    def test_writes_length_and_idempotency(self, client, service):
        path = allocate(client)
        response = self.send(client, path, [(0, b"abcdefg"), ((("Content-Range", "bytes */10"),), b"")])
        assert response.status_code == 204, response.get_data()
        state = parse_state(response.headers)
        assert state["ranges"] == [(0, 7)] and state["length"] == 10
        assert self.send(client, path, [(2, b"cdefg")]).status_code == 204
        assert extent_rows(service, path) == [(0, 7)]
        response = self.send(client, path, [((("Content-Offset", "7"),), b"hij")])
        assert response.status_code == 204
        assert parse_state(response.headers)["complete"] is True
        assert read_all(client, path) == b"abcdefghij"

    def test_conflict_and_overlap_apply_nothing(self, client, service):
        path = allocate(client, 20)
        write(client, path, 10, b"KLMN")
        problem(self.send(client, path, [(0, b"abcd"), (10, b"klmn")]), 409, "content-mismatch")
        problem(self.send(client, path, [(0, b"abcd"), (3, b"defg")]), 422, "overlapping-parts")
        assert extent_rows(service, path) == [(10, 14)]

    def test_length_rules(self, client):
        path = allocate(client, 8)
        problem(self.send(client, path, [(6, b"ghij")]), 409, "length-conflict")
        problem(self.send(client, path, [((("Content-Range", "bytes */9"),), b"")]), 409, "length-conflict")
        problem(self.send(client, path, [((("Content-Offset", "6"),), b"ghi")]), 409, "length-conflict")
        assert parse_state(client.head(path).headers)["ranges"] == []

    def test_content_digest(self, client):
        path = allocate(client, 8)
        parts = [(0, b"abcd")]
        body = binary_body(parts, indeterminate=True)
        problem(
            self.send(client, path, parts, {"Content-Digest": sha256_field(b"x")}),
            400,
            "content-digest-mismatch",
        )
        response = self.send(client, path, parts, {"Content-Digest": sha256_field(body)})
        assert response.status_code == 204
        assert response.headers["Preference-Applied"] == "transaction=atomic"


KNOWN_EXAMPLE = b"\x08\x1b\x0dcontent-range\x0cbytes 2-5/12\x04wxyz"
INDETERMINATE_EXAMPLE = b"\x0a\x0dcontent-range\x0cbytes 2-5/12\x00\x02wx\x02yz\x00"


@pytest.mark.parametrize("body", [KNOWN_EXAMPLE, INDETERMINATE_EXAMPLE], ids=["known", "indeterminate"])
def test_spec_examples(client, body):
    path = allocate(client, 12)
    response = patch_raw(client, path, body, BINARY)
    assert response.status_code == 204, response.get_data()
    state = parse_state(response.headers)
    assert state["ranges"] == [(2, 6)] and state["length"] == 12
    assert client.get(path, headers={"Range": "bytes=2-5"}).get_data() == b"wxyz"


def test_several_messages_known_and_indeterminate_mixed(client, service):
    path = allocate(client, 12)
    body = (
        binary_body([(0, b"abcd")])
        + binary_body([(8, b"ijkl")], indeterminate=True)
        + binary_body([(4, b"efgh")])
    )
    response = patch_raw(client, path, body, BINARY)
    assert response.status_code == 204
    assert parse_state(response.headers)["complete"] is True
    assert read_all(client, path) == b"abcdefghijkl"
    assert extent_rows(service, path) == [(0, 12)]


def test_field_names_match_case_insensitively(client):
    path = allocate(client, 4)
    value = b"bytes 0-3/4"
    section = encode_varint(13) + b"CONTENT-RANGE" + encode_varint(len(value)) + value
    body = encode_varint(8) + encode_varint(len(section)) + section + encode_varint(4) + b"wxyz"
    assert patch_raw(client, path, body, BINARY).status_code == 204


def test_non_minimal_varints_are_accepted(client):
    path = allocate(client, 4)
    value = b"bytes 0-3/4"
    section = b"\x40\x0d" + b"content-range" + b"\x40" + bytes([len(value)]) + value
    body = b"\x40\x08" + b"\x80\x00\x00" + bytes([len(section)]) + section + b"\x40\x04" + b"wxyz"
    response = patch_raw(client, path, body, BINARY)
    assert response.status_code == 204, response.get_data()


def test_overlapping_messages_are_422(client, service):
    path = allocate(client, 10)
    problem(patch_binary(client, path, [(0, b"abcd"), (2, b"cdef")]), 422, "overlapping-parts")
    assert extent_rows(service, path) == []


def test_conflict_in_a_later_message_applies_nothing(client, service):
    path = allocate(client, 20)
    write(client, path, 10, b"KLMN")
    response = patch_binary(client, path, [(0, b"abcd"), (10, b"klmn")])
    problem(response, 409, "content-mismatch")
    assert extent_rows(service, path) == [(10, 14)]


def test_content_digest_over_binary_document(client):
    path = allocate(client, 8)
    parts = [(0, b"abcd"), (4, b"efgh")]
    response = patch_binary(client, path, parts, {"Content-Digest": sha256_field(binary_body(parts))})
    assert response.status_code == 204
    assert response.headers["Preference-Applied"] == "transaction=atomic"


def _known(section: bytes, content: bytes, declared: int | None = None) -> bytes:
    length = len(section) if declared is None else declared
    return encode_varint(8) + encode_varint(length) + section + encode_varint(len(content)) + content


_CR = encode_varint(13) + b"content-range" + encode_varint(11) + b"bytes 0-3/8"

FRAMING_CASES = [
    Case("empty body", body=b"", status=400),
    Case("unknown framing indicator 0", body=b"\x00" + KNOWN_EXAMPLE[1:], status=400),
    Case("unknown framing indicator 9", body=b"\x09" + KNOWN_EXAMPLE[1:], status=400),
    Case("bhttp indicator 2", body=b"\x02" + KNOWN_EXAMPLE[1:], status=400),
    Case("name length zero", body=_known(b"\x00\x01x" + _CR, b"abcd"), status=400),
    Case(
        "section length too short for its field line",
        body=_known(_CR, b"abcd", declared=len(_CR) - 3),
        status=400,
    ),
    Case("truncated varint in section", body=_known(_CR + b"\x40", b"abcd"), status=400),
    Case(
        "bad field name",
        body=_known(encode_varint(3) + b"a b" + encode_varint(1) + b"x" + _CR, b"abcd"),
        status=400,
    ),
    Case(
        "control char in value",
        body=_known(encode_varint(1) + b"x" + encode_varint(1) + b"\x01" + _CR, b"abcd"),
        status=400,
    ),
    Case(
        "over-large field section",
        body=_known(encode_varint(5) + b"x-pad" + encode_varint(9000) + b"p" * 9000 + _CR, b"abcd"),
        status=400,
    ),
    Case(
        "over-large section length alone",
        body=encode_varint(8) + encode_varint(1 << 40),
        status=400,
    ),
    Case("content longer than range", body=_known(_CR, b"abcdef"), status=400),
    Case(
        "no range",
        body=_known(encode_varint(1) + b"x" + encode_varint(1) + b"y", b"abcd"),
        status=422,
        problem="missing-range",
    ),
    Case("trailing garbage after a message", body=_known(_CR, b"abcd") + b"\x07", status=400),
]


def test_malformed_binary_is_rejected(client):
    def check(case):
        case.length = 8
        case.headers = {"Content-Type": BINARY}
        if "longer" not in case.name and "trailing" not in case.name:
            case.ranges_after = []
        run_case(client, case)

    for_each(FRAMING_CASES, check)


def test_unknown_framing_indicator_after_valid_message_applies_nothing(client, service):
    path = allocate(client, 8)
    body = binary_body([(0, b"abcd")]) + b"\x09" + KNOWN_EXAMPLE[1:]
    problem(patch_raw(client, path, body, BINARY), 400)
    assert extent_rows(service, path) == []


def test_known_length_head_helper_streams(client):
    path = allocate(client, 6)
    body = encode_known_length_head((("Content-Range", "bytes 0-5/6"),), 6) + b"abcdef"
    assert patch_raw(client, path, body, BINARY).status_code == 204
    assert read_all(client, path) == b"abcdef"
