"""A throwaway single-node Ceph with an RGW gateway for the tests: the object store that syncs
(BlueStore's commit) before it acknowledges a PUT.

Started from Debian's packages (``apt-get install ceph-mon ceph-osd radosgw``; ``.ci/run``
installs them): one monitor, one BlueStore OSD on a sparse file, no manager, pool size 1, and
radosgw (beast) on 127.0.0.1, every listener on a free loopback port, authentication off. One
user with fixed keys and one bucket. Everything lives in one temporary directory and is
killed with SIGKILL at the end (its data is thrown away).

Two traps of such a cluster (both cost an endless retry loop, not an error): the monitor's
address must be given as both a v2 and a v1 address for the OSD to reach it, and with
authentication off radosgw needs ``ms mon client mode = crc secure``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ACCESS_KEY = "byterangecephtestkey"
SECRET_KEY = "byterange-ceph-test-secret-0123456789"
BUCKET = "byterange-test"
REGION = "us-east-1"
#: The OSD's sparse block file: only what is written takes disk space.
BLOCK_BYTES = 8 * 1024**3


class CephUnavailable(RuntimeError):
    pass


def binaries() -> dict[str, str]:
    """The Ceph programs, or :class:`CephUnavailable` saying what to install."""
    found = {}
    for name in ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path is None:
            raise CephUnavailable(f"{name} not found (apt-get install ceph-mon ceph-osd radosgw)")
        found[name] = path
    return found


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in ports:
            ports.append(port)
    return ports


def _config(workdir: Path, fsid: str, mon_v2: int, mon_v1: int, rgw: int) -> str:
    return f"""[global]
fsid = {fsid}
mon initial members = a
mon host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
run dir = {workdir}/run
admin socket = {workdir}/run/$name.asok
log file = {workdir}/log/$name.log
pid file = {workdir}/run/$name.pid
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
mon allow pool delete = true
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
[mon]
mon data = {workdir}/mon/$name
[osd]
osd data = {workdir}/osd/$id
osd objectstore = bluestore
bluestore block path = {workdir}/osd/$id.block
bluestore block create = true
bluestore block size = {BLOCK_BYTES}
bluestore block db create = false
bluestore block wal create = false
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw}
rgw data = {workdir}/rgw
rgw enable usage log = false
"""


def _run(argv: list[str], workdir: Path, timeout: float = 120.0) -> str:
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise CephUnavailable(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def ceph_server(timeout: float = 180.0) -> Iterator[dict[str, str]]:
    """Start mon, OSD and RGW with one user and one bucket; yields the settings a client needs
    (as tests/support/seaweedfs.py does), plus ``startup_seconds`` and ``stages`` (cumulative
    seconds at the end of each step)."""
    bins = binaries()
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="byterange-ceph-"))
    for sub in ("run", "log", "mon/ceph-a", "osd/0", "rgw"):
        (workdir / sub).mkdir(parents=True)
    fsid = str(uuid.uuid4())
    mon_v2, mon_v1, rgw = _free_ports(3)
    conf = workdir / "ceph.conf"
    conf.write_text(_config(workdir, fsid, mon_v2, mon_v1, rgw))
    c = ["-c", str(conf)]
    processes: list[subprocess.Popen[bytes]] = []
    stages: list[str] = []

    def stage(name: str) -> None:
        stages.append(f"{name} {time.monotonic() - began:.1f}s")

    def daemon(argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(workdir / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the child holds it
        process = subprocess.Popen(
            [*argv, *c, "-f"], stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
        log.close()
        processes.append(process)
        return process

    def alive() -> None:
        for process in processes:
            if process.poll() is not None:
                tails = {p.name: p.read_text()[-1500:] for p in (workdir / "log").glob("*") if p.is_file()}
                raise CephUnavailable(f"a Ceph daemon exited ({process.args[0]}): {tails}")

    try:
        monmap = workdir / "monmap"
        _run([bins["monmaptool"], "--create", "--fsid", fsid,
              "--addv", "a", f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]", str(monmap)], workdir)
        _run([bins["ceph-mon"], *c, "--mkfs", "-i", "a", "--monmap", str(monmap)], workdir)
        daemon([bins["ceph-mon"], "-i", "a"], "mon")
        stage("mon")
        osd_uuid = str(uuid.uuid4())
        # `ceph osd new` waits for the monitor's quorum (the CLI retries until it answers).
        osd_id = _run([bins["ceph"], *c, "--connect-timeout", "120", "osd", "new", osd_uuid], workdir).strip()
        if osd_id != "0":
            raise CephUnavailable(f"unexpected OSD id {osd_id!r}")
        _run([bins["ceph-osd"], *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], workdir, timeout=120)
        stage("osd mkfs")
        daemon([bins["ceph-osd"], "-i", "0"], "osd")
        daemon([bins["radosgw"], "-n", "client.rgw.a"], "rgw")
        _run([bins["radosgw-admin"], *c, "user", "create", "--uid=tests", "--display-name=tests",
              f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}"], workdir, timeout=120)
        stage("user")
        endpoint = f"http://127.0.0.1:{rgw}"
        s3client = client(endpoint)
        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                s3client.create_bucket(Bucket=BUCKET)
                s3client.put_object(Bucket=BUCKET, Key="probe", Body=b"x")
                s3client.delete_object(Bucket=BUCKET, Key="probe")
                break
            except Exception as exc:  # not up yet
                if time.monotonic() > deadline:
                    raise CephUnavailable(f"RGW did not answer: {exc}") from exc
                time.sleep(0.5)
        stage("bucket")
        yield {
            "endpoint": endpoint,
            "bucket": BUCKET,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "workdir": str(workdir),
            "startup_seconds": f"{time.monotonic() - began:.1f}",
            "stages": ", ".join(stages),
        }
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def client(endpoint: str) -> Any:
    """A boto3 client with this cluster's keys."""
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
