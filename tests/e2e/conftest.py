"""The end-to-end harness: a real gunicorn serving byterange-server on 127.0.0.1.

``gunicorn_server`` starts ``python -m gunicorn --config python:byterange_server.runtime.gunicorn_conf``
with 4 gthread workers × 4 threads on a free port, against the fresh migrated database of
``database_url`` (so every e2e test runs on SQLite and on PostgreSQL) and a data directory under
``tmp_path``. Leases are 2 s so that a killed writer's range frees itself quickly.

The fixture yields a :class:`GunicornServer`:

- ``.url`` (``http://127.0.0.1:PORT/files``), ``.pid`` (the master), ``.worker_pids()``;
- ``.kill_workers_hard()`` — ``kill -9`` of master and workers (the whole process group);
- ``.send_signal(sig, pid=None)`` — a signal to the master (or one worker); ``.wait_exit()``
  waits for the master to end by itself (after SIGTERM, SIGQUIT, ...);
- ``.restart()`` — start again on the same data directory and database (same port);
- HTTP helpers: ``allocate``, ``head`` (state with Committed-Ranges parsed), ``patch_segment``,
  ``put_segment``, ``get``/``get_range``, ``sha256_of``.

When a test fails, the tail of gunicorn's log is attached to the report (section
"gunicorn log"); the log files themselves stay under the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from . import upload_worker
from .upload_worker import Reply

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = Path(__file__).resolve().with_name("upload_worker.py")
MiB = 1024 * 1024

WORKERS = 4
THREADS = 4
LEASE_SECONDS = 2
STARTUP_TIMEOUT = 30.0
LOG_TAIL_LINES = 60


# Committed-Ranges parsing --------------------------------------------------------------------


_RANGE_RE = re.compile(r"\s*(\d+)-(\d+)\s*")


def parse_committed_ranges(value: str | None) -> list[tuple[int, int]] | None:
    """``bytes=0-99,200-299`` → ``[(0, 99), (200, 299)]`` (inclusive); ``none`` → ``[]``.

    None when the header is absent (the list is then only in the linked document).
    """
    if value is None:
        return None
    value = value.strip()
    if value == "none":
        return []
    unit, sep, spec = value.partition("=")
    if unit.strip() != "bytes" or not sep:
        raise AssertionError(f"malformed Committed-Ranges: {value!r}")
    ranges = []
    for item in spec.split(","):
        match = _RANGE_RE.fullmatch(item)
        if not match:
            raise AssertionError(f"malformed Committed-Ranges item {item!r} in {value!r}")
        first, last = int(match.group(1)), int(match.group(2))
        assert first <= last, value
        ranges.append((first, last))
    return ranges


def missing_ranges(committed: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Half-open gaps of ``[0, length)`` not covered by inclusive ``committed`` ranges."""
    gaps = []
    cursor = 0
    for first, last in sorted(committed):
        if first > cursor:
            gaps.append((cursor, first))
        cursor = max(cursor, last + 1)
    if cursor < length:
        gaps.append((cursor, length))
    return gaps


def split_range(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(offset, min(offset + size, stop)) for offset in range(start, stop, size)]


@dataclasses.dataclass
class UploadState:
    """What HEAD said, parsed."""

    status: int
    offset: int | None
    length: int | None
    complete: bool | None
    #: Inclusive (first, last) pairs, from the header or the linked document.
    ranges: list[tuple[int, int]]
    headers: dict[str, str]
    seconds: float

    def missing(self) -> list[tuple[int, int]]:
        assert self.length is not None, self
        return missing_ranges(self.ranges, self.length)

    def committed_bytes(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def __str__(self) -> str:
        shown = {
            name: value
            for name, value in self.headers.items()
            if name.lower().startswith(("upload-", "committed-", "content-length", "repr-", "etag"))
        }
        return f"HEAD {self.status} in {self.seconds:.3f}s {shown}"


# The server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _control_socket_flag() -> list[str]:
    """gunicorn ≥ 25.1 opens a control socket in $HOME; parallel servers must not share it."""
    try:
        import gunicorn.config

        if hasattr(gunicorn.config, "ControlSocketDisable"):
            return ["--no-control-socket"]
    except ImportError:  # pragma: no cover
        pass
    return []


class GunicornServer:
    def __init__(
        self,
        database_url: str,
        root: Path,
        *,
        workers: int = WORKERS,
        threads: int = THREADS,
        lease_seconds: float = LEASE_SECONDS,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "gunicorn.log"
        self.access_log = root / "access.log"
        self.workers = workers
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_file: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/files"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not running"
        return self.process.pid

    def _env(self) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("BYTERANGE_", "GUNICORN_"))
        }
        env.update(
            {
                "BYTERANGE_DATABASE_URL": self.database_url,
                "BYTERANGE_DATA_DIR": str(self.data_dir),
                "BYTERANGE_AUTH": "off",
                "BYTERANGE_LEASE_SECONDS": str(self.lease_seconds),
                "BYTERANGE_ACCESS_LOG": str(self.access_log),
                # The workers' metric files, in the test's directory (emptied at each start):
                # not a shared one of the runner's, not a temporary one left by a kill -9.
                "PROMETHEUS_MULTIPROC_DIR": str(self.root / "metrics"),
                "BYTERANGE_LOG_LEVEL": "info",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:byterange_server.runtime.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--graceful-timeout",
            "5",
            *_control_socket_flag(),
            "byterange_server.app:create_app()",
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"\n==== start #{self.starts}: {' '.join(argv)}\n".encode())
        self._log_file.flush()
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode} during startup\n{self.log_tail()}"
                )
            try:
                response = requests.options(self.url, timeout=2)
                if response.status_code < 500:
                    response.close()
                    self._wait_workers(deadline)
                    return
                last_error = f"OPTIONS {self.url} → {response.status_code}"
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn not ready after {STARTUP_TIMEOUT}s ({last_error})\n{self.log_tail()}")

    def _wait_workers(self, deadline: float) -> None:
        """Every worker has booted, so kill/worker tests see the full set."""
        while time.monotonic() < deadline and len(self.worker_pids()) < self.workers:
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """Live children of the master, from /proc."""
        if self.process is None:
            return []
        master = self.process.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == master and stat[0] not in ("Z", "X"):
                pids.append(int(entry.name))
        return sorted(pids)

    def kill_workers_hard(self) -> list[int]:
        """``kill -9`` of master and workers (the whole process group); returns what was killed."""
        assert self.process is not None
        victims = [self.process.pid, *self.worker_pids()]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.02)
        still = [pid for pid in victims if _alive(pid)]
        assert not still, f"processes survived SIGKILL: {still}"
        self._close_log(f"==== killed with SIGKILL: {victims}")
        return victims

    def send_signal(self, sig: int, pid: int | None = None) -> None:
        """Send ``sig`` to the master, or to ``pid`` (one of its workers)."""
        assert pid is None or pid in self.worker_pids(), f"{pid} is not a worker of {self.pid}"
        os.kill(self.pid if pid is None else pid, sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the master to exit by itself; returns its exit status."""
        assert self.process is not None
        status = self.process.wait(timeout=timeout)
        self._close_log(f"==== exited by itself with status {status}")
        return status

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            victims = [self.process.pid, *self.worker_pids()]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self._close_log("==== stopped")

    def restart(self) -> None:
        """Start again on the same data directory, database and port."""
        self.stop()
        self.start()

    def _close_log(self, note: str) -> None:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.write(f"{note}\n".encode())
            self._log_file.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no gunicorn log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- HTTP helpers ------------------------------------------------------------------------

    def allocate(self, length: int | None = None, **headers: str) -> str:
        """POST /files → the absolute resource URL."""
        sent = {"Upload-Length": str(length)} if length is not None else {}
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        response = requests.post(self.url, headers=sent, timeout=30)
        assert response.status_code == 201, f"POST {self.url} → {response.status_code} {response.text}"
        location = response.headers.get("Location")
        assert location and location.startswith("http://"), f"Location not absolute: {location!r}"
        return location

    def head(self, url: str, timeout: float = 30) -> UploadState:
        started = time.monotonic()
        response = requests.head(url, timeout=timeout)
        seconds = time.monotonic() - started
        headers = dict(response.headers)
        ranges = parse_committed_ranges(response.headers.get("Committed-Ranges"))
        if ranges is None and response.status_code == 200:
            ranges = self._linked_ranges(url, response)
        length = response.headers.get("Upload-Length")
        offset = response.headers.get("Upload-Offset")
        complete = response.headers.get("Upload-Complete")
        return UploadState(
            status=response.status_code,
            offset=int(offset) if offset is not None else None,
            length=int(length) if length is not None else None,
            complete={"?1": True, "?0": False}.get(complete) if complete is not None else None,
            ranges=ranges or [],
            headers=headers,
            seconds=seconds,
        )

    def _linked_ranges(self, url: str, response: requests.Response) -> list[tuple[int, int]]:
        """The whole committed list from the ``rel="committed-ranges"`` document, all pages."""
        link = response.links.get("committed-ranges")
        assert link, f"no Committed-Ranges and no committed-ranges link: {dict(response.headers)}"
        next_url: str | None = requests.compat.urljoin(url, link["url"])
        ranges: list[tuple[int, int]] = []
        while next_url:
            page = requests.get(next_url, timeout=30)
            assert page.status_code == 200, page.text
            body = page.json()
            ranges.extend((int(first), int(last)) for first, last in body["ranges"])
            next_url = requests.compat.urljoin(url, body["next"]) if body.get("next") else None
        return ranges

    def patch_segment(self, url: str, offset: int, data: bytes, length: int | None, **kwargs: Any) -> Reply:
        """PATCH message/byterange with an explicit Content-Length (see upload_worker)."""
        return upload_worker.patch_segment(url, offset, data, length, **kwargs)

    def put_segment(self, url: str, offset: int, data: bytes, length: int | None, **kwargs: Any) -> Reply:
        """Partial PUT with a Content-Range request header."""
        return upload_worker.put_segment(url, offset, data, length, **kwargs)

    def get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(url, headers=headers or {}, timeout=60)

    def get_range(self, url: str, first: int, last: int) -> requests.Response:
        return self.get(url, {"Range": f"bytes={first}-{last}"})

    def sha256_of(self, url: str) -> tuple[requests.Response, str]:
        """Streamed GET; returns the response (body consumed) and the hex sha-256 of the body."""
        digest = hashlib.sha256()
        with requests.get(url, stream=True, timeout=120) as response:
            for chunk in response.iter_content(1024 * 1024):
                digest.update(chunk)
        return response, digest.hexdigest()

    def spawn_worker(
        self,
        url: str,
        source: Path,
        segments: list[tuple[int, int]],
        *,
        length: int | None,
        mode: str = "mix",
        rate: float | None = None,
        timeout: float = 90.0,
        index_base: int = 0,
    ) -> subprocess.Popen[str]:
        """Start tests/e2e/upload_worker.py as a separate process (stdout: a JSON summary)."""
        argv = [
            sys.executable,
            str(WORKER_SCRIPT),
            "--url",
            url,
            "--source",
            str(source),
            "--segments",
            upload_worker.format_segments(segments),
            "--mode",
            mode,
            "--timeout",
            str(timeout),
            "--index-base",
            str(index_base),
        ]
        if length is not None:
            argv += ["--length", str(length)]
        if rate is not None:
            argv += ["--rate", str(rate)]
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


# Fixtures ------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        server = getattr(item, "funcargs", {}).get("gunicorn_server")
        if isinstance(server, GunicornServer):
            report.sections.append(
                (f"gunicorn log (last {LOG_TAIL_LINES} lines of {server.log_path})", server.log_tail())
            )


@pytest.fixture
def gunicorn_server(database_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    with running(GunicornServer(database_url, tmp_path / "server")) as server:
        yield server


@contextlib.contextmanager
def running(server: GunicornServer) -> Iterator[GunicornServer]:
    """Start ``server`` (on another free port if its probe lost a race), stop it at the end."""
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:
            # Another process may have taken the free port between probe and bind.
            if attempt == 2 or "Address already in use" not in server.log_tail():
                raise
            server.port = free_port()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def source_64m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, str]:
    """64 MiB of deterministic pseudo-random bytes: (file, bytes, hex sha-256)."""
    data = random.Random(20260423).randbytes(64 * MiB)
    path = tmp_path_factory.mktemp("e2e-source") / "source-64m.bin"
    path.write_bytes(data)
    return path, data, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is required for the browser tests (apt-get install chromium; .ci/run does it)"
    )
