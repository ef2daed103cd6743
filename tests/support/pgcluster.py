"""A throwaway PostgreSQL cluster for the tests, started from the installed server binaries.

Like pytest-postgresql's ``postgresql_proc`` but able to run as root (CI does): PostgreSQL
refuses to start as root, so ``initdb`` and ``pg_ctl`` then run as the ``postgres`` user via
``runuser``. The cluster listens on loopback on a free port with trust authentication and is
stopped and removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(os.path.realpath(which)).parent)
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    raise PostgresUnavailable("pg_ctl/initdb not found (install postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster; yields a base SQLAlchemy URL without a database name."""
    bindir = _bindir()
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="byterange-pg-"))
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    datadir = workdir / "data"
    port = _free_port()
    log = workdir / "server.log"

    def run(*argv: str) -> None:
        subprocess.run([*prefix, *argv], check=True, capture_output=True, cwd=workdir)

    try:
        initdb = str(bindir / "initdb")
        run(initdb, "-D", str(datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} "
            "-c fsync=on -c max_connections=200 -c shared_buffers=64MB"
        )
        run(str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", options, "-w", "start")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log.exists():
            detail += log.read_text(errors="replace")
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(detail) from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def _administer(base_url: str, statement: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def create_database(base_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template`` if given); returns its URL."""
    copy = f' TEMPLATE "{template}"' if template else ""
    _administer(base_url, f'CREATE DATABASE "{name}"{copy}')
    return f"{base_url}/{name}"


def drop_database(base_url: str, name: str) -> None:
    """Drop ``name``, ending any session still in it (a killed server's, or a pool not disposed).

    Every copy of the template takes about 8 MB: kept for a whole run, two thousand of them
    filled CI's disk part-way and every later test errored.
    """
    _administer(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
