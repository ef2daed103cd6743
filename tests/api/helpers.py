"""Small request helpers and a declarative case runner for the API tests.

The helpers build request bodies with the project's own encoders (``protocol/message.py``,
``multipart.py``, ``binary.py``) so the tests exercise the decoders on the wire format they
produce, and parse responses with the project's header parsers. Each helper returns the Flask
test-client response untouched; assertions stay in the tests.

``Case`` / ``run_case`` follow the tusd ``httpTest`` style: a request description, the expected
status, headers and problem ``type`` suffix, run against a fresh resource.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from byterange_server.protocol.binary import encode_indeterminate_chunk
from byterange_server.protocol.binary import encode_indeterminate_end
from byterange_server.protocol.binary import encode_indeterminate_head
from byterange_server.protocol.binary import encode_known_length
from byterange_server.protocol.message import encode_message
from byterange_server.protocol.multipart import encode_multipart
from byterange_server.protocol.ranges import parse_committed_ranges

MOUNT = "/files"
MESSAGE = "message/byterange"
MULTIPART = "multipart/byteranges"
BINARY = "application/byteranges"
PATCH_TYPES = (MESSAGE, MULTIPART, BINARY)
BOUNDARY = "SEP-7f3a"
PROBLEM_JSON = "application/problem+json"

Fields = Sequence[tuple[str, str]]


# -- building blocks ---------------------------------------------------------------------------


def content_range(first: int | None, data: bytes, length: int | str | None = "*") -> str:
    """``bytes first-last/length`` for ``data`` at ``first``; ``bytes */length`` when first is None."""
    if first is None:
        return f"bytes */{length}"
    return f"bytes {first}-{first + len(data) - 1}/{'*' if length is None else length}"


def sha256_field(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def sha512_field(data: bytes) -> str:
    return "sha-512=:" + base64.b64encode(hashlib.sha512(data).digest()).decode() + ":"


Part = tuple[Any, ...]


def part_fields(part: Part) -> tuple[Fields, bytes]:
    """A part given as ``(first, data)``, ``(first, data, length)`` or ``(fields, data)``."""
    if isinstance(part[0], (list, tuple)):
        return tuple(part[0]), part[1]
    first, data = part[0], part[1]
    length = part[2] if len(part) > 2 else "*"
    return (("Content-Range", content_range(first, data, length)),), data


def multipart_body(parts: Iterable[Part], boundary: str = BOUNDARY) -> bytes:
    return encode_multipart([part_fields(p) for p in parts], boundary)


def binary_body(parts: Iterable[Part], *, indeterminate: bool = False) -> bytes:
    out = []
    for part in parts:
        fields, data = part_fields(part)
        if indeterminate:
            chunks = [data[i : i + 3] for i in range(0, len(data), 3)]
            out.append(
                encode_indeterminate_head(fields)
                + b"".join(encode_indeterminate_chunk(c) for c in chunks)
                + encode_indeterminate_end()
            )
        else:
            out.append(encode_known_length(fields, data))
    return b"".join(out)


def _merge(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(base)
    merged.update(extra or {})
    return merged


# -- requests ----------------------------------------------------------------------------------


def allocate(client: Any, length: int | None = None, headers: Mapping[str, str] | None = None) -> str:
    """POST /files and return the resource path (``/files/<id>``)."""
    request_headers = dict(headers or {})
    if length is not None:
        request_headers["Upload-Length"] = str(length)
    response = client.post(MOUNT, headers=request_headers)
    assert response.status_code == 201, (response.status_code, response.get_data())
    return urlsplit(response.headers["Location"]).path


def patch_raw(
    client: Any, path: str, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> Any:
    return client.patch(path, data=body, headers=_merge({"Content-Type": content_type}, headers))


def patch_message(
    client: Any,
    path: str,
    first: int | None,
    data: bytes,
    length: int | str | None = "*",
    headers: Mapping[str, str] | None = None,
    fields: Fields | None = None,
) -> Any:
    """PATCH message/byterange writing ``data`` at ``first`` (``first=None``: ``bytes */length``)."""
    if fields is None:
        fields = (("Content-Range", content_range(first, data, length)),)
    return patch_raw(client, path, encode_message(fields, data), MESSAGE, headers)


def patch_multipart(
    client: Any,
    path: str,
    parts: Iterable[Part],
    headers: Mapping[str, str] | None = None,
    boundary: str = BOUNDARY,
) -> Any:
    body = multipart_body(parts, boundary)
    return patch_raw(client, path, body, f"{MULTIPART}; boundary={boundary}", headers)


def patch_binary(
    client: Any,
    path: str,
    parts: Iterable[Part],
    headers: Mapping[str, str] | None = None,
    indeterminate: bool = False,
) -> Any:
    return patch_raw(client, path, binary_body(parts, indeterminate=indeterminate), BINARY, headers)


def patch_parts(
    client: Any, path: str, media_type: str, parts: Sequence[Part], headers: Mapping[str, str] | None = None
) -> Any:
    """The same parts in any of the three formats (message/byterange takes exactly one part)."""
    if media_type == MESSAGE:
        assert len(parts) == 1
        fields, data = part_fields(parts[0])
        return patch_message(client, path, None, data, headers=headers, fields=fields)
    if media_type == MULTIPART:
        return patch_multipart(client, path, parts, headers)
    return patch_binary(client, path, parts, headers)


def write(client: Any, path: str, first: int, data: bytes, length: int | str | None = "*") -> None:
    """Write ``data`` at ``first`` with message/byterange and insist on success."""
    response = patch_message(client, path, first, data, length)
    assert response.status_code in (200, 204), (response.status_code, response.get_data())


def put_range(
    client: Any,
    path: str,
    first: int | None,
    data: bytes,
    length: int | str | None = "*",
    headers: Mapping[str, str] | None = None,
) -> Any:
    return client.put(
        path, data=data, headers=_merge({"Content-Range": content_range(first, data, length)}, headers)
    )


def upload(client: Any, data: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Allocate and write ``data`` whole; returns the path of the complete resource."""
    path = allocate(client, len(data), headers)
    if data:
        write(client, path, 0, data, len(data))
    return path


# -- reading state -----------------------------------------------------------------------------


def parse_state(headers: Any) -> dict[str, Any]:
    """The state headers of a response as a dict (absent headers → None)."""
    ranges_value = headers.get("Committed-Ranges")
    length = headers.get("Upload-Length")
    offset = headers.get("Upload-Offset")
    complete = headers.get("Upload-Complete")
    return {
        "offset": None if offset is None else int(offset),
        "length": None if length is None else int(length),
        "complete": None if complete is None else {"?1": True, "?0": False}[complete],
        "ranges_header": ranges_value,
        "ranges": None if ranges_value is None else parse_committed_ranges(ranges_value),
        "cache_control": headers.get("Cache-Control"),
        "link": headers.get("Link"),
    }


def head_state(client: Any, path: str) -> dict[str, Any]:
    response = client.head(path)
    assert response.status_code == 200, response.status_code
    state = parse_state(response.headers)
    state["status"] = response.status_code
    state["content_length"] = response.headers.get("Content-Length")
    state["headers"] = response.headers
    return state


def committed_link(headers: Any) -> str | None:
    link = headers.get("Link") or ""
    match = re.search(r'<([^>]*)>\s*;\s*rel="?committed-ranges"?', link)
    return match.group(1) if match else None


def all_committed_ranges(client: Any, path: str) -> list[tuple[int, int]]:
    """Every committed range (inclusive pairs) by following the committed-ranges JSON pages."""
    url = committed_link(client.head(path).headers)
    assert url, "no committed-ranges link"
    out: list[tuple[int, int]] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, (response.status_code, response.get_data())
        body = response.get_json()
        out.extend((first, last) for first, last in body["ranges"])
        url = body.get("next")
        pages += 1
        assert pages < 10_000
    return out


def read_all(client: Any, path: str) -> bytes:
    response = client.get(path)
    assert response.status_code == 200, (response.status_code, response.get_data())
    return response.get_data()


def read_range(client: Any, path: str, first: int, last: int) -> bytes:
    response = client.get(path, headers={"Range": f"bytes={first}-{last}"})
    assert response.status_code == 206, (response.status_code, response.get_data())
    return response.get_data()


def extent_rows(service: Any, path: str) -> list[tuple[int, int]]:
    """The extent rows of a resource straight from the database, half-open."""
    from sqlalchemy import select

    from byterange_server.db.models import extents

    resource_id = path.rsplit("/", 1)[1]
    with service.db.read() as conn:
        rows = conn.execute(
            select(extents.c.start, extents.c.stop)
            .where(extents.c.resource_id == resource_id)
            .order_by(extents.c.start)
        ).all()
    return [(row.start, row.stop) for row in rows]


def stored_bytes(service: Any, path: str, size: int) -> bytes:
    resource_id = path.rsplit("/", 1)[1]
    with service.open_object(resource_id) as stored:
        return stored.read_at(0, size)


# -- problems ----------------------------------------------------------------------------------


def problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is a problem document of ``status`` (and type ``…code``); return it."""
    assert response.status_code == status, (response.status_code, response.get_data()[:500])
    assert response.mimetype == PROBLEM_JSON, response.headers.get("Content-Type")
    body = json.loads(response.get_data())
    assert isinstance(body.get("type"), str) and body["type"], body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert body.get("status") == status, body
    if code is not None:
        assert (
            body["type"].endswith(":" + code)
            or body["type"].endswith("/" + code)
            or body["type"].endswith("#" + code)
        ), body
    return body


def parse_multipart_byteranges(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges response into (headers, data) parts."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).encode()
    assert body.count(delimiter + b"--") == 1
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        assert chunk.startswith(b"\r\n")
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, data[:-2]))
    return parts


def for_each(values: Iterable[Any], check: Any) -> None:
    """Run ``check(value)`` for every value; a failure names the value it failed on.

    Used instead of parametrizing where each case is one cheap request, so the table runs in
    one test (one fresh database per database kind) rather than one test per row.
    """
    for value in values:
        try:
            check(value)
        except AssertionError as exc:
            raise AssertionError(f"case {value!s}: {exc}") from exc


# -- declarative cases (tusd httpTest style) ---------------------------------------------------


@dataclasses.dataclass
class Case:
    """One request against a resource prepared by ``setup`` writes, and what must come back."""

    name: str
    method: str = "PATCH"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""
    status: int = 204
    problem: str | None = None
    #: (first, data) writes made before the request (message/byterange).
    setup: Sequence[tuple[int, bytes]] = ()
    #: Upload-Length at allocation.
    length: int | None = None
    #: Committed ranges (inclusive) a HEAD must show afterwards; None to skip.
    ranges_after: Sequence[tuple[int, int]] | None = None
    response_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def run_case(client: Any, case: Case) -> Any:
    path = allocate(client, case.length)
    for first, data in case.setup:
        write(client, path, first, data)
    response = client.open(path, method=case.method, data=case.body, headers=dict(case.headers))
    if case.status >= 400:
        problem(response, case.status, case.problem)
    else:
        assert response.status_code == case.status, (response.status_code, response.get_data()[:500])
    for name, value in case.response_headers.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))
    if case.ranges_after is not None:
        state = head_state(client, path)
        assert state["ranges"] == [(a, b + 1) for a, b in case.ranges_after], state["ranges_header"]
    return response


# -- rules every PATCH format must follow -------------------------------------------------------


class WriteRules:
    """The write rules of PROTOCOL.md §3, run once per PATCH media type.

    A test module subclasses this as ``class TestWriteRules(WriteRules): media_type = ...``;
    every request here has one part, so message/byterange can carry it.
    """

    media_type: str = MESSAGE

    def send(
        self, client: Any, path: str, parts: Sequence[Part], headers: Mapping[str, str] | None = None
    ) -> Any:
        return patch_parts(client, path, self.media_type, parts, headers)

    def test_single_part_writes_and_reports_state(self, client: Any, service: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [(0, b"01234")])
        assert response.status_code in (200, 204)
        state = parse_state(response.headers)
        assert state["offset"] == 5 and state["length"] == 10 and state["complete"] is False
        assert state["ranges"] == [(0, 5)]
        assert state["cache_control"] == "no-store"
        assert committed_link(response.headers)
        assert response.headers["Preference-Applied"] == "transaction=persist"
        assert stored_bytes(service, path, 5) == b"01234"
        assert read_range(client, path, 0, 4) == b"01234"

    def test_sparse_write_then_fill_completes(self, client: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [(6, b"6789", 10)])
        assert response.status_code == 204
        state = parse_state(response.headers)
        assert state["offset"] == 0 and state["ranges"] == [(6, 10)]
        response = self.send(client, path, [(0, b"012345", 10)])
        assert response.status_code == 204
        state = parse_state(response.headers)
        assert state["complete"] is True and state["offset"] == 10 and state["ranges"] == [(0, 10)]
        assert response.headers.get("Cache-Control") != "no-store"
        assert read_all(client, path) == b"0123456789"

    def test_complete_length_in_range_sets_length(self, client: Any) -> None:
        path = allocate(client)
        response = self.send(client, path, [(0, b"abc", 8)])
        assert response.status_code == 204
        assert parse_state(response.headers)["length"] == 8
        assert head_state(client, path)["length"] == 8

    def test_length_only_part_sets_length(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcd")])
        response = self.send(client, path, [((("Content-Range", "bytes */6"),), b"")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["length"] == 6
        assert head_state(client, path)["length"] == 6
        # Repeating the same length is fine.
        assert self.send(client, path, [((("Content-Range", "bytes */6"),), b"")]).status_code == 204

    def test_length_only_part_completes_covered_resource(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcd")])
        response = self.send(client, path, [((("Content-Range", "bytes */4"),), b"")])
        assert response.status_code == 204
        assert parse_state(response.headers)["complete"] is True
        assert read_all(client, path) == b"abcd"

    def test_different_later_length_is_409(self, client: Any) -> None:
        path = allocate(client)
        assert self.send(client, path, [((("Content-Range", "bytes */10"),), b"")]).status_code == 204
        problem(self.send(client, path, [((("Content-Range", "bytes */11"),), b"")]), 409, "length-conflict")
        problem(self.send(client, path, [(0, b"ab", 12)]), 409, "length-conflict")
        assert head_state(client, path)["length"] == 10
        assert head_state(client, path)["ranges"] == []

    def test_length_differs_from_allocation_is_409(self, client: Any) -> None:
        path = allocate(client, 10)
        problem(self.send(client, path, [((("Content-Range", "bytes */9"),), b"")]), 409, "length-conflict")
        assert head_state(client, path)["length"] == 10

    def test_length_below_committed_bytes_is_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcdef")])
        problem(self.send(client, path, [((("Content-Range", "bytes */4"),), b"")]), 409)
        state = head_state(client, path)
        assert state["length"] is None and state["ranges"] == [(0, 6)]

    def test_length_below_committed_sparse_bytes_is_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(20, b"xy")])
        problem(self.send(client, path, [((("Content-Range", "bytes */21"),), b"")]), 409)
        assert head_state(client, path)["length"] is None

    def test_bytes_at_length_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(4, b"x")]), 409, "length-conflict")
        problem(self.send(client, path, [(2, b"xyz")]), 409, "length-conflict")
        problem(self.send(client, path, [(100, b"x")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_bytes_past_length_declared_later_are_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [((("Content-Range", "bytes */4"),), b"")])
        problem(self.send(client, path, [(3, b"xy")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_identical_resend_is_idempotent(self, client: Any, service: Any) -> None:
        path = allocate(client, 8)
        first = self.send(client, path, [(2, b"cdef")])
        assert first.status_code == 204
        again = self.send(client, path, [(2, b"cdef")])
        assert again.status_code == 204
        assert parse_state(again.headers) == parse_state(first.headers)
        assert extent_rows(service, path) == [(2, 6)]
        # A sub-range of committed bytes, identical, too.
        assert self.send(client, path, [(3, b"de")]).status_code == 204
        assert extent_rows(service, path) == [(2, 6)]

    def test_overlap_with_identical_bytes_extends(self, client: Any, service: Any) -> None:
        path = allocate(client, 8)
        self.send(client, path, [(2, b"cdef")])
        response = self.send(client, path, [(0, b"abcd")])
        assert response.status_code == 204
        assert parse_state(response.headers)["ranges"] == [(0, 6)]
        assert extent_rows(service, path) == [(0, 6)]
        assert stored_bytes(service, path, 6) == b"abcdef"

    def test_different_bytes_over_committed_are_409_and_nothing_applied(
        self, client: Any, service: Any
    ) -> None:
        path = allocate(client, 10)
        self.send(client, path, [(2, b"cdef")])
        # Starts with new bytes, then hits committed bytes that differ.
        response = self.send(client, path, [(0, b"abXdef")])
        body = problem(response, 409, "content-mismatch")
        assert body.get("first") is not None, body
        state = head_state(client, path)
        assert state["ranges"] == [(2, 6)]
        assert extent_rows(service, path) == [(2, 6)]
        assert read_range(client, path, 2, 5) == b"cdef"
        # The state headers come with the error.
        assert parse_state(response.headers)["ranges"] == [(2, 6)]

    def test_different_bytes_after_completion_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        self.send(client, path, [(0, b"abcd")])
        problem(self.send(client, path, [(1, b"X")]), 409, "content-mismatch")
        assert self.send(client, path, [(1, b"b")]).status_code == 204
        assert read_all(client, path) == b"abcd"

    def test_content_offset_part(self, client: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [((("Content-Offset", "3"),), b"3456")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["ranges"] == [(3, 7)]

    def test_content_offset_with_complete_length_and_content_length(self, client: Any) -> None:
        path = allocate(client)
        fields = (("Content-Offset", "2; complete-length=6"), ("Content-Length", "4"))
        response = self.send(client, path, [(fields, b"cdef")])
        assert response.status_code == 204, response.get_data()
        state = parse_state(response.headers)
        assert state["length"] == 6 and state["ranges"] == [(2, 6)]

    def test_empty_content_offset_part_is_a_no_op(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [((("Content-Offset", "0"),), b"")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["ranges"] == []

    def test_content_offset_at_length_is_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "4"),), b"x")]), 409)
        assert head_state(client, path)["ranges"] == []

    def test_content_offset_bytes_past_length_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "3"),), b"xy")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_part_without_range_is_422(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Type", "text/plain"),), b"ab")]), 422, "missing-range")
        assert head_state(client, path)["ranges"] == []

    def test_unknown_unit_is_422(self, client: Any) -> None:
        def check(value: str) -> None:
            path = allocate(client, 4)
            problem(
                self.send(client, path, [((("Content-Range", value),), b"ab")]), 422, "unsupported-range-unit"
            )
            assert head_state(client, path)["ranges"] == []

        for_each(["items 0-1/4", "pages */4", "Items 0-1/*"], check)

    def test_content_offset_unknown_unit_is_422(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "0; unit=items"),), b"ab")]), 422)

    BAD_CONTENT_RANGES = (
        "bytes 3-1/4",  # last < first
        "bytes 0-1/1",  # length <= last
        "bytes 0-1/0",
        "bytes 0-1",  # no length
        "bytes 0 - 1/4",
        "bytes -1-1/4",
        "bytes 0-/4",  # legacy indeterminate end
        "bytes */*",
        "bytes 1-2/x",
        "bytes=0-1/4",
        "bytes 0-1234567890123456/*",  # 16 digits
        "bytes 1234567890123456-1234567890123457/*",
        "bytes */1234567890123456",
        "",
    )

    def test_bad_content_range_is_400(self, client: Any) -> None:
        def check(value: str) -> None:
            path = allocate(client)
            problem(self.send(client, path, [((("Content-Range", value),), b"ab")]), 400)
            state = head_state(client, path)
            assert state["ranges"] == [] and state["length"] is None

        for_each(self.BAD_CONTENT_RANGES, check)

    def test_part_content_length_disagreeing_is_400(self, client: Any) -> None:
        def check(content_length: str) -> None:
            path = allocate(client, 4)
            fields = (("Content-Range", "bytes 0-1/4"), ("Content-Length", content_length))
            problem(self.send(client, path, [(fields, b"ab")]), 400)
            assert head_state(client, path)["ranges"] == []

        for_each(["3", "1", "0", "x", "-2"], check)

    def test_part_content_length_agreeing_is_fine(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Length", "2"))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204

    def test_two_content_ranges_in_a_part_is_400(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Range", "bytes 2-3/4"))
        problem(self.send(client, path, [(fields, b"ab")]), 400)

    def test_unknown_part_fields_are_ignored(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("X-Whatever", "1"), ("Content-Range", "bytes 0-1/4"))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204

    def test_lowercase_unit_and_field_name_accepted(self, client: Any) -> None:
        path = allocate(client, 4)
        assert self.send(client, path, [((("content-range", "BYTES 0-1/4"),), b"ab")]).status_code == 204

    def test_if_none_match_star_on_existing_is_412(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"If-None-Match": "*"}), 412)
        assert head_state(client, path)["ranges"] == []

    def test_if_match_mismatch_is_412(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"If-Match": '"nope"'}), 412)
        assert head_state(client, path)["ranges"] == []

    def test_content_digest_correct_is_applied_atomically(self, client: Any) -> None:
        path = allocate(client, 4)
        body = self._body([(0, b"ab")])
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(body)})
        assert response.status_code == 204, response.get_data()
        assert response.headers["Preference-Applied"] == "transaction=atomic"
        assert head_state(client, path)["ranges"] == [(0, 2)]

    def test_content_digest_sha512_correct(self, client: Any) -> None:
        path = allocate(client, 4)
        body = self._body([(0, b"ab")])
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha512_field(body)})
        assert response.status_code == 204, response.get_data()

    def test_content_digest_wrong_is_400_and_nothing_applied(self, client: Any, service: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(b"other")})
        problem(response, 400, "content-digest-mismatch")
        assert head_state(client, path)["ranges"] == []
        assert extent_rows(service, path) == []

    def test_content_digest_of_part_body_only_is_wrong(self, client: Any) -> None:
        # Content-Digest covers the whole patch document, framing included.
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(b"ab")})
        problem(response, 400, "content-digest-mismatch")
        assert head_state(client, path)["ranges"] == []

    def test_malformed_content_digest_is_400(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"Content-Digest": "sha-256=abc"}), 400)
        assert head_state(client, path)["ranges"] == []

    def test_prefer_atomic_is_reported(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Prefer": "transaction=atomic"})
        assert response.status_code == 204
        assert response.headers["Preference-Applied"] == "transaction=atomic"
        assert head_state(client, path)["ranges"] == [(0, 2)]

    def test_prefer_persist_is_reported(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Prefer": "transaction=persist"})
        assert response.headers["Preference-Applied"] == "transaction=persist"

    def test_unknown_resource_is_404(self, client: Any) -> None:
        problem(self.send(client, MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA", [(0, b"ab")]), 404, "not-found")

    def test_repr_digest_in_part_is_verified_at_completion(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Repr-Digest", sha256_field(b"nope")))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204
        problem(self.send(client, path, [(2, b"cd")]), 409, "repr-digest-mismatch")
        problem(client.get(path), 409, "repr-digest-mismatch")

    def test_repr_digest_in_part_matching(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Repr-Digest", sha256_field(b"abcd")))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204
        assert self.send(client, path, [(2, b"cd")]).status_code == 204
        assert read_all(client, path) == b"abcd"

    def _body(self, parts: Sequence[Part]) -> bytes:
        if self.media_type == MESSAGE:
            fields, data = part_fields(parts[0])
            return encode_message(fields, data)
        if self.media_type == MULTIPART:
            return multipart_body(parts)
        return binary_body(parts)


# -- request bodies that end early ---------------------------------------------------------------


class BodyStream:
    """A ``wsgi.input`` that hands out ``data`` in ``chunk``-sized reads.

    ``fail``: an exception raised once ``data`` is used up (``None``: plain EOF, a short body).
    ``on_read(position)``: called before each read, e.g. to send another request mid-body.
    """

    def __init__(
        self,
        data: bytes,
        *,
        chunk: int = 1 << 20,
        fail: BaseException | None = None,
        on_read: Any = None,
    ) -> None:
        self.data = data
        self.chunk = chunk
        self.fail = fail
        self.on_read = on_read
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        if self.on_read is not None:
            self.on_read(self.position)
        if self.position >= len(self.data):
            if self.fail is not None:
                raise self.fail
            return b""
        if size is None or size < 0:
            size = len(self.data)
        piece = self.data[self.position : self.position + min(size, self.chunk)]
        self.position += len(piece)
        return piece


def send_stream(
    client: Any,
    method: str,
    path: str,
    stream: BodyStream,
    content_length: int | None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Send ``stream`` as the body, announcing ``content_length`` (may exceed what it holds)."""
    overrides: dict[str, Any] = {"wsgi.input": stream}
    if content_length is not None:
        overrides["CONTENT_LENGTH"] = str(content_length)
    return client.open(path, method=method, headers=dict(headers or {}), environ_overrides=overrides)
