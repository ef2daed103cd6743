"""The client's local side: reading the source file, the resume store, sizes on the command line."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.client.errors import IntegrityError
from byterange_server.client.source import CHUNK_SIZE
from byterange_server.client.source import STREAM_BUFFERS
from byterange_server.client.source import Source
from byterange_server.client.source import StreamSource
from byterange_server.client.source import is_stream
from byterange_server.client.state import StateStore
from byterange_server.client.state import UploadKey
from byterange_server.client.state import default_state_dir
from byterange_server.units import format_size
from byterange_server.units import parse_size

# -- Source --------------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def read(source: Source, start: int, stop: int) -> bytes:
    return b"".join(bytes(chunk) for chunk in source.chunks(start, stop))


def test_positional_reads_in_bounded_chunks(data_file):
    path, data = data_file
    with Source.open(path) as source:
        assert source.size == len(data)
        assert source.identity is not None and source.identity.path == os.path.realpath(path)
        assert all(len(c) <= CHUNK_SIZE for c in source.chunks(0, source.size))
        assert read(source, 0, source.size) == data
        assert read(source, 5, CHUNK_SIZE + 17) == data[5 : CHUNK_SIZE + 17]
        assert read(source, 10, 10) == b""
        assert source.sha256() == hashlib.sha256(data).digest()


def test_threads_read_without_sharing_a_position(data_file):
    path, data = data_file
    results: dict[int, bytes] = {}
    with Source.open(path) as source:

        def work(i: int) -> None:
            start = i * 100_000
            results[i] = read(source, start, start + 2 * CHUNK_SIZE)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, got in results.items():
        assert got == data[i * 100_000 : i * 100_000 + 2 * CHUNK_SIZE]


def test_file_objects_without_a_descriptor(data_file):
    _, data = data_file
    with Source(io.BytesIO(data)) as source:
        assert source.size == len(data) and source.identity is None
        assert read(source, 7, len(data)) == data[7:]
        assert not source.changed()


def test_unseekable_input_is_refused():
    read_end, write_end = os.pipe()
    try:
        with open(read_end, "rb", buffering=0) as pipe, pytest.raises(ValueError, match="seekable"):
            Source(pipe)
    finally:
        os.close(write_end)


def test_directories_are_refused(tmp_path):
    with pytest.raises((ValueError, IsADirectoryError)):
        Source.open(tmp_path)


def test_a_file_that_shrinks_is_an_integrity_error(data_file):
    path, data = data_file
    with Source.open(path) as source:
        os.truncate(path, 1000)
        with pytest.raises(IntegrityError, match="changed during the upload"):
            read(source, 0, len(data))
        assert source.changed()


def test_a_touched_file_counts_as_changed(data_file):
    path, _ = data_file
    with Source.open(path) as source:
        assert not source.changed()
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        assert source.changed()


# -- StreamSource: input read once --------------------------------------------------------------


def pipe_with(data: bytes) -> io.BufferedReader:
    """A pipe's read end, fed with ``data`` and closed by a writer thread."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as out:
            out.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return open(read_end, "rb", buffering=0)


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 300, 1234])
def test_a_stream_comes_in_segments_and_knows_its_length_at_its_end(size):
    data = os.urandom(size)
    with pipe_with(data) as pipe, StreamSource(pipe, 100) as stream:
        assert stream.size is None
        seen = []
        for segment in stream.segments():
            assert stream.size == (size if segment.last else None)
            assert b"".join(bytes(c) for c in stream.chunks(segment.start, segment.stop)) == segment.data
            seen.append((segment.start, bytes(segment.data), segment.last))
    assert b"".join(d for _, d, _ in seen) == data
    assert [start for start, _, _ in seen] == list(range(0, len(seen) * 100, 100))
    assert [last for _, _, last in seen] == [False] * (len(seen) - 1) + [True]
    # A length on the grid ends with the full segment itself: no empty segment after it.
    assert len(seen) == max(1, -(-size // 100))
    assert stream.sha256() == hashlib.sha256(data).digest()


def test_only_the_current_window_can_be_read():
    with pipe_with(os.urandom(250)) as pipe, StreamSource(pipe, 100) as stream:
        segments = stream.segments()
        next(segments)
        second = next(segments)
        assert second.start == 100
        with pytest.raises(ValueError, match="not in the stream's window"):
            list(stream.chunks(0, 10))  # gone
        with pytest.raises(ValueError, match="not in the stream's window"):
            list(stream.chunks(150, 201))  # not read yet


class Endless(io.RawIOBase):
    """An input that never ends, counting what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), 4096)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


def test_a_stream_reads_at_most_a_few_segments_ahead():
    source = Endless()
    with StreamSource(source, 10_000) as stream:
        segments = stream.segments()
        next(segments)
        deadline = time.monotonic() + 10
        while source.read_bytes < STREAM_BUFFERS * 10_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # let the reader run on, if it were going to
        assert source.read_bytes == STREAM_BUFFERS * 10_000


def test_pipes_and_fifos_are_streams(tmp_path):
    regular = tmp_path / "f"
    regular.write_bytes(b"x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not is_stream(regular) and is_stream(fifo) and is_stream("/dev/null")


# -- the resume store ----------------------------------------------------------------------------


def key_for(path, collection="http://h/files"):
    with Source.open(path) as source:
        assert source.identity is not None
        return UploadKey(source.identity, collection)


def test_store_remembers_forgets_and_tells_files_apart(tmp_path, data_file):
    path, _ = data_file
    store = StateStore(tmp_path / "state")
    key = key_for(path)
    assert store.lookup(key) is None
    store.remember(key, "http://h/files/1")
    assert StateStore(tmp_path / "state").lookup(key) == "http://h/files/1"  # survives a new process
    assert store.lookup(key_for(path, "http://other/files")) is None  # another collection
    store.remember(key, "http://h/files/2")
    assert store.lookup(key) == "http://h/files/2"
    with open(path, "ab") as f:  # the file changed: a new key, a new resource
        f.write(b"more")
    assert store.lookup(key_for(path)) is None
    store.forget(key)
    assert store.lookup(key) is None


def test_store_is_safe_from_many_threads(tmp_path, data_file):
    path, _ = data_file
    store = StateStore(tmp_path / "state")
    key = key_for(path)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                store.remember(key, f"http://h/files/{i}")
                assert store.lookup(key) is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_default_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BYTERANGE_STATE_DIR", str(tmp_path / "explicit"))
    assert default_state_dir() == tmp_path / "explicit"
    monkeypatch.delenv("BYTERANGE_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "byterange"


# -- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("1000000", 1_000_000),
        ("8MiB", 8 * 1024**2),
        ("8mib", 8 * 1024**2),
        ("8M", 8_000_000),
        ("8MB", 8_000_000),
        ("512KiB", 512 * 1024),
        ("1536MiB", 3 * 1024**3 // 2),
        ("2 TB", 2 * 10**12),
        ("64k", 64_000),
        ("10B", 10),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "8XB", "-1", "1e6", "0.5B", "1.5GiB", "8 M B", "٨MiB"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


@example(1024 * 1024 - 1)
@given(st.integers(0, 2**60))
def test_format_size_reads_back_close(n):
    shown = format_size(n)
    value, unit = shown.split(" ")
    if unit == "B":
        assert int(value) == n
    else:
        scale = 1024 ** (["KiB", "MiB", "GiB", "TiB", "PiB"].index(unit) + 1)
        assert abs(float(value) * scale - n) <= 0.05 * scale
        assert 1 <= float(value) < 1024 or unit == "PiB"
