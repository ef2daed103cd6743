"""The servers a benchmark talks to: byterange-server under gunicorn, and the process table.

:func:`gunicorn_server` starts ``python -m gunicorn --config python:byterange_server.runtime.gunicorn_conf``
on loopback with the production settings (the worker and thread counts of gunicorn_conf unless
given), ``BYTERANGE_AUTH=off``, a fresh data directory and either a fresh SQLite database or the
PostgreSQL database it is given. :func:`postgres_database` starts a throwaway cluster with
``tests/support/pgcluster.py`` (the tests' own, so both start PostgreSQL the same way).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from byterange_server.db import migrate

REPO_ROOT = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_APP = "byterange_server.app:create_app()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(item) for item in handle.read().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server's master, workers and their helpers), whichever
    of their threads started them."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(item) for item in task.read_text().split())
    return out


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("OPTIONS", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class BenchServer:
    port: int
    pid: int
    database_url: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def peak_rss_mib(self) -> dict[str, float]:
        """Peak RSS (VmHWM) of the master and of each worker, in MiB."""
        out = {"master": peak_rss_kib(self.pid) / 1024}
        for index, pid in enumerate(self.worker_pids()):
            out[f"worker {index}"] = peak_rss_kib(pid) / 1024
        return out


def _gunicorn_conf(tree: Path) -> str:
    """The gunicorn config module of a checkout: runtime/ since the restructure, the package's
    top level before it (so --against can measure a revision from before)."""
    if (tree / "byterange_server" / "runtime" / "gunicorn_conf.py").exists():
        return "byterange_server.runtime.gunicorn_conf"
    return "byterange_server.gunicorn_conf"


@contextlib.contextmanager
def gunicorn_server(
    *, workers: int | None = None, threads: int | None = None, database_url: str = "",
    environ: dict[str, str] | None = None, app: str = SERVER_APP, source: Path | None = None,
) -> Iterator[BenchServer]:
    """Start gunicorn on a fresh data directory (and SQLite database unless one is given);
    ``environ`` adds settings, e.g. ``{"BYTERANGE_FSYNC": "false"}``; ``app`` is the WSGI app
    (default ours; :mod:`bench.bare` for the bare-Flask floor). ``source``: a checkout whose
    package runs instead of this one's (its schema is still migrated by this one), so two
    revisions are measured in one run."""
    data_dir = Path(tempfile.mkdtemp(prefix="byterange-bench-"))
    database_url = database_url or f"sqlite:///{data_dir / 'byterange.sqlite3'}"
    migrate.upgrade(database_url)
    port = free_port()
    env = dict(os.environ, BYTERANGE_DATA_DIR=str(data_dir), BYTERANGE_DATABASE_URL=database_url,
               BYTERANGE_AUTH="off", BYTERANGE_ACCESS_LOG="", BYTERANGE_LOG_LEVEL="warning",
               **(environ or {}))
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "gunicorn", "--config", f"python:{_gunicorn_conf(source or REPO_ROOT)}",
            "--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    # The access log and gunicorn's own go to a file, as under a process manager, not the terminal.
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([*argv, app], env=env, start_new_session=True, cwd=source or REPO_ROOT,
                              stdout=log, stderr=log)
    try:
        try:
            wait_http(port)
        except OSError:
            sys.stderr.write((data_dir / "server.log").read_text(errors="replace")[-4000:])
            raise
        yield BenchServer(port, server.pid, database_url, data_dir)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database in a throwaway PostgreSQL cluster (started as tests/support/pgcluster.py does)."""
    with postgres_databases(1) as (url,):
        yield url


@contextlib.contextmanager
def postgres_databases(count: int) -> Iterator[list[str]]:
    """``count`` databases in one throwaway PostgreSQL cluster."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.pgcluster import create_database
    from tests.support.pgcluster import postgres_cluster

    with postgres_cluster() as base_url:
        yield [create_database(base_url, f"byterange_bench{index or ''}") for index in range(count)]


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """The tree of ``revision`` of this repository in a temporary directory (``git archive``)."""
    target = Path(tempfile.mkdtemp(prefix="byterange-bench-rev-"))
    try:
        archive = subprocess.run(["git", "archive", revision], cwd=REPO_ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


@contextlib.contextmanager
def py_spy(pids: list[int], prefix: Path) -> Iterator[list[Path]]:
    """Sample each pid with ``py-spy record`` (collapsed stacks) while the block runs.

    ``--idle`` keeps the samples of threads blocked in the kernel (``fdatasync``, socket reads),
    so a profile shows where request time goes, not only CPU. Needs ptrace rights over the
    workers (root, or kernel.yama.ptrace_scope = 0).
    """
    executable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(executable).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    paths = [prefix.with_name(f"{prefix.name}-worker{index}.folded") for index in range(len(pids))]
    log = open(prefix.with_name(f"{prefix.name}.log"), "wb")  # noqa: SIM115 - closed below
    spies = [
        subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--idle", "--nonblocking", "--output", str(path)],
            stdout=log, stderr=log,
        )
        for pid, path in zip(pids, paths, strict=True)
    ]
    time.sleep(0.5)  # py-spy attaches
    try:
        yield paths
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
        log.close()
