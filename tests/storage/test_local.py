"""What is specific to :class:`LocalSparseStorage`: layout, sparseness, fsync calls, errors."""

from __future__ import annotations

import errno
import gc
import os
import secrets
import stat
import threading

import pytest

from byterange_server.errors import StorageError
from byterange_server.storage import LocalSparseStorage
from byterange_server.storage import StorageObjectMissingError

GIB = 1 << 30


def new_id() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "objects"


@pytest.fixture
def storage(root):
    return LocalSparseStorage(root)


@pytest.fixture
def resource_id(storage):
    rid = new_id()
    storage.create(rid)
    return rid


def assert_no_path(error: StorageError, *paths: object) -> None:
    rendered = " ".join([str(error), error.detail, repr(error), repr(error.extra)])
    for path in paths:
        assert str(path) not in rendered
    assert "/" not in error.detail


def fd_path(fd: int) -> str:
    # Which file or directory a descriptor is on (Linux), so tests can name what was synced.
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def sync_calls(monkeypatch):
    """Record (name, path) for every fsync/fdatasync, and still do them."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name descriptors")
    calls: list[tuple[str, str]] = []
    real_fsync = os.fsync
    real_fdatasync = os.fdatasync

    def fsync(fd):
        calls.append(("fsync", fd_path(fd)))
        real_fsync(fd)

    def fdatasync(fd):
        calls.append(("fdatasync", fd_path(fd)))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return calls


# -- layout --------------------------------------------------------------------------------------


def test_file_lands_in_its_shard_directory(storage, root, resource_id):
    path = root / resource_id[:2] / resource_id
    info = path.stat()
    assert stat.S_ISREG(info.st_mode)
    assert info.st_size == 0
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert sorted(p.name for p in root.iterdir()) == [resource_id[:2]]
    storage.delete(resource_id)
    assert not path.exists()
    assert path.parent.is_dir()  # shards stay: removing one would race with a create


def test_nothing_is_touched_on_construction(tmp_path):
    LocalSparseStorage(tmp_path / "later")
    assert not (tmp_path / "later").exists()


def test_write_at_one_gib_is_sparse(storage, root, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(GIB, b"x" * 4096)
        obj.sync()
    info = (root / resource_id[:2] / resource_id).stat()
    assert info.st_size == GIB + 4096
    assert info.st_blocks * 512 < (1 << 20)


def test_fileno_is_the_real_descriptor(storage, root, resource_id):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"abc")
        info = os.fstat(obj.fileno())
    assert info.st_ino == (root / resource_id[:2] / resource_id).stat().st_ino


# -- durability ----------------------------------------------------------------------------------


def test_sync_calls_fdatasync_on_the_descriptor(storage, root, resource_id, sync_calls):
    with storage.open(resource_id) as obj:
        obj.write_at(0, b"data")
        assert sync_calls == []  # writing alone does not sync
        obj.sync()
    assert sync_calls == [("fdatasync", str(root / resource_id[:2] / resource_id))]


def test_create_fsyncs_file_and_directory_entries(tmp_path, root, sync_calls):
    storage = LocalSparseStorage(root)
    first = "aa" + new_id()
    storage.create(first)
    shard = root / "aa"
    assert sync_calls == [
        ("fsync", str(tmp_path.parent)),  # tmp_path existed: synced once per process anyway
        ("fsync", str(tmp_path)),  # root is new: its entry in tmp_path
        ("fsync", str(root)),  # the shard is new: its entry in root
        ("fsync", str(shard / first)),  # the empty file itself
        ("fsync", str(shard)),  # the file's entry in the shard
    ]
    sync_calls.clear()
    second = "aa" + new_id()
    storage.create(second)  # same shard: nothing new above it
    assert sync_calls == [("fsync", str(shard / second)), ("fsync", str(shard))]


def test_create_syncs_a_shard_another_process_made(root, sync_calls):
    # The other process may not have fsynced root yet: our file must not outlive its shard.
    (root / "bb").mkdir(parents=True)
    storage = LocalSparseStorage(root)
    rid = "bb" + new_id()
    storage.create(rid)
    assert ("fsync", str(root)) in sync_calls
    assert sync_calls[-2:] == [("fsync", str(root / "bb" / rid)), ("fsync", str(root / "bb"))]


def test_delete_fsyncs_the_directory(storage, root, resource_id, sync_calls):
    storage.delete(resource_id)
    assert sync_calls == [("fsync", str(root / resource_id[:2]))]
    storage.delete(resource_id)  # already gone: nothing to make durable
    assert len(sync_calls) == 1


def test_fsync_false_never_syncs(root, sync_calls):
    storage = LocalSparseStorage(root, fsync=False)
    rid = new_id()
    storage.create(rid)
    with storage.open(rid) as obj:
        obj.write_at(0, b"data")
        obj.sync()
    storage.delete(rid)
    storage.check()
    assert sync_calls == []


def test_sync_failure_is_a_storage_error(storage, resource_id, monkeypatch):
    def fail(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fail)
    with storage.open(resource_id) as obj:
        with pytest.raises(StorageError) as info:
            obj.sync()
    assert info.value.status == 500
    assert info.value.extra == {"errno": "EIO"}


# -- concurrency and partial I/O -----------------------------------------------------------------


def test_threads_writing_disjoint_ranges_through_two_handles(storage, resource_id):
    chunk = 4096
    rounds = 64
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(parity: int, fill: bytes) -> None:
        try:
            with storage.open(resource_id) as obj:
                barrier.wait()
                # Interleaved chunks: even ones from one thread, odd ones from the other.
                for index in range(parity, 2 * rounds, 2):
                    obj.write_at(index * chunk, fill * chunk)
                obj.sync()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(0, b"a")),
        threading.Thread(target=writer, args=(1, b"b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with storage.open(resource_id) as obj:
        assert obj.read_at(0, 2 * rounds * chunk + 1) == (b"a" * chunk + b"b" * chunk) * rounds


def test_short_writes_are_retried(storage, resource_id, monkeypatch):
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:3], offset))
    with storage.open(resource_id) as obj:
        assert obj.write_at(10, b"0123456789") == 10
    monkeypatch.undo()
    with storage.open(resource_id) as obj:
        assert obj.read_at(10, 10) == b"0123456789"


def test_write_without_progress_raises(storage, resource_id, monkeypatch):
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
    with storage.open(resource_id) as obj:
        with pytest.raises(StorageError):
            obj.write_at(0, b"x")


def test_short_reads_are_retried(storage, resource_id, monkeypatch):
    with storage.open(resource_id) as obj:
        obj.write_at(0, bytes(range(100)))
    real_pread = os.pread
    real_preadv = os.preadv
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: real_pread(fd, min(size, 7), offset))
    monkeypatch.setattr(
        os, "preadv", lambda fd, buffers, offset: real_preadv(fd, [buffers[0][:7]], offset)
    )
    with storage.open(resource_id) as obj:
        assert obj.read_at(3, 90) == bytes(range(3, 93))
        buffer = bytearray(200)
        assert obj.readinto_at(0, buffer) == 100
        assert buffer[:100] == bytes(range(100))


def test_unclosed_handle_warns_and_closes(storage, resource_id):
    obj = storage.open(resource_id)
    fd = obj.fileno()
    with pytest.warns(ResourceWarning):
        del obj
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


# -- errors --------------------------------------------------------------------------------------


def test_oserror_becomes_storage_error_without_path(storage, root, resource_id, monkeypatch):
    path = root / resource_id[:2] / resource_id

    def fail(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(os, "pwrite", fail)
    with storage.open(resource_id) as obj:
        with pytest.raises(StorageError) as info:
            obj.write_at(0, b"x")
    error = info.value
    assert isinstance(error.__cause__, OSError)
    assert error.status == 503  # disk full may clear up: retry later
    assert error.headers == {"Retry-After": "30"}
    assert error.extra == {"errno": "ENOSPC"}
    assert "No space left on device" in error.detail
    assert_no_path(error, path, root)


def test_real_oserror_on_open_has_no_path(storage, root):
    rid = new_id()
    (root / rid[:2] / rid).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(StorageError) as info:
        storage.open(rid)
    assert not isinstance(info.value, StorageObjectMissingError)
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert info.value.status == 500
    assert_no_path(info.value, root)


def test_real_oserror_on_create_has_no_path(storage, root):
    rid = new_id()
    root.mkdir()
    (root / rid[:2]).write_bytes(b"")  # a file where the shard directory should be
    with pytest.raises(StorageError) as info:
        storage.create(rid)
    assert isinstance(info.value.__cause__, OSError)
    assert_no_path(info.value, root)


def test_check_creates_root_and_leaves_nothing_behind(storage, root):
    storage.check()
    assert root.is_dir()
    assert list(root.iterdir()) == []


def test_check_fails_when_root_is_a_file(tmp_path):
    root = tmp_path / "objects"
    root.write_bytes(b"")
    with pytest.raises(StorageError) as info:
        LocalSparseStorage(root).check()
    assert_no_path(info.value, root)


def test_check_fails_when_root_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError):
        LocalSparseStorage(blocker / "objects").check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_check_fails_on_read_only_root(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(StorageError) as info:
            LocalSparseStorage(root).check()
        assert info.value.extra == {"errno": "EACCES"}
    finally:
        root.chmod(0o700)


def test_repr_shows_configuration(tmp_path):
    assert repr(LocalSparseStorage(tmp_path, fsync=False)).endswith("fsync=False)")
