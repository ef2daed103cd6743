"""``byterange-server`` as a newcomer meets it: help, version, and one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from byterange_server.cli import main
from byterange_server.config import SettingError
from byterange_server.config import Settings
from byterange_server.config import gunicorn_count


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, prog_name="byterange-server")


def test_short_help_and_version() -> None:
    for option in ("-h", "--help"):
        result = invoke(option)
        assert result.exit_code == 0 and result.output.startswith("Usage: byterange-server")
    result = invoke("db", "-h")
    assert result.exit_code == 0 and "upgrade" in result.output
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("byterange-server, version ")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BYTERANGE_MAX_PARTS", "abc", "a whole number"),
        ("BYTERANGE_LEASE_SECONDS", "soon", "a number"),
        ("BYTERANGE_FSYNC", "maybe", "true or false"),
        ("BYTERANGE_MAX_RESOURCE_SIZE", "1XB", "a size in bytes"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, variable, value, expected) -> None:
    with pytest.raises(SettingError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    for command in (["db", "current"], ["db", "upgrade"], ["cleanup"], ["serve"]):
        result = invoke(*command, env={variable: value, "BYTERANGE_DATA_DIR": str(tmp_path)})
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {variable}={value!r} is not valid: expected {expected}")
    assert list(tmp_path.iterdir()) == []  # nothing was created on the way to the error


def test_gunicorn_numbers_are_checked_before_gunicorn_reads_them(tmp_path: Path) -> None:
    env = {"BYTERANGE_WORKERS": "two", "BYTERANGE_AUTH": "off", "BYTERANGE_DATA_DIR": str(tmp_path)}
    result = invoke("serve", env=env)
    assert result.exit_code == 1
    assert "Error: BYTERANGE_WORKERS='two' is not valid: expected a whole number above 0" in result.output


@pytest.mark.parametrize("command", [["db", "current"], ["db", "check"], ["cleanup"]])
def test_commands_that_read_a_database_refuse_to_create_one(tmp_path: Path, command) -> None:
    result = invoke(*command, env={"BYTERANGE_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 1
    assert f"Error: no database at {(tmp_path / 'data' / 'byterange.sqlite3').resolve()}" in result.output
    assert "'byterange-server db upgrade' creates one" in result.output
    assert not (tmp_path / "data").exists()


def test_db_current_says_which_database(tmp_path: Path) -> None:
    env = {"BYTERANGE_DATA_DIR": str(tmp_path)}
    assert invoke("db", "upgrade", env=env).exit_code == 0
    result = invoke("db", "current", env=env)  # click >= 8.2 keeps stderr apart
    assert result.exit_code == 0
    assert result.stderr.strip() == f"database: sqlite:///{(tmp_path / 'byterange.sqlite3').resolve()}"
    assert result.stdout.strip().isdigit()


def test_a_bad_token_name_is_quoted_whole() -> None:
    result = invoke("token", "bad name")
    assert result.exit_code == 2
    assert "'bad name': a token name is 1 to 64 letters, digits, '_', '.' and '-' only" in result.output


def test_help_texts_read_as_plain_text() -> None:
    assert "``" not in invoke("sign", "--help").output
    upgrade = invoke("db", "upgrade", "--help").output
    assert "Usage: byterange-server db upgrade [OPTIONS]\n" in upgrade
    assert "--revision TEXT  Alembic revision to stop at." in upgrade


# -- the real command, as a process ---------------------------------------------------------------


def _serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    environ = {
        **os.environ,
        "BYTERANGE_AUTH": "off",
        "BYTERANGE_DATA_DIR": str(tmp_path / "data"),
        "BYTERANGE_WORKERS": "1",
        "HOME": str(tmp_path),  # gunicorn's control socket
        "TMPDIR": str(tmp_path / "tmp"),
        **env,
    }
    (tmp_path / "tmp").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "byterange_server.cli", "serve", "--bind", f"127.0.0.1:{port}"]
    return subprocess.Popen(command, env=environ, stderr=subprocess.PIPE, text=True)


def test_start_up_says_where_uploads_go(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _serve(tmp_path, port, BYTERANGE_MOUNT="uploads")
    try:
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            seen.append(line)
            if "uploads:" in line or not line:
                break
        expected = f"uploads: POST http://127.0.0.1:{port}/uploads creates one; health: GET http://127.0.0.1:{port}/healthz"
        assert any(expected in line for line in seen), "".join(seen)
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_a_failed_start_leaves_no_metrics_directory(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = _serve(tmp_path, taken.getsockname()[1])
        _, errors = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "Address already in use" in errors
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-1", "2.5", " ", "eight"])
def test_gunicorn_settings_refuse_the_same_counts_serve_refuses(value: str) -> None:
    with pytest.raises(SettingError, match=r"BYTERANGE_THREADS=.* is not valid: expected a whole number"):
        gunicorn_count("THREADS", 8, {"BYTERANGE_THREADS": value})
    assert gunicorn_count("THREADS", 8, {}) == 8
    assert gunicorn_count("THREADS", 8, {"BYTERANGE_THREADS": " 16 "}) == 16
