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
    #: ``BYTERANGE_STORAGE=s3``: an S3-compatible object store (storage/s3.py, docs/storage.md).
    #: Its endpoint URL (empty: AWS), bucket, key prefix and region; credentials come from the
    #: usual AWS chain (environment, shared files, instance role).
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_region: str = ""
    #: Path-style URLs (``endpoint/bucket/key``), as most stores other than AWS need.
    s3_path_style: bool = True
    #: Smallest block a resource's objects are cut on (assembly parts are one block each).
    s3_block_size: int = 8 * 1024 * 1024
    #: Seconds the pieces an assembly replaced stay, for reads that began on them.
    s3_gc_grace: float = 3600.0
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
    #: Seconds between expiry sweeps (one worker at a time sweeps, see expiry.py); 0: none (run
    #: ``byterange-server cleanup`` from cron instead).
    cleanup_interval: float = 300.0
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
    #: Methods browsers may use; empty: all the protocols use (GET HEAD POST PUT PATCH DELETE).
    cors_methods: str = ""
    #: Request headers browsers may send, on top of the protocols' own (and Authorization).
    cors_allow_headers: str = ""
    #: Response headers scripts may read, on top of the protocols' own (Location, Upload-Offset, ...).
    cors_expose_headers: str = ""
    #: Reverse proxies of ours in front of the server, each appending one ``Forwarded`` /
    #: ``X-Forwarded-*`` hop; 0 trusts none of those headers.
    trusted_proxies: int = 0

    # -- limits (docs/security.md#limits); 0 turns a limit off ---------------------------------
    #: Largest body of one write request, in bytes: a larger Content-Length is refused before a
    #: byte is read (413); a chunked body stops there (its bytes up to the limit are kept).
    max_request_bytes: int = 0
    #: Most committed extents (separate ranges) one resource may have.
    max_extents: int = 100_000
    #: Most write requests in flight at once on one resource (across all workers and hosts).
    max_writes_per_resource: int = 32
    #: Most write requests in flight at once for one principal (token or signed URL).
    max_writes_per_principal: int = 64
    #: Quota of one principal: most resources it may have open (incomplete, or a tus final whose
    #: digest is not computed yet), and most bytes declared for them (403 ``quota-exceeded``).
    #: A signed URL's principal is its grant, which creates one resource: its quota is its
    #: max-size. Without authentication there is no principal and no quota.
    max_resources_per_principal: int = 10_000
    max_bytes_per_principal: int = 16 * 1024**4
    #: Most partial uploads one tus ``Upload-Concat: final`` may name (a partial named twice
    #: counts twice).
    max_concat_parts: int = 100
    #: Most header fields in one request, and their total size in bytes (431 beyond). gunicorn's
    #: own caps (gunicorn_conf.py) sit above these, so the app answers with a problem document.
    max_header_fields: int = 100
    max_header_bytes: int = 16384
    #: Slowest body accepted: a write whose body arrives slower than this many bytes per second,
    #: measured over ``min_body_rate_window`` seconds of waiting for it, is ended (408; what
    #: arrived is kept). Frees the thread a slowloris client would hold.
    min_body_rate: int = 1024
    min_body_rate_window: float = 60.0
    #: Seconds a request head (request line and header fields) may take, from the first byte of
    #: the request (of the connection, for its first request): a slower head gets 408 and the
    #: connection closes. Enforced by the gunicorn worker (worker.py) without holding a thread.
    header_timeout: float = 10.0

    # -- authentication (docs/security.md) ------------------------------------------------------
    #: ``required``: every upload request needs a bearer token or a signed URL, and the server
    #: refuses to start without either configured. ``off``: anyone may do anything -- for local
    #: development only, and only when set explicitly.
    auth: str = "required"
    #: Bearer tokens: ``name:secret`` entries (secrets of 16+ characters) separated by commas or
    #: spaces. A resource belongs to the token that created it.
    tokens: str = ""
    #: A file of ``name:secret`` lines, merged with ``tokens`` (keeps secrets out of the env).
    tokens_file: Path | None = None
    #: Names of tokens that may read, write and delete every resource.
    admin_tokens: str = ""
    #: Keys for signed upload URLs: ``key-id:secret`` entries; several allow rotation.
    signing_keys: str = ""
    #: A file of ``key-id:secret`` lines, merged with ``signing_keys``.
    signing_keys_file: Path | None = None

    # Graceful shutdown (shutdown.py, docs/deployment.md#graceful-shutdown-and-deploys) ---------
    #: Seconds a stopping worker lets in-flight writes run on before cutting them (each then
    #: commits what it received and answers 503); at most half of gunicorn's graceful_timeout.
    shutdown_grace: float = 5.0
    #: ``Retry-After`` seconds of the 503 answers of a stopping worker.
    shutdown_retry_after: int = 2

    # -- event hooks (hooks/, docs/hooks.md) ---------------------------------------------------
    #: URL that receives lifecycle events (JSON POST, retried, in order per resource). Empty: none.
    hook_url: str = ""
    #: ``module:callable`` that receives the same events in-process, with the same guarantees.
    hook_python: str = ""
    #: Event kinds delivered, comma-separated.
    hook_events: str = "created,progress,completed,deleted,expired"
    #: Key of the HMAC-SHA256 ``Byterange-Signature`` of every hook body. Empty: unsigned.
    hook_secret: str = ""
    #: Seconds an event delivery may take before it counts as failed.
    hook_timeout: float = 10.0
    #: Attempts after which an event is given up (``abandoned``) and the next one is delivered.
    hook_max_attempts: int = 25
    #: Seconds after which an undelivered event is given up, whatever its attempts.
    hook_max_age: float = 24 * 3600.0
    #: First retry delay in seconds; doubles per attempt (with jitter) up to ``hook_retry_max_delay``.
    hook_retry_base: float = 1.0
    hook_retry_max_delay: float = 300.0
    #: Progress events of one resource are held this long and coalesced (latest offset, all ranges).
    hook_progress_interval: float = 2.0
    #: Seconds between looks for due events written by other processes.
    hook_poll_seconds: float = 2.0
    #: Seconds delivered and abandoned events stay in ``hook_events``.
    hook_retention: float = 7 * 24 * 3600.0
    #: Synchronous creation check: an http(s) URL or ``module:callable``. Empty: none.
    hook_pre_create: str = ""
    hook_pre_create_timeout: float = 5.0
    #: Allow creations when the pre-create hook cannot be asked (default: refuse with 503).
    hook_pre_create_fail_open: bool = False

    # -- browser uploader (api/uploader.py, docs/uploader.md) ---------------------------------
    #: ``auto``: served when ``auth`` is ``off`` (local use); ``on``: always; ``off``: never.
    uploader: str = "auto"
    #: Path of the uploader page, outside the mount; the status page is ``<path>/status``.
    uploader_path: str = "/upload"

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
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def uploader_enabled(self) -> bool:
        return self.uploader == "on" or (self.uploader == "auto" and not self.auth_required)

    def __post_init__(self) -> None:
        if self.auth not in ("required", "off"):
            raise ValueError(f"BYTERANGE_AUTH must be 'required' or 'off', not {self.auth!r}")
        if self.uploader not in ("auto", "on", "off"):
            raise SettingError("uploader", self.uploader, "auto, on or off")

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
        coerced = {}
        for name, value in values.items():
            try:
                coerced[name] = _coerce(fields[name], value)
            except ValueError:
                raise SettingError(name, value, _expected_form(fields[name])) from None
        return cls(**coerced)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'byterange.sqlite3').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir if self.storage_dir is not None else self.data_dir / "objects"


class SettingError(ValueError):
    """A ``BYTERANGE_*`` value that cannot be read: says which variable, its value, and the form
    expected, in one line (a server that will not start must say why without a traceback)."""

    def __init__(self, name: str, value: Any, expected: str) -> None:
        self.variable = ENV_PREFIX + name.upper()
        super().__init__(f"{self.variable}={str(value)!r} is not valid: expected {expected}")


def gunicorn_count(name: str, default: int, environ: Mapping[str, str] = os.environ) -> int:
    """``BYTERANGE_WORKERS`` or ``BYTERANGE_THREADS``, a whole number above 0 (``default`` when
    unset). gunicorn's settings module and ``serve`` read them here, so both judge a value alike."""
    value = environ.get(ENV_PREFIX + name)
    if value is None:
        return default
    if not (value.strip().isdigit() and int(value) > 0):
        raise SettingError(name, value, "a whole number above 0")
    return int(value)


_SIZES = {
    "max_resource_size",
    "chunk_size",
    "max_part_header_bytes",
    "max_request_bytes",
    "max_header_bytes",
    "max_bytes_per_principal",
    "s3_block_size",
}


def _kind(field: dataclasses.Field[Any]) -> str:
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")


def _expected_form(field: dataclasses.Field[Any]) -> str:
    if field.name in _SIZES:
        return "a size in bytes, e.g. 1048576, 8MiB, 512KiB, 10GB"
    return {
        "int": "a whole number, e.g. 100",
        "float": "a number, e.g. 30 or 0.5",
        "bool": "true or false (also 1/0, yes/no, on/off)",
    }.get(_kind(field), "text")


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    if field.name in _SIZES:
        return parse_size(value)
    kind = _kind(field)
    if kind in {"int"}:
        return int(value)
    if kind in {"float"}:
        return float(value)
    if kind in {"bool"}:
        return _parse_bool(value)
    if kind in {"Path", "Path | None"}:
        return Path(value) if value not in (None, "") else None
    if field.name in ("auth", "uploader"):
        value = str(value).strip().lower()
    if field.name == "mount":
        value = "/" + str(value).strip("/")
    return value
