"""GET: whole representations and RFC 9110 range requests, streamed in bounded chunks.

Complete resources behave like any static file: 200, 206 (one range, or
``multipart/byteranges`` for several), 304, 416. Incomplete resources serve only committed
bytes: a Range inside the committed extents → 206, a range touching a hole → 416, and no
Range → 409. Holes are never served.

A whole body or one range of an object with a file descriptor (local storage) goes out through
``wsgi.file_wrapper``: gunicorn sends it with ``sendfile`` from the descriptor, without the
bytes passing through Python; other servers iterate the wrapper, which reads the same range in
bounded chunks. Multipart bodies and objects without a descriptor (concatenations, memory) are
streamed from Python.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

from flask import Response
from flask import request
from werkzeug.wsgi import wrap_file

from ..errors import IncompleteResourceError
from ..errors import RangeNotSatisfiableError
from ..extents import covers
from ..protocol.multipart import MultipartEncoder
from ..protocol.ranges import ContentRange
from ..protocol.ranges import parse_range
from ..protocol.ranges import resolve_ranges
from ..protocol.ranges import should_reject_ranges
from ..storage import StoredObject
from ..uploads.service import UploadService
from ..uploads.values import ResourceState
from . import conditions
from .responses import representation_headers
from .responses import state_headers

_CHUNK = 1024 * 1024


def serve_get(service: UploadService, state: ResourceState) -> Response:
    if state.complete:
        service.check_not_failed(state.record)
        return _serve_complete(service, state)
    return _serve_incomplete(service, state)


def _serve_complete(service: UploadService, state: ResourceState) -> Response:
    length = state.length or 0
    headers = representation_headers(state)
    if conditions.not_modified(state):
        response = Response(status=304)
        for name in ("ETag", "Last-Modified", "Accept-Ranges"):
            if name in headers:
                response.headers[name] = headers[name]
        return response
    range_header = request.headers.get("Range")
    specs = parse_range(range_header) if range_header and conditions.range_applies(state) else None
    if specs is None:
        return _stream_response(service, state, 200, [(0, length)], headers, length)
    ranges = resolve_ranges(specs, length)
    if not ranges or should_reject_ranges(ranges):
        raise RangeNotSatisfiableError(
            "No requested range can be served.",
            extra={"length": length},
            headers={"Content-Range": ContentRange.unsatisfied(length).format()},
        )
    return _partial_response(service, state, ranges, headers, length)


def _serve_incomplete(service: UploadService, state: ResourceState) -> Response:
    range_header = request.headers.get("Range")
    specs = parse_range(range_header) if range_header else None
    if specs is None:
        raise IncompleteResourceError(
            "The resource is incomplete; request committed bytes with a Range header.",
            extra={"offset": state.offset},
        )
    size = state.length
    if size is None:
        # Without a length a suffix range ("the last N bytes") has no meaning.
        specs = [spec for spec in specs if not spec.is_suffix]
        size = service.settings.max_resource_size
    ranges = resolve_ranges(specs, size)
    unsatisfiable = not ranges or should_reject_ranges(ranges)
    if not unsatisfiable:
        low = min(start for start, _ in ranges)
        high = max(stop for _, stop in ranges)
        committed = service.extents_within(state.id, low, high)
        unsatisfiable = not all(covers(committed, start, stop) for start, stop in ranges)
    if unsatisfiable:
        headers: dict[str, str] = {}
        if state.length is not None:
            headers["Content-Range"] = ContentRange.unsatisfied(state.length).format()
        raise RangeNotSatisfiableError(
            "The range touches bytes that are not committed.",
            extra={"offset": state.offset},
            headers=headers,
        )
    headers = {"Content-Type": state.record.content_type or "application/octet-stream"}
    headers.update(state_headers(state, service.settings))
    return _partial_response(service, state, ranges, headers, state.length)


def _partial_response(
    service: UploadService,
    state: ResourceState,
    ranges: list[tuple[int, int]],
    headers: dict[str, str],
    length: int | None,
) -> Response:
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers = dict(headers, **{"Content-Range": ContentRange(start, stop, length).format()})
        return _stream_response(service, state, 206, ranges, headers, stop - start)
    return _multipart_response(service, state, ranges, headers, length)


def _stream_response(
    service: UploadService,
    state: ResourceState,
    status: int,
    ranges: list[tuple[int, int]],
    headers: dict[str, str],
    content_length: int,
) -> Response:
    (start, stop), = ranges
    stored = service.open_object(state.id, state.record)
    try:
        if stored.fileno() is None:
            stored.close()
            body: object = _read_ranges(service, state, [(None, (start, stop))])
            response = Response(body, status=status)
        else:
            body = wrap_file(request.environ, _RangeFile(stored, start, stop), _CHUNK)
            response = Response(body, status=status, direct_passthrough=True)
    except BaseException:
        stored.close()
        raise
    response.headers.update(headers)
    response.headers["Content-Length"] = str(content_length)
    return response


def _multipart_response(
    service: UploadService,
    state: ResourceState,
    ranges: list[tuple[int, int]],
    headers: dict[str, str],
    length: int | None,
) -> Response:
    boundary = secrets.token_hex(16)
    encoder = MultipartEncoder(boundary)
    media_type = headers.get("Content-Type", "application/octet-stream")
    pieces: list[tuple[bytes | None, tuple[int, int]]] = []
    for start, stop in ranges:
        head = encoder.part_head(
            (
                ("Content-Type", media_type),
                ("Content-Range", ContentRange(start, stop, length).format()),
            )
        )
        pieces.append((head, (start, stop)))
    closing = encoder.closing()
    total = sum(len(head or b"") + stop - start for head, (start, stop) in pieces) + len(closing)
    body = _read_ranges(service, state, pieces, trailer=closing)
    response = Response(body, status=206)
    response.headers.update({k: v for k, v in headers.items() if k != "Content-Type"})
    response.headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    response.headers["Content-Length"] = str(total)
    return response


def _read_ranges(
    service: UploadService,
    state: ResourceState,
    pieces: list[tuple[bytes | None, tuple[int, int]]],
    trailer: bytes = b"",
) -> Iterator[bytes]:
    with service.open_object(state.id, state.record) as stored:
        for head, (start, stop) in pieces:
            if head:
                yield head
            position = start
            while position < stop:
                chunk = stored.read_at(position, min(_CHUNK, stop - position))
                if not chunk:
                    return  # the object is shorter than its extents say; never pad with zeros
                yield chunk
                position += len(chunk)
        if trailer:
            yield trailer


class _RangeFile:
    """Bytes ``[start, stop)`` of a stored object with a descriptor, as a file for
    ``wsgi.file_wrapper``.

    gunicorn sends ``Content-Length`` bytes with ``sendfile`` from the descriptor's position,
    which starts at ``start`` (each :meth:`~..storage.base.StorageBackend.open` makes a descriptor
    of its own, so the position is this response's). Servers without ``sendfile`` call
    :meth:`read`, which never goes past ``stop``. Closing it closes the stored object.
    """

    mode = "rb"  # socket.sendfile checks for a binary file

    def __init__(self, stored: StoredObject, start: int, stop: int) -> None:
        self._stored = stored
        self._stop = stop
        self._position = start
        os.lseek(self.fileno(), start, os.SEEK_SET)

    def fileno(self) -> int:
        fd = self._stored.fileno()
        assert fd is not None
        return fd

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise OSError("only absolute seeks")
        self._position = os.lseek(self.fileno(), position, os.SEEK_SET)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        left = self._stop - self._position
        if left <= 0:
            return b""
        chunk = self._stored.read_at(self._position, left if size < 0 else min(size, left))
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        self._stored.close()
