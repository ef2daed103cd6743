"""Settings, read from ``BYTERANGE_*`` environment variables with embedded defaults.

With no configuration at all the server keeps everything under ``./byterange-data``: an SQLite
database in WAL mode and one sparse file per resource. ``BYTERANGE_DATABASE_URL`` switches the
metadata to PostgreSQL (``postgresql+psycopg://user@host/db``).

Nothing here is read at import time: :func:`Settings.from_env` is called by ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cors import CorsPolicy
from .units import parse_size

ENV_PREFIX = "BYTERANGE_"

def _parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting; the environment variable is ``BYTERANGE_`` + the field name upper-cased."""

    #: Directory for the embedded database and the local storage.
    data_dir: Path = Path("byterange-data")
    #: SQLAlchemy URL; empty means SQLite at ``<data_dir>/byterange.sqlite3``.
    database_url: str = ""
    #: ``local``, ``memory`` (tests only) or a dotted path to a StorageBackend class.
    storage: str = "local"
    #: Root of the local storage; empty means ``<data_dir>/objects``.
    storage_dir: Path | None = None
    #: fdatasync data before committing extents. Turning it off gives up durability.
    fsync: bool = True
    #: URL prefix the resources live under.
    mount: str = "/files"
    #: Largest resource (complete length or highest byte written), in bytes.
    max_resource_size: int = 1024**4
    #: Most parts in one multipart/byteranges or application/byteranges request.
    max_parts: int = 10_000
    #: Largest field block of one part.
    max_part_header_bytes: int = 8192
    #: Seconds an in-flight write reservation lives without renewal.
    lease_seconds: float = 30.0
    #: Seconds without body progress after which a write stops renewing its lease.
    write_idle_seconds: float = 120.0
    #: Seconds after which an incomplete resource expires.
    expire_after: float = 24 * 3600.0
    #: Size of the reads from the request body.
    chunk_size: int = 1024 * 1024
    #: Longest Committed-Ranges header before the list moves to a linked document.
    committed_ranges_header_limit: int = 4096
    #: IETF uploads: send ``104 Upload Resumption Supported`` on creation (gunicorn, HTTP/1.1).
    send_104: bool = True
    #: Prefix of the ``type`` URI of problem documents.
    problem_base_uri: str = "tag:byterange-server,2026:problem:"
    #: Origins that browsers may upload from (CORS): exact origins such as
    #: ``https://app.example``, comma- or space-separated, or ``*`` for any. Empty: no CORS.
    cors_origins: str = ""
    #: Let cross-origin browser requests carry credentials (cookies, HTTP authentication).
    cors_allow_credentials: bool = False
    #: Seconds a browser may cache the answer to a CORS preflight.
    cors_max_age: int = 600
    #: Reverse proxies of ours in front of the server, each appending one ``Forwarded`` /
    #: ``X-Forwarded-*`` hop; 0 trusts none of those headers.
    trusted_proxies: int = 0

    # -- observability (metrics.py, requestlog.py, observe.py; docs/observability.md) ----------
    #: Path of the Prometheus scrape endpoint, outside the mount; empty turns it off.
    metrics_path: str = "/metrics"
    #: When set, scraping needs ``Authorization: Bearer <token>``.
    metrics_token: str = ""
    #: Log line format of the ``byterange_server`` loggers: ``json`` or ``text``.
    log_format: str = "json"
    #: Level of the ``byterange_server`` loggers (gunicorn's own level has the same variable).
    log_level: str = "info"
    #: One access-log line per request (logger ``byterange_server.access``).
    request_log: bool = True

    @property
    def cors_policy(self) -> CorsPolicy:
        """:raises ValueError: an entry of ``cors_origins`` is not an origin."""
        return CorsPolicy.from_setting(
            self.cors_origins, allow_credentials=self.cors_allow_credentials, max_age=self.cors_max_age
        )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Build settings from ``BYTERANGE_*`` variables, then apply ``overrides``.

        :raises ValueError: when a variable cannot be parsed or is unknown.
        """
        environ = os.environ if environ is None else environ
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                continue  # other tools share the prefix (BYTERANGE_URL for the client, ...)
            values[name] = raw
        for key, value in (overrides or {}).items():
            name = key.lower().removeprefix(ENV_PREFIX.lower())
            if name not in fields:
                raise ValueError(f"unknown setting {key!r}")
            values[name] = value
        return cls(**{name: _coerce(fields[name], value) for name, value in values.items()})

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'byterange.sqlite3').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir if self.storage_dir is not None else self.data_dir / "objects"


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    if field.name in {"max_resource_size", "chunk_size", "max_part_header_bytes"}:
        return parse_size(value)
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind in {"int"}:
        return int(value)
    if kind in {"float"}:
        return float(value)
    if kind in {"bool"}:
        return _parse_bool(value)
    if kind in {"Path", "Path | None"}:
        return Path(value) if value not in (None, "") else None
    if field.name == "mount":
        value = "/" + str(value).strip("/")
    return value
