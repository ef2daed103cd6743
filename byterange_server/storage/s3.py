"""An S3-compatible object store (AWS S3, Ceph RGW, SeaweedFS, MinIO, R2) as storage.

An object store cannot write in place, so a resource's bytes are many immutable objects, and
the segment rows in SQL say which object holds which committed range (see base.py):

- **Writes** store only the gap bytes a request reserved, in new objects that are never
  overwritten, keyed by the request's first reservation and the absolute offset:
  ``<prefix>r/<storage key>/w/<reservation>/<offset>``. An object never crosses a multiple of
  the resource's block size (chosen at allocation), and is cut where the gap ends. A full block
  is stored in the background while the next one streams in, so a write holds at most two
  blocks in memory and nothing on local disk. :meth:`S3BlockWriter.flush` returns once the
  store acknowledged every object, and only then does the service commit the extents and
  segments; an interrupted body commits the prefix it stored.
- **Reads** stream from the pieces: one ranged GET per piece, kept open while the reader moves
  on sequentially (a GET of 1 GiB is one request per piece, not one per MiB).
- **Assembly** (after completion, see uploads/assembly.py) is one multipart upload to
  ``<prefix>r/<storage key>/whole/<attempt>``: part k is block k, so every part but the last
  has the same size (R2 requires it) and there are at most 10,000; a block one piece covers is
  an ``UploadPartCopy`` inside the store, a fragmented one is read back and uploaded.
- **Garbage** is whatever no segment row names; :meth:`S3Storage.collect` deletes it per
  scope, page by page, when the service tells it to (uploads/garbage.py).

Nothing depends on the store's conditional writes (several stores ignore some of them): keys
are never reused. ``If-None-Match: *`` is sent on each store as a tripwire only.

Durability is the store's: a 200 must mean the object survives a crash. AWS S3 and Ceph RGW
sync before they answer; SeaweedFS only with ``fs.configure -fsync`` (docs/storage.md).
"""

from __future__ import annotations

import base64
import bisect
import concurrent.futures
import threading
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from .base import BufferedReader
from .base import Segment
from .base import SegmentLoader
from .base import StorageError
from .base import validate_storage_key

__all__ = ["S3BlockWriter", "S3Reader", "S3Storage", "block_size_for"]

MIB = 1024 * 1024
#: S3's limits on a multipart upload.
MAX_PARTS = 10_000
MIN_PART = 5 * MIB
#: Threads storing full blocks in the background and copying assembly parts, per process.
_WORKERS = 16
#: Parts assembled at once (each fragmented one holds a block in memory).
_ASSEMBLY_PARALLEL = 4


def block_size_for(length_bound: int, minimum: int = 8 * MIB) -> int:
    """The smallest power-of-two multiple of ``minimum`` that cuts ``length_bound`` bytes into at
    most 10,000 blocks."""
    size = max(minimum, MIN_PART)
    while -(-length_bound // size) > MAX_PARTS:
        size *= 2
    return size


def _error(action: str, exc: BaseException) -> StorageError:
    """A store failure as a 503 the client may retry: no key or bucket name in the detail."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    extra = {"s3-error": code} if code else {}
    return StorageError(
        f"The object store could not {action}.", extra=extra, status=503, headers={"Retry-After": "2"}
    )


class S3Storage:
    """Objects in one bucket, under ``prefix``; see the module docstring.

    :param bucket: the bucket (one for everything: some stores give each bucket volumes of
        its own).
    :param endpoint: URL of an S3-compatible store; None for AWS.
    :param prefix: prepended to every key (``tenant/``, say); empty or ending in ``/``.
    :param path_style: ``endpoint/bucket/key`` URLs instead of ``bucket.endpoint/key``.
    :param min_block_size: the smallest block size (8 MiB); larger resources get larger blocks.
    :param max_resource_size: the block grid of a resource of unknown length covers this.
    :param client: a boto3 S3 client to use instead of building one (tests).
    """

    uses_segments = True

    def __init__(
        self,
        *,
        bucket: str,
        endpoint: str | None = None,
        prefix: str = "",
        region: str | None = None,
        path_style: bool = True,
        min_block_size: int = 8 * MIB,
        max_resource_size: int = 1024**4,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 storage needs a bucket (BYTERANGE_S3_BUCKET)")
        if prefix and not prefix.endswith("/"):
            raise ValueError("BYTERANGE_S3_PREFIX must be empty or end with '/'")
        if min_block_size < MIN_PART:
            raise ValueError(f"the S3 block size must be at least {MIN_PART} bytes (the smallest part)")
        self.bucket = bucket
        self.prefix = prefix
        self.min_block_size = min_block_size
        self.max_resource_size = max_resource_size
        if client is None:
            import boto3  # optional dependency: pip install 'byterange-server[s3]'
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": "path" if path_style else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=_WORKERS * 2,
                # Our own CRC-32 goes with each store; no second checksum pass in botocore.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            # A session of its own: boto3's default session resolves credentials once per process and
            # keeps them, so a storage built later (new settings, a test) would sign with stale keys.
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, region_name=region, config=config
            )
        self.client = client
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:  # created on first use: a gunicorn worker forks before that
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    _WORKERS, thread_name_prefix="byterange-s3"
                )
            return self._pool

    def key_prefix(self, key: str) -> str:
        return f"{self.prefix}r/{validate_storage_key(key)}/"

    # -- the StorageBackend protocol ---------------------------------------------------------

    def block_size(self, length_bound: int) -> int:
        return block_size_for(min(length_bound, self.max_resource_size), self.min_block_size)

    def create(self, key: str) -> None:
        validate_storage_key(key)  # nothing to create: objects come with the first write

    def begin_write(self, key: str, writer_id: str, block_size: int | None) -> S3BlockWriter:
        base = self.key_prefix(key) + self.write_scope(writer_id)
        return S3BlockWriter(self, base, block_size or self.min_block_size)

    def open_read(self, key: str, segments: SegmentLoader | None = None) -> S3Reader:
        validate_storage_key(key)
        if segments is None:
            raise StorageError("An object store is read through the segments of its writes.")
        return S3Reader(self, segments)

    def write_scope(self, writer_id: str) -> str:
        return f"w/{writer_id}/" if writer_id else "w/"

    def assembly_scope(self, attempt: str) -> str:
        return f"whole/{attempt}"

    def delete(self, key: str) -> None:
        self.collect(key, "", None)

    def exists(self, key: str) -> bool:
        try:
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key_prefix(key), MaxKeys=1)
        except Exception as exc:
            raise _error("list objects", exc) from exc
        return bool(listed.get("KeyCount"))

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise _error("reach its bucket", exc) from exc

    def collect(self, key: str, scope: str, referenced: Callable[[list[str]], set[str]] | None) -> int:
        prefix = self.key_prefix(key) + scope
        deleted = 0
        try:
            uploads = self.client.get_paginator("list_multipart_uploads")
            for page in uploads.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self._abort(upload["Key"], upload["UploadId"])
            objects = self.client.get_paginator("list_objects_v2")
            for page in objects.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [item["Key"] for item in page.get("Contents", [])]
                if referenced is not None and keys:
                    keep = referenced(keys)
                    keys = [name for name in keys if name not in keep]
                if keys:
                    self._delete_objects(keys)
                    deleted += len(keys)
        except StorageError:
            raise
        except Exception as exc:
            raise _error("delete objects", exc) from exc
        return deleted

    def _delete_objects(self, keys: list[str]) -> None:
        for first in range(0, len(keys), 1000):
            batch = [{"Key": name} for name in keys[first : first + 1000]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                raise StorageError(
                    "The object store could not delete some objects.",
                    extra={"s3-error": answer["Errors"][0].get("Code")},
                    status=503,
                )

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    # -- objects -------------------------------------------------------------------------------

    def put(self, name: str, body: bytes | bytearray | memoryview) -> int:
        """Store one new object; returns its CRC-32, which the store checks on arrival."""
        crc = zlib.crc32(body)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=bytes(body) if isinstance(body, memoryview) else body,
                ContentLength=len(body),
                ChecksumCRC32=base64.b64encode(crc.to_bytes(4, "big")).decode(),
                IfNoneMatch="*",  # a tripwire: keys are never reused
            )
        except Exception as exc:
            raise _error("store an object", exc) from exc
        return crc

    def get_stream(self, name: str, start: int, stop: int) -> Any:
        """A streaming body of bytes ``[start, stop)`` of one object."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={start}-{stop - 1}")
        except Exception as exc:
            raise _error("read an object", exc) from exc
        return answer["Body"]

    def assemble(
        self, key: str, segments: Sequence[Segment], length: int, block_size: int, attempt: str
    ) -> Segment:
        """See :meth:`StorageBackend.assemble
        <byterange_server.storage.base.StorageBackend.assemble>`; its counts of copied and
        uploaded parts are kept in ``last_assembly``."""
        target = self.key_prefix(key) + self.assembly_scope(attempt)
        ordered = sorted(segments, key=lambda segment: segment.start)
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
        except Exception as exc:
            raise _error("begin an assembly", exc) from exc
        blocks = -(-length // block_size)
        stats = {"copied": 0, "uploaded": 0}

        def part(index: int) -> dict[str, Any]:
            start, stop = index * block_size, min(length, (index + 1) * block_size)
            inside = _meeting(ordered, start, stop)
            if len(inside) == 1 and inside[0].start <= start and inside[0].stop >= stop:
                piece = inside[0]
                offset = piece.object_offset + start - piece.start
                answer = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    CopySource={"Bucket": self.bucket, "Key": piece.object_key},
                    CopySourceRange=f"bytes={offset}-{offset + stop - start - 1}",
                )
                stats["copied"] += 1
                return {"PartNumber": index + 1, "ETag": answer["CopyPartResult"]["ETag"]}
            buffer = bytearray(stop - start)
            with S3Reader(self, lambda at: [s for s in inside if s.stop > at]) as reader:
                if reader.readinto_at(start, buffer) != len(buffer):
                    raise StorageError("A block to assemble is not covered by its pieces.")
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=index + 1, Body=bytes(buffer)
            )
            stats["uploaded"] += 1
            return {"PartNumber": index + 1, "ETag": answer["ETag"]}

        try:
            with concurrent.futures.ThreadPoolExecutor(_ASSEMBLY_PARALLEL) as pool:
                parts = list(pool.map(part, range(blocks)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            try:
                self._abort(target, upload_id)
            except Exception:  # the garbage row of the attempt aborts it later
                pass
            if isinstance(exc, StorageError) or not isinstance(exc, Exception):
                raise
            raise _error("assemble an object", exc) from exc
        self.last_assembly = stats
        return Segment(0, length, target, 0, None)


def _meeting(ordered: Sequence[Segment], start: int, stop: int) -> list[Segment]:
    index = max(bisect.bisect_right([s.start for s in ordered], start) - 1, 0)
    found = []
    while index < len(ordered) and ordered[index].start < stop:
        if ordered[index].stop > start:
            found.append(ordered[index])
        index += 1
    return found


class S3BlockWriter:
    """The objects of one write request (see the module docstring). Not thread-safe: one
    request thread writes; stores run on the storage's pool, one at a time per writer."""

    def __init__(self, storage: S3Storage, base: str, block_size: int) -> None:
        self._storage = storage
        self._base = base
        self._block = block_size
        self._buffer = bytearray()
        self._start = 0
        self._in_flight: concurrent.futures.Future[int] | None = None
        self._in_flight_segment: tuple[int, int, str] | None = None
        self._stored: list[Segment] = []
        self._closed = False

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        if self._closed:
            raise ValueError("I/O operation on a closed block writer")
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(data) as source, source.cast("B") as view:
            size = len(view)
            if self._buffer and offset != self._start + len(self._buffer):
                self._cut()  # another gap: a new object
            done = 0
            while done < size:
                if not self._buffer:
                    self._start = offset + done
                end = self._start + len(self._buffer)
                block_end = (end // self._block + 1) * self._block
                take = min(size - done, block_end - end)
                self._buffer += view[done : done + take]
                done += take
                if self._start + len(self._buffer) == block_end:
                    self._cut()
        return size

    def _cut(self) -> None:
        """Store the buffered piece in the background, after the one before it landed."""
        if not self._buffer:
            return
        self._wait()
        body, self._buffer = self._buffer, bytearray()
        start, stop = self._start, self._start + len(body)
        name = f"{self._base}{start:020d}"
        self._in_flight_segment = (start, stop, name)
        self._in_flight = self._storage.pool.submit(self._storage.put, name, body)

    def _wait(self) -> None:
        future, self._in_flight = self._in_flight, None
        if future is None:
            return
        start, stop, name = self._in_flight_segment  # type: ignore[misc]
        crc = future.result()  # a failed store raises its StorageError here
        self._stored.append(Segment(start, stop, name, 0, crc))

    def flush(self) -> list[Segment]:
        self._cut()
        self._wait()
        stored, self._stored = self._stored, []
        return stored

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer = bytearray()
        future, self._in_flight = self._in_flight, None
        if future is not None:
            concurrent.futures.wait([future])  # lands (or fails) before the request lets go


class S3Reader(BufferedReader):
    """A read-only :class:`~byterange_server.storage.base.StoredObject` over the pieces that
    ``loader`` maps out. Sequential reads continue on the GET they are in."""

    def __init__(self, storage: S3Storage, loader: SegmentLoader) -> None:
        self._storage = storage
        self._loader = loader
        self._segments: list[Segment] = []
        self._stream: Any = None
        self._stream_at = -1
        self._stream_stop = -1
        self._closed = False

    def _segment_at(self, offset: int) -> Segment | None:
        for attempt in range(2):
            for segment in self._segments:
                if segment.start <= offset < segment.stop:
                    return segment
            if attempt == 0:
                self._segments = list(self._loader(offset))
        return None

    def readinto_at(self, offset: int, buffer: bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("I/O operation on a closed stored object")
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with memoryview(buffer) as target, target.cast("B") as view:
            done = 0
            while done < len(view):
                position = offset + done
                if self._stream is None or self._stream_at != position or position >= self._stream_stop:
                    self._drop_stream()
                    segment = self._segment_at(position)
                    if segment is None:
                        break  # past the committed bytes: short, as at the end of a file
                    begin = segment.object_offset + position - segment.start
                    self._stream = self._storage.get_stream(
                        segment.object_key, begin, segment.object_offset + segment.length
                    )
                    self._stream_at, self._stream_stop = position, segment.stop
                want = min(len(view) - done, self._stream_stop - position)
                try:
                    chunk = self._stream.read(want)
                except Exception as exc:
                    self._drop_stream()
                    raise StorageError("The object store could not read an object.", status=503) from exc
                if not chunk:
                    self._drop_stream()
                    raise StorageError("A stored object is shorter than its segment.")
                view[done : done + len(chunk)] = chunk
                done += len(chunk)
                self._stream_at += len(chunk)
            return done


    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        raise StorageError("Stored objects are written through a block writer.")

    def sync(self) -> None:
        pass

    def fileno(self) -> None:
        return None

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def close(self) -> None:
        self._closed = True
        self._drop_stream()
