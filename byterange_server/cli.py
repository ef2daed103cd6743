"""``byterange-server``: run the server and manage its database.

::

    byterange-server serve [--bind 127.0.0.1:8080] [--workers N] [--threads N]
    byterange-server db upgrade | check | current
    byterange-server cleanup            # remove expired incomplete resources
"""

from __future__ import annotations

import os
import sys

import click

from .config import Settings


@click.group()
def main() -> None:
    """Resumable, segmented, parallel uploads over plain HTTP."""


@main.command()
@click.option("--bind", "-b", default=None, help="host:port (default 127.0.0.1:8080)")
@click.option("--workers", "-w", type=int, default=None, help="worker processes")
@click.option("--threads", type=int, default=None, help="threads per worker")
@click.option("--no-migrate", is_flag=True, help="do not apply database migrations first")
def serve(bind: str | None, workers: int | None, threads: int | None, no_migrate: bool) -> None:
    """Apply migrations, then run the app under gunicorn with gthread workers."""
    from . import migrate

    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not no_migrate:
        migrate.upgrade(settings.resolved_database_url)
    argv = ["gunicorn", "--config", "python:byterange_server.gunicorn_conf"]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    if threads:
        argv += ["--threads", str(threads)]
    argv.append("byterange_server.wsgi:app")
    os.execvp(sys.executable, [sys.executable, "-m", *argv])


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from . import migrate

    url = Settings.from_env().resolved_database_url
    migrate.upgrade(url, revision)
    click.echo(f"database at revision {migrate.current(url)}")


@db.command()
def check() -> None:
    """Fail when the models and the migrations disagree."""
    from . import migrate

    migrate.check(Settings.from_env().resolved_database_url)
    click.echo("models and migrations agree")


@db.command()
def current() -> None:
    """Print the revision the database is at."""
    from . import migrate

    click.echo(migrate.current(Settings.from_env().resolved_database_url) or "(empty)")


@main.command()
def cleanup() -> None:
    """Remove expired incomplete resources (rows and bytes)."""
    from . import create_app

    app = create_app()
    removed = app.extensions["byterange"].remove_expired()
    click.echo(f"removed {removed} expired resource(s)")


if __name__ == "__main__":  # pragma: no cover
    main()
