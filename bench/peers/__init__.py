"""The peer tus servers of ``python -m bench --peers``: installed on demand, pinned, started on loopback.

- **@tus/server** with **@tus/file-store** (Node): pinned exactly in ``package.json`` and
  ``package-lock.json`` here, installed with ``npm ci`` into ``CACHE/node``;
  ``tus_node_server.mjs`` here is the server (its README's standalone server), one process.
- **tuspyserver** (FastAPI) on **uvicorn** with **uvloop** and **httptools**: every package pinned in
  ``requirements.txt`` here, installed with pip into the venv ``CACHE/tuspyserver``; ``tuspy_app.py``
  here is the app, served by ``uvicorn --workers N``.

``CACHE`` is ``--peers-dir``, else ``$BYTERANGE_BENCH_PEERS_DIR``, else
``${XDG_CACHE_HOME:-~/.cache}/byterange-bench/peers``: outside the repository, so node_modules and
the venv are never committed. An install is redone when its pin files change (the SHA-256 of
them is stamped next to it) and is serialised by a lock file, so two runs may share a cache.

Neither peer flushes uploaded bytes to disk: @tus/file-store writes with a plain write stream,
tuspyserver appends with ``write`` + ``flush`` (it ``fsync``\\s only its small ``.info`` JSON,
after each PATCH). That is what they do, so that is how they are measured.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..server import free_port
from ..server import process_tree

HERE = Path(__file__).resolve().parent
NODE_PINS = ("package.json", "package-lock.json")
PYTHON_PINS = ("requirements.txt",)
#: @tus/server 2.x declares ``engines.node >= 20.19.0`` (and uses what that release brought).
NODE_MIN = (20, 19)
INSTALL_TIMEOUT = 600


class PeerError(RuntimeError):
    """A peer could not be installed or started; the message says what to do."""


def cache_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get("BYTERANGE_BENCH_PEERS_DIR"):
        return Path(os.environ["BYTERANGE_BENCH_PEERS_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "byterange-bench" / "peers"


def _stamp(names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], cwd: Path, what: str, hint: str) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{what} did not finish in {INSTALL_TIMEOUT} s ({hint})") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise PeerError(f"{what} failed with exit status {done.returncode} ({hint}):\n{output}")


def node_version() -> tuple[int, ...]:
    node = shutil.which("node")
    if node is None:
        raise PeerError("node is not installed: the @tus/server peer needs Node >= 20.19 and npm")
    text = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in text.strip().lstrip("v").split("."))


def install_node(cache: Path) -> Path:
    """``CACHE/node`` with ``npm ci`` done for the pinned @tus/server and @tus/file-store."""
    if node_version()[:2] < NODE_MIN:
        found = ".".join(map(str, node_version()))
        raise PeerError(f"@tus/server 2.x needs Node >= {NODE_MIN[0]}.{NODE_MIN[1]}; found {found}")
    npm = shutil.which("npm")
    if npm is None:
        raise PeerError("npm is not installed: the @tus/server peer is installed with npm ci")
    target = cache / "node"
    stamp = _stamp(NODE_PINS)
    with _locked(cache):
        if (target / ".stamp").exists() and (target / ".stamp").read_text() == stamp:
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in NODE_PINS:
            shutil.copyfile(HERE / name, target / name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--omit=optional"], target,
             "npm ci of @tus/server and @tus/file-store", "is the npm registry reachable?")
        (target / ".stamp").write_text(stamp)
    return target


def install_tuspyserver(cache: Path) -> Path:
    """The venv ``CACHE/tuspyserver`` with the pinned requirements; returns its python."""
    target = cache / "tuspyserver"
    python = target / "bin" / "python"
    stamp = _stamp(PYTHON_PINS)
    with _locked(cache):
        if (target / ".stamp").exists() and (target / ".stamp").read_text() == stamp:
            return python
        shutil.rmtree(target, ignore_errors=True)
        # The interpreter this runs on (a venv's python makes a venv of its base interpreter).
        _run([sys.executable, "-m", "venv", str(target)], cache, "python -m venv",
             "is python3-venv installed?")
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-r", str(HERE / "requirements.txt")], cache,
             "pip install of tuspyserver, fastapi, uvicorn, uvloop, httptools", "is PyPI reachable?")
        (target / ".stamp").write_text(stamp)
    return python


def node_versions(node_dir: Path) -> dict[str, str]:
    """The versions ``npm ci`` installed (not only those asked for)."""
    out = {}
    for name in ("@tus/server", "@tus/file-store", "@tus/utils"):
        package = json.loads((node_dir / "node_modules" / name / "package.json").read_text())
        out[name] = package["version"]
    return out


def python_versions(python: Path) -> dict[str, str]:
    """The versions installed in the tuspyserver venv, and its Python's."""
    names = ["tuspyserver", "fastapi", "starlette", "uvicorn", "uvloop", "httptools"]
    script = ("import importlib.metadata as m, json, platform, sys; "
              "print(json.dumps({**{n: m.version(n) for n in sys.argv[1:]}, "
              "'python (tuspyserver)': platform.python_version()}))")
    done = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@dataclass
class PeerServer:
    """A running peer: its tus collection URL and the root of its process tree."""

    name: str
    port: int
    pid: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def pids(self) -> list[int]:
        return process_tree(self.pid)


def _wait_ready(process: subprocess.Popen, port: int, log: Path, name: str, timeout: float = 60.0) -> None:
    """Until a tus ``OPTIONS /files`` is answered; fails with the server's log if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise PeerError(f"{name} exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("OPTIONS", "/files", headers={"Tus-Resumable": "1.0.0"})
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise PeerError(f"{name} did not answer on port {port} in {timeout:.0f} s:\n"
                                f"{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


@contextlib.contextmanager
def _serve(name: str, argv: list[str], env: dict[str, str], data_dir: Path, port: int
           ) -> Iterator[PeerServer]:
    log = data_dir.with_name(data_dir.name + ".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=HERE)
    try:
        _wait_ready(process, port, log, name)
        yield PeerServer(name, port, process.pid, data_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
        log.unlink(missing_ok=True)


@contextlib.contextmanager
def tus_node_server(node_dir: Path) -> Iterator[PeerServer]:
    """@tus/server + @tus/file-store on a fresh upload directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="byterange-bench-tusnode-"))
    port = free_port()
    argv = [shutil.which("node") or "node", str(HERE / "tus_node_server.mjs"),
            str(node_dir / "node_modules"), str(port), str(data_dir)]
    with _serve("@tus/server", argv, dict(os.environ), data_dir, port) as server:
        yield server


@contextlib.contextmanager
def tuspyserver_server(python: Path, workers: int) -> Iterator[PeerServer]:
    """tuspyserver under ``uvicorn --loop uvloop --http httptools --workers N`` on a fresh directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="byterange-bench-tuspy-"))
    port = free_port()
    argv = [str(python), "-m", "uvicorn", "tuspy_app:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "10"]
    env = dict(os.environ, BENCH_TUSPY_DIR=str(data_dir))
    env.pop("PYTHONPATH", None)
    with _serve("tuspyserver", argv, env, data_dir, port) as server:
        yield server
