"""Request ids and log line formats (requestlog.py)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server import create_app
from byterange_server.runtime.requestlog import REQUEST_ID
from byterange_server.runtime.requestlog import JsonFormatter
from byterange_server.runtime.requestlog import RequestIdFilter
from byterange_server.runtime.requestlog import TextFormatter
from byterange_server.runtime.requestlog import accept_request_id
from byterange_server.runtime.requestlog import configure_logging
from byterange_server.runtime.requestlog import new_request_id
from byterange_server.runtime.requestlog import write_json_line

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=@/-]{0,127}")


@pytest.fixture(autouse=True)
def outside_any_request():
    # A test-client response nobody read leaves its request "open" (the observation ends when
    # the server closes the body, which the test client does only on reading it).
    token = REQUEST_ID.set(None)
    yield
    REQUEST_ID.reset(token)


@given(st.text(max_size=300))
def test_an_accepted_id_is_always_safe_to_log_and_echo(text: str) -> None:
    accepted = accept_request_id(text)
    if accepted is not None:
        assert accepted == text.strip()
        assert SAFE.fullmatch(accepted)
        # nothing that could end a header, a log line or a JSON string, or hide in one
        assert accepted.isascii() and accepted.isprintable() and " " not in accepted
        assert json.dumps(accepted) == f'"{accepted}"'


@given(st.from_regex(SAFE, fullmatch=True))
def test_every_sane_id_is_kept(text: str) -> None:
    assert accept_request_id(text) == text
    assert accept_request_id(f"  {text}\t") == text


@pytest.mark.parametrize("text", [None, "", "a" * 129, "a b", "a\r\nb", "<script>", "-x", "é"])
def test_insane_ids_are_refused(text: str | None) -> None:
    assert accept_request_id(text) is None


def test_generated_ids_are_random_and_acceptable() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) and accept_request_id(rid) == rid for rid in ids)


def _record(
    message: str = "hello %s", args: tuple = ("you",), exc_info: object = None, **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord(
        "byterange_server.x", logging.WARNING, __file__, 1, message, args, exc_info  # type: ignore[arg-type]
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_has_the_common_fields_then_the_records_own() -> None:
    record = _record(request_id="rid-1", fields={"status": 201, "path": "/files", "level": "ignored"})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert list(parsed) == ["time", "level", "logger", "message", "pid", "request_id", "status", "path"]
    assert parsed["level"] == "warning" and parsed["message"] == "hello you"
    assert parsed["request_id"] == "rid-1"


def test_a_json_line_stays_one_line_whatever_the_message() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = _record("evil\n{\"level\":\"info\"} ünï", (), exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and line.isascii()
    parsed = json.loads(line)
    assert parsed["message"] == "evil\n{\"level\":\"info\"} ünï"
    assert "ValueError: bad\nthing" in parsed["exception"]
    assert "request_id" not in parsed  # outside a request


def test_the_text_format_is_for_people() -> None:
    record = _record(request_id="rid-2", fields={"status": 409, "problem": "content-mismatch",
                                                 "path": "/files/a b", "resource_id": None})
    line = TextFormatter().format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z WARNING byterange_server\.x \[rid-2\] hello you "
        r'status=409 problem=content-mismatch path="/files/a b" resource_id=-',
        line,
    ), line


def test_the_filter_takes_the_id_of_the_request_being_handled() -> None:
    token = REQUEST_ID.set("ctx-id")
    try:
        record = _record()
        RequestIdFilter().filter(record)
        assert record.request_id == "ctx-id"  # type: ignore[attr-defined]
        explicit = _record(request_id="given")
        RequestIdFilter().filter(explicit)
        assert explicit.request_id == "given"  # type: ignore[attr-defined]
    finally:
        REQUEST_ID.reset(token)


def test_configuration_leaves_configured_logging_alone() -> None:
    # pytest has handlers on the root logger, as an embedding program would.
    assert logging.getLogger().handlers
    assert configure_logging("json") is None
    package = logging.getLogger("byterange_server")
    stream = io.StringIO()
    handler = configure_logging("text", "warning", stream=stream, force=True)
    try:
        assert handler is not None and handler in package.handlers
        assert configure_logging("json", force=True) is None  # once only
        logging.getLogger("byterange_server.deep.module").info("dropped below the level")
        logging.getLogger("byterange_server.deep.module").warning("kept")
        logging.getLogger("byterange_server.access").info("access lines whatever the level")
        lines = stream.getvalue().splitlines()
        assert [line.split(" ", 3)[3] for line in lines] == ["kept", "access lines whatever the level"]
    finally:
        package.removeHandler(handler)  # type: ignore[arg-type]
        package.propagate = True
        package.setLevel(logging.NOTSET)
        logging.getLogger("byterange_server.access").setLevel(logging.NOTSET)


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "chatty")])
def test_a_bad_setting_stops_the_start(tmp_path, name: str, value: str) -> None:
    with pytest.raises(ValueError, match=value):
        create_app({"DATA_DIR": str(tmp_path), name: value})


def _our_json_handler(stream: io.StringIO) -> logging.Handler:
    handler = configure_logging("json", "info", stream=stream, force=True)
    assert handler is not None
    return handler


def _remove(handler: logging.Handler) -> None:
    package = logging.getLogger("byterange_server")
    package.removeHandler(handler)
    package.propagate = True
    package.setLevel(logging.NOTSET)
    logging.getLogger("byterange_server.access").setLevel(logging.NOTSET)


def test_a_line_written_without_a_log_record_is_the_formatters_line() -> None:
    stream = io.StringIO()
    handler = _our_json_handler(stream)
    logger = logging.getLogger("byterange_server.access")
    fields = {"method": "HEAD", "path": "/files/ünï\n", "status": 204, "route": None, "level": "ignored"}
    try:
        assert write_json_line(logger, "HEAD /files/x 204", "rid-9", fields)
        logger.info("HEAD /files/x 204", extra={"fields": fields, "request_id": "rid-9"})
    finally:
        _remove(handler)
    direct, logged = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(direct) == list(logged) and stream.getvalue().isascii()
    assert {**direct, "time": None} == {**logged, "time": None}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", direct["time"])


def test_a_line_goes_through_logging_whenever_anything_else_listens() -> None:
    stream = io.StringIO()
    handler = _our_json_handler(stream)
    logger = logging.getLogger("byterange_server.access")
    package = logging.getLogger("byterange_server")
    extra = logging.StreamHandler(io.StringIO())
    try:
        package.addHandler(extra)  # a second handler: it must get its record
        assert not write_json_line(logger, "m", "r", {})
        package.removeHandler(extra)
        logger.addHandler(extra)  # one on the access logger itself
        assert not write_json_line(logger, "m", "r", {})
        logger.removeHandler(extra)
        handler.setFormatter(TextFormatter())  # the text format
        assert not write_json_line(logger, "m", "r", {})
        handler.setFormatter(JsonFormatter())
        logger.setLevel(logging.WARNING)  # access lines turned down
        assert not write_json_line(logger, "m", "r", {})
    finally:
        package.removeHandler(extra)
        logger.removeHandler(extra)
        _remove(handler)
    assert stream.getvalue() == ""
