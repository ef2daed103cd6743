"""Request ids and structured logs (no Flask here).

- A request id is taken from an incoming ``X-Request-Id`` when it is sane (:func:`accept_request_id`:
  1–128 characters of a conservative set, so a client cannot forge log lines or inject markup),
  else generated (:func:`new_request_id`). ``observe.py`` puts it in :data:`REQUEST_ID` for the
  time a request is handled; :class:`RequestIdFilter` copies it into every log record.
- :class:`JsonFormatter` writes one JSON object per line (``BYTERANGE_LOG_FORMAT=json``), with
  the fields a record carries in ``extra={"fields": {...}}`` at the top level;
  :class:`TextFormatter` writes the same as ``key=value`` pairs for people.
- :func:`configure_logging` installs one handler on the ``byterange_server`` logger, unless the
  embedding program (or pytest) configured logging itself.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import time
from typing import Any
from typing import TextIO

__all__ = [
    "ACCESS_LOGGER",
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "accept_request_id",
    "configure_logging",
    "new_request_id",
]

ACCESS_LOGGER = "byterange_server.access"
PACKAGE_LOGGER = "byterange_server"
LOG_FORMATS = ("json", "text")

#: The id of the request this thread is handling, None outside requests.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("byterange_request_id", default=None)

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=@/-]{0,127}")
#: Set on handlers this module installed, so configuring twice adds nothing.
_OURS = "_byterange_handler"


def accept_request_id(value: str | None) -> str | None:
    """``value`` when it can be used as a request id as it is, else None."""
    if value is None:
        return None
    value = value.strip()
    return value if _REQUEST_ID_RE.fullmatch(value) else None


def new_request_id() -> str:
    """128 random bits, hex."""
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record that passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return _iso(record.created)


def _iso(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a line says about ``record``, in order: common fields, then the record's own."""
    fields: dict[str, Any] = {
        "time": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
        "pid": record.process,
    }
    request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
    if request_id is not None:
        fields["request_id"] = request_id
    for key, value in (getattr(record, "fields", None) or {}).items():
        fields.setdefault(key, value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions as a string field ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json.dumps(fields, default=str, separators=(",", ":"), ensure_ascii=True)


def write_json_line(logger: logging.Logger, message: str, request_id: str, fields: dict[str, Any]) -> bool:
    """Write the line :class:`JsonFormatter` would write for an INFO record of ``logger``
    (a child of the package logger) straight to our handler's stream, without building a
    :class:`logging.LogRecord` (most of an access line's cost); False, having written nothing,
    unless logging is configured exactly as :func:`configure_logging` leaves it (JSON, our
    handler only, nothing else listening): then the caller logs as usual."""
    if logger.handlers or logger.filters or not logger.propagate or not logger.isEnabledFor(logging.INFO):
        return False
    package = logger.parent
    if package is None or package.name != PACKAGE_LOGGER or package.propagate or package.filters:
        return False
    handlers = package.handlers
    if len(handlers) != 1:
        return False
    handler = handlers[0]
    if (
        not getattr(handler, _OURS, False)
        or type(handler.formatter) is not JsonFormatter
        or handler.level > logging.INFO
        or len(handler.filters) != 1
        or type(handler.filters[0]) is not RequestIdFilter
    ):
        return False
    line: dict[str, Any] = {
        "time": _iso(time.time()),
        "level": "info",
        "logger": logger.name,
        "message": message,
        "pid": os.getpid(),
        "request_id": request_id,
    }
    for key, value in fields.items():
        line.setdefault(key, value)
    text = json.dumps(line, default=str, separators=(",", ":"), ensure_ascii=True)
    stream_handler: logging.StreamHandler[TextIO] = handler  # type: ignore[assignment]
    with stream_handler.lock:  # type: ignore[union-attr]
        stream_handler.stream.write(text + stream_handler.terminator)
        stream_handler.flush()
    return True


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        head = f"{fields.pop('time')} {fields.pop('level').upper()} {fields.pop('logger')}"
        request_id = fields.pop("request_id", None)
        if request_id:
            head += f" [{request_id}]"
        message = fields.pop("message")
        fields.pop("pid")
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        line = f"{head} {message}" + (f" {pairs}" if pairs else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = "-" if value is None else str(value)
    return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def configure_logging(
    log_format: str,
    level: str = "info",
    *,
    stream: TextIO | None = None,
    force: bool = False,
) -> logging.Handler | None:
    """Send the ``byterange_server`` loggers to ``stream`` (stderr) in ``log_format``.

    Nothing happens when logging is configured already (a handler on the root logger, as pytest
    and most embedding programs have) unless ``force``; nor a second time.

    :returns: the installed handler, or None.
    :raises ValueError: an unknown format or level.
    """
    formatter = make_formatter(log_format)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    package = logging.getLogger(PACKAGE_LOGGER)
    if any(getattr(handler, _OURS, False) for handler in package.handlers):
        return None
    if not force and (logging.getLogger().handlers or package.handlers):
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    setattr(handler, _OURS, True)
    package.addHandler(handler)
    package.setLevel(numeric)
    # One line per request whatever the level (BYTERANGE_REQUEST_LOG turns them off).
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    # Our handler has written the record: the root logger's (if any later) must not again.
    package.propagate = False
    return handler
