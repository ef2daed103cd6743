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
