"""Writing to the service directly: bodies, a one-part PUT, multipart documents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace

from byterange_server.protocol.multipart import MultipartDecoder
from byterange_server.protocol.multipart import encode_multipart
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.raw import RawDecoder
from byterange_server.uploads.lifecycle import EventBus
from byterange_server.uploads.service import UploadService


class ListBody:
    """A BodySource over a list of chunks; ``interrupted`` simulates a short body."""

    def __init__(self, chunks: list[bytes], *, interrupted: bool = False, on_chunk=None) -> None:
        self.chunks = chunks
        self.interrupted = interrupted
        self.on_chunk = on_chunk

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.on_chunk is not None:
                self.on_chunk(index)
            yield chunk

    def digest(self, algorithm: str) -> bytes:
        return hashlib.new(algorithm.replace("-", ""), b"".join(self.chunks)).digest()


def put(service, resource_id: str, start: int, data: bytes, length: int | str = "*", **kwargs):
    fields = (("content-range", f"bytes {start}-{start + len(data) - 1}/{length}"),)
    middle = len(data) // 2
    chunks = [data[:middle], data[middle:]] if middle else [data]
    return service.write(resource_id, RawDecoder(PartHeader.from_fields(fields)), ListBody(chunks, **kwargs))


def with_settings(service, **changes):
    return UploadService(replace(service.settings, **changes), service.db, service.storage, events=EventBus())


def multipart(parts: list[tuple[int, bytes]], length: int, boundary: str = "b0und") -> bytes:
    return encode_multipart(
        [((("Content-Range", f"bytes {start}-{start + len(data) - 1}/{length}"),), data)
         for start, data in parts],
        boundary,
    )


def multipart_decoder(boundary: str = "b0und"):
    return MultipartDecoder(boundary)
