"""Authentication on a real gunicorn (SQLite and PostgreSQL): our client and the ``byterange``
command with a bearer token, a browser-style upload through a signed URL minted by
``byterange-server sign``, tuspy through a signed URL, and the refusals a foreign caller meets.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tusclient import client as tus_client

from byterange_server.client import ServerRefused
from byterange_server.client import download
from byterange_server.client import upload

from .conftest import GunicornServer
from .conftest import running

MiB = 1024 * 1024
ALICE = "alice-e2e-secret-0123456789"
BOB = "bob-e2e-secret-0123456789ab"
KEY = "web-e2e-key-0123456789abcdef"
CREDENTIALS = {
    "BYTERANGE_AUTH": "required",
    "BYTERANGE_TOKENS": f"alice:{ALICE},bob:{BOB}",
    "BYTERANGE_SIGNING_KEYS": f"web:{KEY}",
}


@pytest.fixture
def server(database_url: str, tmp_path: Path):
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=CREDENTIALS)) as started:
        yield started


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(6 * MiB + 12345))
    return path


def sign(url: str, *args: str) -> str:
    env = {**os.environ, **CREDENTIALS}
    command = [sys.executable, "-m", "byterange_server.cli", "sign", url, *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_our_client_with_a_token_and_others_refused(server, source, tmp_path):
    token = {"Authorization": f"Bearer {ALICE}"}
    result = upload(source, server.url, headers=token, parallel=4, segment_size=MiB, resume=False)
    fetched = download(result.url, tmp_path / "back.bin", headers=token, parallel=3)
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert fetched.verified
    with pytest.raises(ServerRefused) as refused:
        download(result.url, tmp_path / "stolen.bin", headers={"Authorization": f"Bearer {BOB}"})
    assert "403" in str(refused.value)
    with pytest.raises(ServerRefused) as anonymous:
        upload(source, server.url, resume=False)
    assert "401" in str(anonymous.value)


def test_the_command_takes_the_token_from_the_environment(server, source, tmp_path):
    env = {**os.environ, "BYTERANGE_TOKEN": ALICE, "BYTERANGE_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "byterange_server.client.cli", "upload", "-q", str(source), server.url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    got = requests.get(url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(source.read_bytes()).digest()
    env.pop("BYTERANGE_TOKEN")
    refused = subprocess.run(command[:-2] + [str(source), server.url, "--no-resume"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 4 and "401" in refused.stderr


def test_a_browser_style_upload_through_a_minted_url(server, source, tmp_path):
    """The backend mints, the browser holds no secret: POST the signed URL, then only the
    signed Location it was given -- with our client, in parallel."""
    minted = sign(server.url, "--methods", "POST", "--expires-in", "10m", "--max-size", "7MiB")
    result = upload(source, minted, parallel=4, segment_size=MiB, resume=False)
    assert "br-sig=" in result.url
    assert requests.get(result.url, timeout=30).content == source.read_bytes()
    # The same URL again: the same resource, not a second one.
    again = requests.post(minted, headers={"Upload-Length": str(source.stat().st_size)}, timeout=10)
    assert again.status_code == 200 and again.headers["Location"] == result.url
    # The signature is the resource's only: on another path it is worth nothing.
    other = requests.post(server.url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=10)
    forged = urlsplit(other.headers["Location"]).path + "?" + urlsplit(result.url).query
    replay = requests.head(f"http://127.0.0.1:{server.port}{forged}", timeout=10)
    assert replay.status_code == 401
    # Its size cap holds: a file larger than max-size is refused before a byte is stored.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * MiB))
    with pytest.raises(ServerRefused) as refused:
        upload(big, sign(server.url, "--max-size", "7MiB", "--expires-in", "599"), resume=False)
    assert "413" in str(refused.value)


def test_tuspy_through_a_signed_url(server, tmp_path):
    data = os.urandom(3 * MiB + 7)
    path = tmp_path / "tus.bin"
    path.write_bytes(data)
    minted = sign(server.url, "--methods", "POST", "--max-size", "4MiB")
    uploader = tus_client.TusClient(minted).uploader(str(path), chunk_size=MiB)
    uploader.upload()
    assert "br-sig=" in uploader.url
    assert requests.get(uploader.url, timeout=30).content == data


def test_the_default_quota_stops_the_audits_allocations(server):
    """Audit: 50,491 allocations declaring 1 TiB each in 120 s. With the default
    quota (16 TiB declared per principal) the 17th is refused; other principals are not."""
    token = {"Authorization": f"Bearer {ALICE}", "Upload-Length": str(1024**4)}
    for _ in range(16):
        assert requests.post(server.url, headers=token, timeout=10).status_code == 201
    refused = requests.post(server.url, headers=token, timeout=10)
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["type"].endswith("quota-exceeded") and body["bytes"] == 16 * 1024**4
    assert body["max-bytes"] == 16 * 1024**4 and body["max-resources"] == 10_000
    bob = {"Authorization": f"Bearer {BOB}", "Upload-Length": str(1024**4)}
    assert requests.post(server.url, headers=bob, timeout=10).status_code == 201


def test_tus_concatenation_through_signed_urls(server):
    """Each partial is created through a URL minted for it; the final names the partials by the
    signed Locations they were given. Someone holding only a URL signed with the same key, and
    a partial's id (it shows in logs and Upload-Concat), gets nothing."""
    tus = {"Tus-Resumable": "1.0.0"}
    octets = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    locations = []
    for piece in (b"first half, ", b"second half"):
        created = requests.post(sign(server.url, "--max-size", "1KiB"), timeout=10, headers={
            **tus, "Upload-Concat": "partial", "Upload-Length": str(len(piece))})
        assert created.status_code == 201, created.text
        locations.append(created.headers["Location"])
        wrote = requests.patch(created.headers["Location"], data=piece, headers=octets, timeout=10)
        assert wrote.status_code == 204
    ids = [urlsplit(location).path for location in locations]
    stolen = requests.post(sign(server.url), timeout=10,
                           headers={**tus, "Upload-Concat": "final;" + " ".join(ids)})
    assert stolen.status_code == 403 and stolen.json()["type"].endswith("partial-not-readable"), stolen.text
    final = requests.post(sign(server.url), timeout=10, headers={
        **tus, "Upload-Concat": "final;" + " ".join(locations)})
    assert final.status_code == 201, final.text
    assert requests.get(final.headers["Location"], timeout=10).content == b"first half, second half"
    # The owner of a partial deleting it takes the final (another grant's) with it.
    assert requests.delete(locations[0], headers=tus, timeout=10).status_code == 204
    assert requests.head(final.headers["Location"], timeout=10).status_code == 404
