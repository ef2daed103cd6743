"""The write/read/collect seam of :mod:`byterange_server.storage.base`, run against the file
backends and two real S3-compatible stores: SeaweedFS (tests/support/seaweedfs.py) and Ceph RGW
(tests/support/ceph.py, the store that syncs before it acknowledges; skipped where Ceph is not
installed unless ``BYTERANGE_TEST_CEPH=1``).

What holds for every backend: bytes written and flushed read back through ``open_read`` (with
the segments the flushes returned), ``delete`` removes them. What holds for object stores: a
piece never crosses a block boundary or a gap, a writer holds at most a block in its buffer
while one more is stored, stores only what it was given, what no segment names is collected,
and assembly gives one object whose parts are the blocks.
"""

from __future__ import annotations

import hashlib
import secrets

import boto3
import pytest

from byterange_server.errors import StorageError
from byterange_server.storage import LocalSparseStorage
from byterange_server.storage import MemoryStorage
from byterange_server.storage import StorageBackend
from byterange_server.storage import s3 as s3_module
from byterange_server.storage.base import BlockWriter
from byterange_server.storage.base import fixed_segments
from byterange_server.storage.s3 import S3Storage
from byterange_server.storage.s3 import block_size_for

MIB = 1024 * 1024
BLOCK = 5 * MIB


#: The object stores, by the session fixture that starts each.
STORES = {"seaweedfs": "s3_server", "ceph": "ceph_server"}


@pytest.fixture(params=list(STORES))
def object_server(request):
    """The settings of one real object store (each started once per session)."""
    return request.getfixturevalue(STORES[request.param])


def credentials(monkeypatch, server) -> None:
    """Credentials through the usual AWS environment chain, as a deployment gives them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server["secret_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it first resolved: a fresh one per test,
    # as each process of a deployment has.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def make_s3(server: dict[str, str], prefix: str | None = None) -> S3Storage:
    return S3Storage(
        bucket=server["bucket"],
        endpoint=server["endpoint"],
        region=server["region"],
        prefix=prefix if prefix is not None else f"contract/{secrets.token_hex(6)}/",
        min_block_size=BLOCK,
    )


@pytest.fixture(params=["local", "memory", *STORES])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalSparseStorage(tmp_path / "objects")
    if request.param == "memory":
        return MemoryStorage()
    server = request.getfixturevalue(STORES[request.param])
    credentials(monkeypatch, server)
    return make_s3(server)


@pytest.fixture
def s3(object_server, monkeypatch):
    credentials(monkeypatch, object_server)
    return make_s3(object_server)


def new_key(storage) -> str:
    key = secrets.token_urlsafe(16)
    storage.create(key)
    return key


def read_back(storage, key, found, start, stop) -> bytes:
    with storage.open_read(key, fixed_segments(found) if storage.uses_segments else None) as reader:
        return reader.read_at(start, stop - start)


def listed(storage: S3Storage, key: str) -> list[str]:
    answer = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.key_prefix(key))
    return sorted(item["Key"] for item in answer.get("Contents", []))


def test_backends_satisfy_the_protocol(storage):
    assert isinstance(storage, StorageBackend)
    writer = storage.begin_write(new_key(storage), "w" * 16, storage.block_size(10 * MIB))
    assert isinstance(writer, BlockWriter)
    writer.close()


def test_flushed_bytes_read_back(storage):
    key = new_key(storage)
    data = secrets.token_bytes(2 * BLOCK + 12345)
    writer = storage.begin_write(key, "a" * 16, storage.block_size(len(data)))
    # In uneven chunks, as a body arrives.
    for first in range(0, len(data), 777_777):
        writer.write_at(first, data[first : first + 777_777])
    found = writer.flush()
    writer.close()
    assert read_back(storage, key, found, 0, len(data)) == data
    assert read_back(storage, key, found, BLOCK - 10, BLOCK + 10) == data[BLOCK - 10 : BLOCK + 10]
    assert (found == []) is (not storage.uses_segments)


def test_delete_removes_every_byte(storage):
    key = new_key(storage)
    writer = storage.begin_write(key, "b" * 16, storage.block_size(MIB))
    writer.write_at(0, b"x" * 1000)
    writer.flush()
    writer.close()
    storage.delete(key)
    storage.delete(key)  # idempotent
    assert not storage.exists(key)


def test_check_passes(storage):
    storage.check()


# -- object stores ---------------------------------------------------------------------------


def test_block_size_keeps_any_resource_under_ten_thousand_parts():
    assert block_size_for(1) == 8 * MIB
    assert block_size_for(10_000 * 8 * MIB) == 8 * MIB
    assert block_size_for(10_000 * 8 * MIB + 1) == 16 * MIB
    tib = 1024**4
    assert block_size_for(tib) == 128 * MIB
    assert -(-tib // block_size_for(tib)) <= 10_000
    assert block_size_for(0, 5 * MIB) == 5 * MIB


def test_pieces_are_cut_on_the_block_grid_and_at_gaps(s3):
    key = new_key(s3)
    data = secrets.token_bytes(3 * BLOCK)
    writer = s3.begin_write(key, "c" * 16, BLOCK)
    writer.write_at(100, data[100 : 2 * BLOCK + 50])  # crosses two block boundaries
    writer.write_at(2 * BLOCK + 1000, data[2 * BLOCK + 1000 : 2 * BLOCK + 2000])  # after a gap
    found = writer.flush()
    writer.close()
    assert [(s.start, s.stop) for s in found] == [
        (100, BLOCK),
        (BLOCK, 2 * BLOCK),
        (2 * BLOCK, 2 * BLOCK + 50),
        (2 * BLOCK + 1000, 2 * BLOCK + 2000),
    ]
    assert all(s.start // BLOCK == (s.stop - 1) // BLOCK for s in found)
    assert len({s.object_key for s in found}) == 4
    assert listed(s3, key) == sorted(s.object_key for s in found)
    assert read_back(s3, key, found, 100, 2 * BLOCK + 50) == data[100 : 2 * BLOCK + 50]


def test_a_writer_holds_at_most_one_block_while_another_is_stored(s3):
    key = new_key(s3)
    writer = s3.begin_write(key, "d" * 16, BLOCK)
    chunk = secrets.token_bytes(MIB)
    for index in range(4 * BLOCK // MIB):
        writer.write_at(index * MIB, chunk)
        assert len(writer._buffer) < BLOCK
        # The store before the one in flight has landed: at most two blocks are in memory.
        assert len(writer._stored) >= max(0, (index + 1) * MIB // BLOCK - 1)
    assert len(writer.flush()) == 4
    writer.close()


def test_an_interrupted_writer_leaves_only_collectable_objects(s3):
    key = new_key(s3)
    writer = s3.begin_write(key, "e" * 16, BLOCK)
    writer.write_at(0, secrets.token_bytes(BLOCK + 10))  # one block stored, 10 bytes buffered
    writer.close()  # never flushed: the request died
    stored = listed(s3, key)
    assert len(stored) == 1  # the buffered remainder was never stored
    assert s3.collect(key, s3.write_scope("e" * 16), lambda keys: set()) == 1
    assert listed(s3, key) == []


def test_collect_keeps_what_segments_name(s3):
    key = new_key(s3)
    writer = s3.begin_write(key, "f" * 16, BLOCK)
    writer.write_at(0, b"a" * 10)
    writer.write_at(20, b"b" * 10)
    first, second = writer.flush()
    writer.close()
    assert s3.collect(key, s3.write_scope(""), lambda keys: {first.object_key} & set(keys)) == 1
    assert listed(s3, key) == [first.object_key]
    s3.collect(key, "", None)
    assert listed(s3, key) == []


def test_a_failed_store_fails_the_flush(object_server):
    # Unknown credentials: every request is refused (a missing bucket would not do: SeaweedFS
    # creates buckets on first use for an admin identity).
    refused = boto3.session.Session(
        aws_access_key_id="no-such-key", aws_secret_access_key="not-the-secret-0123456789"
    ).client("s3", endpoint_url=object_server["endpoint"], region_name=object_server["region"])
    broken = S3Storage(bucket=object_server["bucket"], client=refused, min_block_size=BLOCK)
    writer = broken.begin_write(secrets.token_urlsafe(16), "g" * 16, BLOCK)
    writer.write_at(0, b"x" * 100)
    with pytest.raises(StorageError) as info:
        writer.flush()
    assert info.value.status == 503
    writer.close()
    with pytest.raises(StorageError):
        broken.check()


def test_sequential_reads_stay_on_one_get_per_piece(s3):
    key = new_key(s3)
    data = secrets.token_bytes(2 * BLOCK)
    writer = s3.begin_write(key, "h" * 16, BLOCK)
    writer.write_at(0, data)
    found = writer.flush()
    writer.close()
    calls = []
    real = s3.get_stream
    s3.get_stream = lambda *args: calls.append(args) or real(*args)  # type: ignore[method-assign]
    with s3.open_read(key, fixed_segments(found)) as reader:
        got = b"".join(reader.read_at(at, MIB) for at in range(0, len(data), MIB))
    assert got == data
    assert len(calls) == 2


@pytest.mark.parametrize("layout", ["aligned", "fragmented"])
def test_assembly_makes_one_object_of_equal_parts(s3, layout):
    key = new_key(s3)
    length = 2 * BLOCK + 4321
    data = secrets.token_bytes(length)
    found = []
    if layout == "aligned":
        writer = s3.begin_write(key, "i" * 16, BLOCK)
        writer.write_at(0, data)
        found += writer.flush()
        writer.close()
    else:  # out of order, in pieces that split every block
        cuts = [0, 1000, BLOCK - 7, BLOCK + 3 * MIB, 2 * BLOCK + 1, length]
        for index, (start, stop) in enumerate(reversed(list(zip(cuts, cuts[1:], strict=False)))):
            writer = s3.begin_write(key, f"{index:016d}", BLOCK)
            writer.write_at(start, data[start:stop])
            found += writer.flush()
            writer.close()
    whole = s3.assemble(key, found, length, BLOCK, "attempt1")
    expected = {"aligned": {"copied": 3, "uploaded": 0}, "fragmented": {"copied": 0, "uploaded": 3}}
    assert s3.last_assembly == expected[layout]
    assert (whole.start, whole.stop, whole.object_offset) == (0, length, 0)
    head = s3.client.head_object(Bucket=s3.bucket, Key=whole.object_key, PartNumber=1)
    assert head["ETag"].endswith('-3"')
    if "PartsCount" in head:
        assert head["PartsCount"] == 3 and head["ContentLength"] == BLOCK
    else:  # Ceph 16 ignores PartNumber; its multipart ETag is the MD5 of the parts' MD5s
        parts = [data[first : first + BLOCK] for first in range(0, length, BLOCK)]
        digest = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest()
        assert head["ETag"] == f'"{digest}-3"'
    assert read_back(s3, key, [whole], 0, length) == data


def test_an_unknown_length_gets_the_smallest_block(s3):
    # A write holds at most two blocks: 2 x 5 MiB here, not 2 x 160 MiB for a 1 TiB bound.
    assert s3.block_size(None) == BLOCK
    assert s3.block_size(10 * BLOCK) == BLOCK
    assert s3.block_size(10_000 * BLOCK + 1) == 2 * BLOCK


def test_assembly_of_more_blocks_than_parts_groups_them_in_two_levels(s3, monkeypatch):
    # Two parts at most, so three blocks (an unknown length's grid) are grouped two by two.
    monkeypatch.setattr(s3_module, "MAX_PARTS", 2)
    key = new_key(s3)
    length = 2 * BLOCK + 4321
    data = secrets.token_bytes(length)
    writer = s3.begin_write(key, "j" * 16, BLOCK)
    writer.write_at(0, data)
    found = writer.flush()
    writer.close()
    whole = s3.assemble(key, found, length, BLOCK, "attempt2")
    assert s3.last_assembly == {"copied": 3, "uploaded": 0, "regrouped": 2}
    assert read_back(s3, key, [whole], 0, length) == data
    head = s3.client.head_object(Bucket=s3.bucket, Key=whole.object_key, PartNumber=1)
    assert head["ETag"].endswith('-2"')
    if "PartsCount" in head:
        assert head["PartsCount"] == 2 and head["ContentLength"] == 2 * BLOCK
    else:  # Ceph 16, as above
        parts = [data[: 2 * BLOCK], data[2 * BLOCK :]]
        digest = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest()
        assert head["ETag"] == f'"{digest}-2"'
    # The runs of the first level are objects the segments do not name: garbage of the attempt.
    runs = [name for name in listed(s3, key) if ".parts/" in name]
    assert len(runs) == 2
    assert s3.collect(key, "", lambda keys: {whole.object_key} & set(keys)) == len(found) + 2
    assert listed(s3, key) == [whole.object_key]
