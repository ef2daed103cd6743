"""The console command and the BYTERANGE_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from byterange_server.cli import main
from byterange_server.config import Settings
from byterange_server.config import parse_size
from byterange_server.db import migrate


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 1048576), ("8MiB", 8 * 1024**2), ("10GB", 10 * 1000**3), ("1 TiB", 1024**4)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "8 parsecs", "-1", "1.5MiB", "MiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "BYTERANGE_DATA_DIR": "/srv/uploads",
            "BYTERANGE_MAX_RESOURCE_SIZE": "5GiB",
            "BYTERANGE_LEASE_SECONDS": "2.5",
            "BYTERANGE_FSYNC": "off",
            "BYTERANGE_MOUNT": "uploads/",
            "BYTERANGE_URL": "ignored: the client's variable",
            "OTHER": "x",
        }
    )
    assert settings.data_dir == Path("/srv/uploads")
    assert settings.max_resource_size == 5 * 1024**3
    assert settings.lease_seconds == 2.5
    assert settings.fsync is False
    assert settings.mount == "/uploads"
    assert settings.resolved_database_url == "sqlite:////srv/uploads/byterange.sqlite3"
    assert settings.resolved_storage_dir == Path("/srv/uploads/objects")


def test_settings_reject_bad_values_and_unknown_overrides() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"BYTERANGE_FSYNC": "perhaps"})
    with pytest.raises(ValueError):
        Settings.from_env({}, overrides={"NO_SUCH_SETTING": 1})


def test_db_upgrade_check_current_and_cleanup(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BYTERANGE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output
    url = Settings.from_env().resolved_database_url
    assert migrate.current(url) is not None
    result = runner.invoke(main, ["db", "check"])
    assert result.exit_code == 0 and "agree" in result.output
    result = runner.invoke(main, ["db", "current"])
    assert result.stdout.strip() == migrate.current(url)
    result = runner.invoke(main, ["cleanup"])
    assert result.exit_code == 0 and "removed 0 expired" in result.output
