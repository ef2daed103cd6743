"""The completion digest of an upload written in order is hashed as its bytes arrive: its
completion reads nothing back, and its digest is hashlib's. Out of order, after a failed write,
and when the next write lands in another process (another service over the same database and
storage: a second worker), it falls back to reading the bytes back, and is still right."""

from __future__ import annotations

import hashlib

import pytest

from byterange_server.errors import TruncatedBodyError
from byterange_server.protocol.parts import PartHeader
from byterange_server.protocol.raw import RawDecoder
from byterange_server.storage.local import LocalStoredObject
from byterange_server.uploads.values import WriteOptions

from .helpers import ListBody
from .helpers import put
from .helpers import with_settings

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """Bytes asked of the local storage by any reader."""
    asked: list[int] = []
    read_at, readinto_at = LocalStoredObject.read_at, LocalStoredObject.readinto_at

    def counting_read_at(self, offset: int, size: int) -> bytes:
        asked.append(size)
        return read_at(self, offset, size)

    def counting_readinto_at(self, offset: int, buffer) -> int:
        asked.append(len(buffer))
        return readinto_at(self, offset, buffer)

    monkeypatch.setattr(LocalStoredObject, "read_at", counting_read_at)
    monkeypatch.setattr(LocalStoredObject, "readinto_at", counting_readinto_at)
    return asked


def _write_in(service, resource_id: str, spans: list[tuple[int, int]]):
    state = None
    for start, stop in spans:
        state = put(service, resource_id, start, DATA[start:stop], len(DATA))
    return state


def test_a_sequential_upload_completes_without_reading_its_bytes_back(service, reads) -> None:
    resource = service.allocate(length=len(DATA))
    state = _write_in(service, resource.id, [(0, 1000), (1000, 4096), (4096, 9000), (9000, len(DATA))])
    assert state.complete
    assert state.record.sha256 == hashlib.sha256(DATA).digest()
    assert reads == []


def test_an_out_of_order_upload_is_hashed_at_completion(service, reads) -> None:
    resource = service.allocate(length=len(DATA))
    state = _write_in(service, resource.id, [(5000, len(DATA)), (0, 5000)])
    assert state.complete and state.record.sha256 == hashlib.sha256(DATA).digest()
    assert sum(reads) >= len(DATA)


def test_a_write_that_commits_nothing_leaves_the_running_digest_as_it_was(service, reads) -> None:
    resource = service.allocate(length=len(DATA))
    put(service, resource.id, 0, DATA[:4000], len(DATA))
    fields = (("content-range", f"bytes 4000-7999/{len(DATA)}"),)
    with pytest.raises(TruncatedBodyError):  # atomic and cut short: nothing of it commits
        service.write(
            resource.id,
            RawDecoder(PartHeader.from_fields(fields)),
            ListBody([b"X" * 3000], interrupted=True),
            WriteOptions(transaction="atomic"),
        )
    with pytest.raises(TruncatedBodyError):  # persist and cut short: its prefix commits
        service.write(
            resource.id,
            RawDecoder(PartHeader.from_fields(fields)),
            ListBody([DATA[4000:6500]], interrupted=True),
        )
    state = _write_in(service, resource.id, [(6500, len(DATA))])
    assert state.complete and state.record.sha256 == hashlib.sha256(DATA).digest()
    assert reads == []


@pytest.mark.parametrize(
    "workers",
    [
        [0, 1],  # the completing write lands in a process that has seen none of the upload
        [0, 1, 0],  # ... in the first process again, whose running digest stopped short
        [1, 0, 0],  # one process continues the prefix another began
    ],
)
def test_a_write_in_another_process_falls_back_to_reading_back(service, reads, workers) -> None:
    processes = [service, with_settings(service)]  # the same database and storage, own memory
    resource = service.allocate(length=len(DATA))
    cuts = [0, *(len(DATA) * (index + 1) // len(workers) for index in range(len(workers)))]
    state = None
    for index, worker in enumerate(workers):
        start, stop = cuts[index], cuts[index + 1]
        state = put(processes[worker], resource.id, start, DATA[start:stop], len(DATA))
    assert state.complete and state.record.sha256 == hashlib.sha256(DATA).digest()
    assert sum(reads) >= len(DATA)  # hashed from storage, not from a digest that missed bytes
    for process in processes:
        assert process.state(resource.id).etag == state.etag


def test_a_digest_declared_with_another_algorithm_is_still_checked(service, reads) -> None:
    resource = service.allocate(
        length=len(DATA), expected_digest=("sha-512", hashlib.sha512(DATA).digest())
    )
    state = _write_in(service, resource.id, [(0, 5000), (5000, len(DATA))])
    assert state.complete and not state.record.is_failed
    assert state.record.sha256 == hashlib.sha256(DATA).digest()
