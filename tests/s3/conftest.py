"""The tests under tests/s3 run the server on the S3 backend against the session's SeaweedFS
(tests/support/seaweedfs.py): each test gets a key prefix of its own in the one bucket, and
credentials through the AWS environment chain, as a deployment gives them."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

#: The smallest block S3 allows, so tests cross block boundaries with little data.
BLOCK_SIZE = 5 * 1024 * 1024


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, s3_server: dict[str, str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_settings(s3_server: dict[str, str]) -> dict[str, Any]:
    return {
        "STORAGE": "s3",
        "S3_ENDPOINT": s3_server["endpoint"],
        "S3_BUCKET": s3_server["bucket"],
        "S3_REGION": s3_server["region"],
        "S3_PREFIX": f"tests/{secrets.token_hex(8)}/",
        "S3_BLOCK_SIZE": str(BLOCK_SIZE),
    }


@pytest.fixture
def settings_overrides(database_url: str, tmp_path: Path, s3_settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "LEASE_SECONDS": "5",
        "AUTH": "off",
        "CLEANUP_INTERVAL": "0",
        # The tests assemble by hand, as they sweep (test_assembly.py tests the prompt path).
        "S3_ASSEMBLE_ON_COMPLETION": "false",
        **s3_settings,
    }


#: API tests that look at the files of the local backend, not at what the API serves; their
#: object-store counterparts are in test_objects.py.
FILE_SPECIFIC = {
    "test_live_write_ends_and_commits_nothing": "the bytes of a write cut by a DELETE go at the "
    "next sweep on an object store (test_objects.py), not at once",
    "test_persist_prefix_with_tiny_reads": "reads the hole before the prefix from storage",
    "test_final_of_complete_partials": "opens the partials' files",
    "test_unfinished_partials": "opens the partials' files",
    "test_expired_partial_read_by_a_final_is_hidden_not_removed": "an unwritten partial has no objects",
    "test_concatenated_bytes_stay_put_on_disk": "walks the data directory (test_objects.py checks "
    "that a final stores nothing)",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/s3/" not in item.nodeid:
            continue
        reason = FILE_SPECIFIC.get(getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"local files only: {reason}"))
