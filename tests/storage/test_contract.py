"""The storage contract of :mod:`byterange_server.storage.base`, run against every backend.

Each test takes the ``storage`` fixture, parametrized over ``local`` (on ``tmp_path``, with
real fsyncs) and ``memory``; a new backend joins by adding a param. The tests after the contract
cover what is specific to the memory fake and to :func:`load_backend`.
"""

from __future__ import annotations

import array
import os
import secrets

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from byterange_server import storage as storage_pkg
from byterange_server.errors import StorageError
from byterange_server.storage import InvalidResourceIdError
from byterange_server.storage import LocalSparseStorage
from byterange_server.storage import MemoryStorage
from byterange_server.storage import StorageBackend
from byterange_server.storage import StorageObjectExistsError
from byterange_server.storage import StorageObjectMissingError
from byterange_server.storage import StoredObject
from byterange_server.storage import generation_key
from byterange_server.storage import load_backend
from byterange_server.storage import validate_resource_id
from byterange_server.storage import validate_storage_key

GIB = 1 << 30


def new_id() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture(params=["local", "memory"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalSparseStorage(tmp_path / "objects")
    return MemoryStorage()


@pytest.fixture
def resource_id(storage):
    rid = new_id()
    storage.create(rid)
    return rid


# -- creating, opening, deleting -----------------------------------------------------------------


def test_backends_satisfy_the_protocols(storage, resource_id):
    assert isinstance(storage, StorageBackend)
    with storage.open(resource_id) as obj:
        assert isinstance(obj, StoredObject)


def test_created_object_is_empty(storage, resource_id):
    assert storage.exists(resource_id)
    with storage.open(resource_id) as obj:
        assert obj.read_at(0, 10) == b""
        assert obj.readinto_at(0, bytearray(10)) == 0


def test_create_twice_raises(storage, resource_id):
    with pytest.raises(StorageObjectExistsError):
        storage.create(resource_id)


def test_open_missing_raises(storage):
    rid = new_id()
    assert not storage.exists(rid)
    with pytest.raises(StorageObjectMissingError) as info:
        storage.open(rid)
    assert isinstance(info.value, StorageError)
    assert info.value.status == 500


def test_delete_is_idempotent(storage, resource_id):
    storage.delete(resource_id)
    assert not storage.exists(resource_id)
    storage.delete(resource_id)
    storage.delete(new_id())  # never created
    with pytest.raises(StorageObjectMissingError):
        storage.open(resource_id)


def test_delete_then_create_starts_empty(storage, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"old")
    storage.delete(resource_id)
    storage.create(resource_id)
    with storage.open(resource_id) as obj:
        assert obj.read_at(0, 10) == b""


def test_open_handle_survives_delete(storage, resource_id):
    # As with an unlinked file: the handle keeps working; the id is free again.
    with storage.open(resource_id) as obj:
        storage.delete(resource_id)
        assert obj.write_at(0, b"orphan") == 6
        assert obj.read_at(0, 6) == b"orphan"
        obj.sync()
    assert not storage.exists(resource_id)


def test_check_passes(storage):
    storage.check()


# -- resource ids --------------------------------------------------------------------------------

INVALID_IDS = [
    pytest.param("../etc", id="dotdot"),
    pytest.param("../" + "a" * 20, id="dotdot-long"),
    pytest.param("a/b", id="slash"),
    pytest.param("a" * 10 + "/" + "b" * 10, id="slash-long"),
    pytest.param("a" * 10 + "\\" + "b" * 10, id="backslash"),
    pytest.param("", id="empty"),
    pytest.param("x" * 65, id="too-long"),
    pytest.param("abc", id="too-short"),
    pytest.param("x" * 15, id="one-short"),
    pytest.param("a.b", id="dot"),
    pytest.param("a" * 10 + "." + "b" * 10, id="dot-long"),
    pytest.param("\x00" * 20, id="nul"),
    pytest.param("a" * 16 + "\n", id="trailing-newline"),
    pytest.param("\u0663" * 16, id="non-ascii-digits"),
    pytest.param("a" * 10 + " " + "b" * 10, id="space"),
    pytest.param(b"a" * 20, id="bytes"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("bad_id", INVALID_IDS)
def test_validate_resource_id_rejects(bad_id):
    with pytest.raises(InvalidResourceIdError) as info:
        validate_resource_id(bad_id)
    assert info.value.status == 400
    assert isinstance(info.value, StorageError)


# A fresh new_id() is checked below, not here: a parameter drawn at collection would give each
# pytest-xdist worker a different test id.
@pytest.mark.parametrize("good_id", ["a" * 16, "Z" * 64, "abc-DEF_0123456789"])
def test_validate_resource_id_accepts(good_id):
    assert validate_resource_id(good_id) == good_id


def test_validate_resource_id_accepts_what_new_id_draws():
    for _ in range(100):
        identifier = new_id()
        assert validate_resource_id(identifier) == identifier


@pytest.mark.parametrize("method", ["create", "open", "delete", "exists"])
@pytest.mark.parametrize("bad_id", INVALID_IDS)
def test_invalid_ids_rejected_before_touching_storage(storage, monkeypatch, tmp_path, method, bad_id):
    def tripwire(*args, **kwargs):
        raise AssertionError("touched the filesystem with an invalid id")

    with monkeypatch.context() as patch:
        for name in ("open", "stat", "lstat", "unlink", "mkdir", "makedirs", "fsync"):
            patch.setattr(os, name, tripwire)
        patch.setattr(os.path, "isdir", tripwire)
        with pytest.raises(InvalidResourceIdError):
            getattr(storage, method)(bad_id)
    assert list(tmp_path.iterdir()) == []


# -- storage keys: a resource id and its generation -----------------------------------------------

INVALID_KEYS = [
    pytest.param("a" * 16 + ".", id="empty-generation"),
    pytest.param("a" * 16 + "..x", id="two-dots"),
    pytest.param("a" * 16 + ".x.y", id="two-generations"),
    pytest.param("a" * 16 + "./x", id="slash-generation"),
    pytest.param("a" * 16 + "/.x", id="slash-before-dot"),
    pytest.param("." + "a" * 16, id="leading-dot"),
    pytest.param("a" * 16 + "." + "x" * 33, id="generation-too-long"),
    pytest.param("a" * 15 + ".xyz", id="id-too-short"),
    pytest.param("a" * 16 + ".x\n", id="newline-generation"),
]


@pytest.mark.parametrize("bad_key", INVALID_KEYS)
def test_validate_storage_key_rejects(bad_key):
    with pytest.raises(InvalidResourceIdError):
        validate_storage_key(bad_key)


@pytest.mark.parametrize("bad_id", INVALID_IDS)
def test_every_invalid_id_is_an_invalid_key(bad_id):
    with pytest.raises(InvalidResourceIdError):
        validate_storage_key(bad_id)


def test_a_generation_key_is_a_valid_key_but_never_a_valid_id():
    key = generation_key("a" * 16, "Gen_-1")
    assert key == "a" * 16 + ".Gen_-1" and validate_storage_key(key) == key
    assert validate_storage_key("a" * 16) == "a" * 16  # a bare id is a key (rows from before)
    with pytest.raises(InvalidResourceIdError):
        validate_resource_id(key)  # a client can never name another resource's generation
    with pytest.raises(InvalidResourceIdError):
        generation_key("a" * 16, "x/y")


@pytest.mark.parametrize("method", ["create", "open", "delete", "exists"])
@pytest.mark.parametrize("bad_key", INVALID_KEYS)
def test_invalid_keys_rejected_before_touching_storage(storage, monkeypatch, tmp_path, method, bad_key):
    def tripwire(*args, **kwargs):
        raise AssertionError("touched the filesystem with an invalid key")

    with monkeypatch.context() as patch:
        for name in ("open", "stat", "lstat", "unlink", "mkdir", "makedirs", "fsync"):
            patch.setattr(os, name, tripwire)
        patch.setattr(os.path, "isdir", tripwire)
        with pytest.raises(InvalidResourceIdError):
            getattr(storage, method)(bad_key)
    assert list(tmp_path.iterdir()) == []


def test_generations_of_one_id_are_separate_objects(storage):
    rid = new_id()
    old, new = generation_key(rid, "one"), generation_key(rid, "two")
    storage.create(old)
    storage.create(new)
    with storage.open(old) as first, storage.open(new) as second:
        first.write_at(0, b"old bytes")
        second.write_at(0, b"NEW")
        storage.delete(old)
        first.write_at(0, b"late")  # a handle on a deleted generation writes only there
        assert second.read_at(0, 100) == b"NEW"
    assert not storage.exists(old) and storage.exists(new) and not storage.exists(rid)


def test_valid_boundary_ids_work(storage):
    for rid in ("a" * 16, "-" * 64, "_a-B" * 4):
        storage.create(rid)
        with storage.open(rid) as obj:
            obj.write_at(0, rid.encode())
            assert obj.read_at(0, 64) == rid.encode()
        storage.delete(rid)


# -- writing and reading -------------------------------------------------------------------------


def test_write_read_roundtrip(storage, resource_id):
    with storage.open(resource_id) as obj:
        assert obj.write_at(0, b"hello world") == 11
        assert obj.read_at(0, 11) == b"hello world"
        assert obj.read_at(6, 5) == b"world"
        buffer = bytearray(5)
        assert obj.readinto_at(6, buffer) == 5
        assert buffer == b"world"
        view = memoryview(bytearray(20))[4:9]
        assert obj.readinto_at(0, view) == 5
        assert bytes(view) == b"hello"


def test_reads_are_short_only_at_the_end(storage, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"0123456789")
        assert obj.read_at(7, 100) == b"789"
        assert obj.read_at(10, 5) == b""
        assert obj.read_at(50, 5) == b""
        assert obj.read_at(3, 0) == b""
        buffer = bytearray(8)
        assert obj.readinto_at(6, buffer) == 4
        assert buffer[:4] == b"6789"


def test_sparse_write_far_past_the_end(storage, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"head")
        assert obj.write_at(GIB, b"tail") == 4
        assert obj.read_at(GIB - 4, 8) == b"\0\0\0\0tail"
        assert obj.read_at(4, 16) == bytes(16)
        assert obj.read_at(GIB + 2, 10) == b"il"


def test_overwrite(storage, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"aaaaaaaaaa")
        obj.write_at(3, b"BBB")
        obj.write_at(8, b"CCCC")
        assert obj.read_at(0, 20) == b"aaaBBBaaCCCC"


def test_write_accepts_memoryviews_and_typed_buffers(storage, resource_id):
    with storage.open(resource_id) as obj:
        source = memoryview(b"..payload..")
        assert obj.write_at(0, source[2:9]) == 7
        assert obj.read_at(0, 7) == b"payload"
        typed = array.array("H", [1, 2])
        assert obj.write_at(7, typed) == typed.itemsize * 2  # type: ignore[arg-type]
        assert obj.read_at(7, 4) == typed.tobytes()


def test_empty_write_changes_nothing(storage, resource_id):
    with storage.open(resource_id) as obj:
        assert obj.write_at(100, b"") == 0
        assert obj.read_at(0, 10) == b""


def test_negative_offsets_raise(storage, resource_id):
    with storage.open(resource_id) as obj:
        with pytest.raises(ValueError):
            obj.write_at(-1, b"x")
        with pytest.raises(ValueError):
            obj.read_at(-1, 1)
        with pytest.raises(ValueError):
            obj.read_at(0, -1)
        with pytest.raises(ValueError):
            obj.readinto_at(-1, bytearray(1))


def test_writes_are_visible_to_other_handles(storage, resource_id):
    with storage.open(resource_id) as writer, storage.open(resource_id) as reader:
        writer.write_at(5, b"shared")
        assert reader.read_at(5, 6) == b"shared"


def test_sync_keeps_content(storage, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"durable")
        obj.sync()
        obj.sync()  # again, with nothing new
    with storage.open(resource_id) as obj:
        assert obj.read_at(0, 7) == b"durable"


def test_closed_handle_refuses_io(storage, resource_id):
    with storage.open(resource_id) as obj:
        pass
    obj.close()  # idempotent
    for call in (
        lambda: obj.write_at(0, b"x"),
        lambda: obj.read_at(0, 1),
        lambda: obj.readinto_at(0, bytearray(1)),
        obj.sync,
        obj.fileno,
    ):
        with pytest.raises(ValueError):
            call()


def test_fileno(storage, resource_id):
    with storage.open(resource_id) as obj:
        fd = obj.fileno()
        if isinstance(storage, LocalSparseStorage):
            assert isinstance(fd, int)
            os.fstat(fd)
        else:
            assert fd is None


writes = st.lists(
    st.tuples(st.integers(0, 4096), st.binary(min_size=0, max_size=300)), max_size=15
)
reads = st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 600)), max_size=10)


@settings(
    max_examples=60,
    deadline=None,  # fsync latency varies with the disk
    # One backend serves every example; each example uses a fresh resource id.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(writes=writes, reads=reads)
def test_random_writes_match_a_model(storage, writes, reads):
    rid = new_id()
    storage.create(rid)
    model = bytearray()
    try:
        with storage.open(rid) as obj:
            for offset, data in writes:
                assert obj.write_at(offset, data) == len(data)
                if data:
                    if len(model) < offset:
                        model.extend(bytes(offset - len(model)))
                    model[offset : offset + len(data)] = data
            obj.sync()
            assert obj.read_at(0, len(model) + 10) == bytes(model)
            for offset, size in reads:
                expected = bytes(model[offset : offset + size])
                assert obj.read_at(offset, size) == expected
                buffer = bytearray(size)
                assert obj.readinto_at(offset, buffer) == len(expected)
                assert buffer[: len(expected)] == expected
    finally:
        storage.delete(rid)


# -- the memory fake's extras --------------------------------------------------------------------


def test_memory_crash_loses_only_unsynced_writes():
    storage = MemoryStorage()
    rid = new_id()
    storage.create(rid)
    with storage.open(rid) as obj:
        obj.write_at(0, b"synced")
        obj.sync()
        obj.write_at(0, b"XX")
        obj.write_at(70_000, b"lost")  # a page that was never synced
    assert storage.sync_count == 1
    storage.simulate_crash()
    assert storage.exists(rid)  # create is durable by itself
    with storage.open(rid) as obj:
        assert obj.read_at(0, 100_000) == b"synced"


def test_memory_check_can_be_made_to_fail():
    storage = MemoryStorage()
    storage.healthy = False
    with pytest.raises(StorageError):
        storage.check()


def test_memory_writes_across_page_boundaries():
    storage = MemoryStorage()
    rid = new_id()
    storage.create(rid)
    data = bytes(range(256)) * 600  # 153600 bytes: spans three 64 KiB pages
    with storage.open(rid) as obj:
        obj.write_at(65_000, data)
        assert obj.read_at(65_000, len(data)) == data
        assert obj.read_at(0, 65_000) == bytes(65_000)


# -- load_backend --------------------------------------------------------------------------------


def test_load_backend_local(tmp_path):
    backend = load_backend("local", root=tmp_path, fsync=False)
    assert isinstance(backend, LocalSparseStorage)
    assert backend.root == tmp_path
    assert backend.fsync is False
    assert load_backend("local", root=str(tmp_path)).fsync is True


def test_load_backend_local_needs_root():
    with pytest.raises(ValueError):
        load_backend("local")


def test_load_backend_memory_ignores_options(tmp_path):
    assert isinstance(load_backend("memory", root=tmp_path, fsync=True), MemoryStorage)


@pytest.mark.parametrize(
    "path",
    [
        "byterange_server.storage.memory:MemoryStorage",
        "byterange_server.storage.memory.MemoryStorage",
    ],
)
def test_load_backend_dotted_path(path):
    assert isinstance(load_backend(path), MemoryStorage)


def test_load_backend_passes_options_to_dotted_class(tmp_path):
    backend = load_backend("byterange_server.storage.local:LocalSparseStorage", root=tmp_path)
    assert isinstance(backend, LocalSparseStorage)
    assert backend.root == tmp_path


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param("nonsense", ValueError, id="unknown-name"),
        pytest.param("byterange_server.storage.memory:Nope", ValueError, id="missing-attribute"),
        pytest.param("byterange_server.no_such_module:Thing", ImportError, id="missing-module"),
        pytest.param("collections:OrderedDict", TypeError, id="not-a-backend"),
    ],
)
def test_load_backend_errors(path, error):
    with pytest.raises(error):
        load_backend(path)


def test_storage_all_is_pinned():
    assert sorted(storage_pkg.__all__) == sorted(
        [
            "InvalidResourceIdError",
            "LocalSparseStorage",
            "MemoryStorage",
            "RESOURCE_ID_PATTERN",
            "STORAGE_KEY_PATTERN",
            "StorageBackend",
            "StorageError",
            "StorageObjectExistsError",
            "StorageObjectMissingError",
            "StoredObject",
            "generation_key",
            "load_backend",
            "validate_resource_id",
            "validate_storage_key",
        ]
    )
    for name in storage_pkg.__all__:
        assert hasattr(storage_pkg, name)
