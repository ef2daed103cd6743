"""``byterange-server``: run the server and manage its database.

::

    byterange-server serve [--bind 127.0.0.1:8080] [--workers N] [--threads N]
    byterange-server db upgrade | check | current
    byterange-server cleanup            # remove expired incomplete resources
    byterange-server token NAME         # a new bearer token entry
    byterange-server sign URL [--methods POST --expires-in 1h --max-size 1GiB]
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
import time

import click

from .auth.signing import signed_url
from .auth.tokens import NAME_PATTERN
from .auth.tokens import Credentials
from .auth.tokens import parse_entries
from .config import SettingError
from .config import Settings
from .config import gunicorn_count
from .units import parse_size


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="byterange-server", prog_name="byterange-server")
def main() -> None:
    """Resumable, segmented, parallel uploads over plain HTTP."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"the server's dependencies are not installed ({', '.join(missing)}): "
            "pip install 'byterange-server[server]' (the client, byterange, needs none of them)"
        )


#: Installed with the [server] extra; a client-only install has none of them.
SERVER_MODULES = ("flask", "werkzeug", "sqlalchemy", "alembic", "gunicorn", "prometheus_client")


def _settings() -> Settings:
    """The settings from the environment; a bad value is one line naming the variable."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _gunicorn_numbers() -> None:
    """gunicorn's settings module reads these itself; check them here so a typo is one line, not a
    traceback from inside gunicorn."""
    for name in ("WORKERS", "THREADS"):
        try:
            gunicorn_count(name, 1)
        except SettingError as exc:
            raise click.ClickException(str(exc)) from exc


def _existing_database(settings: Settings) -> str:
    """The database URL, refusing an embedded database that does not exist yet: opening it would
    create an empty one (in whatever directory the command ran) and report on that instead."""
    url = settings.resolved_database_url
    if not settings.database_url:
        path = settings.data_dir / "byterange.sqlite3"
        if not path.exists():
            raise click.ClickException(
                f"no database at {path.resolve()}: run this where the server keeps its data, "
                "or set BYTERANGE_DATA_DIR (or BYTERANGE_DATABASE_URL); "
                "'byterange-server db upgrade' creates one"
            )
    return url


@main.command()
@click.option("--bind", "-b", default=None, help="host:port (default 127.0.0.1:8080)")
@click.option("--workers", "-w", type=int, default=None, help="worker processes")
@click.option("--threads", type=int, default=None, help="threads per worker")
@click.option("--no-migrate", is_flag=True, help="do not apply database migrations first")
def serve(bind: str | None, workers: int | None, threads: int | None, no_migrate: bool) -> None:
    """Apply migrations, then run the app under gunicorn (our threaded worker)."""
    from .db import migrate

    settings = _settings()
    _gunicorn_numbers()
    _check_auth(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not no_migrate:
        migrate.upgrade(settings.resolved_database_url)
    argv = ["gunicorn", "--config", "python:byterange_server.runtime.gunicorn_conf"]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    if threads:
        argv += ["--threads", str(threads)]
    argv.append("byterange_server.app:create_app()")
    os.execvp(sys.executable, [sys.executable, "-m", *argv])


def _check_auth(settings: Settings) -> None:
    """Refuse to start a server that could authenticate nobody; say loudly when auth is off."""
    if not settings.auth_required:
        click.echo(
            "byterange-server: authentication is OFF (BYTERANGE_AUTH=off): anyone who can reach "
            "this server can write to it. Use this for local development only.",
            err=True,
        )
        return
    try:
        empty = Credentials.from_settings(settings).empty
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if empty:
        raise click.ClickException(
            "authentication is required but no credentials are configured.\n"
            "  Create a token:         byterange-server token NAME  (then BYTERANGE_TOKENS=NAME:SECRET)\n"
            "  or sign URLs with keys: BYTERANGE_SIGNING_KEYS=KEY-ID:SECRET\n"
            "  or, for local development only: BYTERANGE_AUTH=off"
        )


@main.command()
@click.argument("name")
def token(name: str) -> None:
    """Print a new random bearer token entry NAME:SECRET (256 bits) for BYTERANGE_TOKENS."""
    if not NAME_PATTERN.fullmatch(name):
        raise click.BadParameter(
            f"{name!r}: a token name is 1 to 64 letters, digits, '_', '.' and '-' only", param_hint="NAME"
        )
    entry = f"{name}:{secrets.token_urlsafe(32)}"
    parse_entries(entry, what="token")  # the very rule the server reads BYTERANGE_TOKENS by
    click.echo(entry)


@main.command()
@click.argument("url")
@click.option(
    "--methods",
    "-m",
    default="POST",
    show_default=True,
    help="Comma-separated methods the URL allows (POST creates one resource).",
)
@click.option(
    "--expires-in",
    "-e",
    default="1h",
    show_default=True,
    help="Lifetime: seconds, or a number with s, m, h or d.",
)
@click.option("--max-size", default="1GiB", show_default=True, help="Largest resource, e.g. 100MiB.")
@click.option("--key", "key_id", default=None, help="Signing key id (default: the first configured).")
def sign(url: str, methods: str, expires_in: str, max_size: str, key_id: str | None) -> None:
    """Print URL signed for METHODS (a signed upload URL for a browser or phone).

    URL is the collection (https://uploads.example/files) to let the holder create and
    fill exactly one resource, or a resource URL to grant access to it. Every call mints a new
    grant (a fresh br-nonce): two calls never print the same URL, so two holders never
    share the resource a creation URL creates.
    """
    try:
        keys = Credentials.from_settings(_settings()).signing_keys
        if not keys:
            raise click.ClickException("no signing keys configured (BYTERANGE_SIGNING_KEYS)")
        key_id = key_id or next(iter(keys))
        if key_id not in keys:
            raise click.ClickException(f"no signing key {key_id!r} is configured")
        click.echo(
            signed_url(
                url,
                key_id=key_id,
                secret=keys[key_id],
                methods=[m.strip().upper() for m in methods.split(",") if m.strip()],
                expires=int(time.time()) + _parse_duration(expires_in),
                max_size=parse_size(max_size),
            )
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _parse_duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"not a duration: {text!r} (e.g. 900, 15m, 1h, 7d)")
    return int(number) * units[unit]


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to stop at.")
def upgrade(revision: str) -> None:
    """Apply migrations (creates the database when there is none)."""
    from .db import migrate

    url = _settings().resolved_database_url
    migrate.upgrade(url, revision)
    click.echo(f"database at revision {migrate.current(url)}")


@db.command()
def check() -> None:
    """Fail when the models and the migrations disagree."""
    from .db import migrate

    migrate.check(_existing_database(_settings()))
    click.echo("models and migrations agree")


@db.command()
def current() -> None:
    """Print the revision the database is at (and, on stderr, which database that is)."""
    from .db import migrate

    url = _existing_database(_settings())
    click.echo(f"database: {_shown(url)}", err=True)
    click.echo(migrate.current(url) or "(empty)")


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
def cleanup() -> None:
    """Remove expired incomplete resources (rows and bytes), then collect recorded garbage."""
    from .app import build_service

    # The outbox sink records "expired" events; the server's workers deliver them.
    settings = _settings()
    _existing_database(settings)
    service, _ = build_service(settings, start_hooks=False)
    removed = service.remove_expired()
    click.echo(f"removed {removed} expired resource(s)")
    collected = service.collect_garbage()
    assembled = service.assemble_pending()
    if collected or assembled:
        click.echo(f"deleted {collected} stored object(s), assembled {assembled} resource(s)")


if __name__ == "__main__":  # pragma: no cover
    main()
