"""The S3 backend's health probe against a store that accepts connections and never answers:
``check`` fails within a few seconds (one attempt, short timeouts), so /healthz takes the host
out of rotation instead of hanging for minutes on botocore's defaults (60 s × 5 attempts)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from byterange_server.errors import StorageError
from byterange_server.storage.s3 import PROBE_TIMEOUT
from byterange_server.storage.s3 import S3Storage

pytest.importorskip("boto3")


def test_the_health_probe_of_a_silent_store_fails_quickly(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "probe")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "probe")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing is ever read or sent
        port = silent.getsockname()[1]
        storage = S3Storage(bucket="bucket", endpoint=f"http://127.0.0.1:{port}", region="us-east-1")
        outcome: list[BaseException | None] = []

        def probe() -> None:
            try:
                storage.check()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout=PROBE_TIMEOUT * 4 + 10)
        elapsed = time.monotonic() - started
    assert outcome, f"the probe still hangs after {elapsed:.0f} s"
    assert isinstance(outcome[0], StorageError) and outcome[0].status == 503
