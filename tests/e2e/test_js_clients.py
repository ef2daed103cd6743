"""tus-js-client under Node, as an application runs it, against real gunicorn (SQLite and
PostgreSQL): tus with parallelUploads (concatenation) and the IETF draft (protocol
``ietf-draft-05``, which sends interop version 6). Each upload is read back byte for byte.

The client is pinned in tests/e2e/js/package.json and package-lock.json; the ``js_clients``
fixture runs ``npm ci`` there when node_modules is missing. Node and npm are required: these
tests fail, not skip, without them.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from byterange_server.auth.signing import signed_url

from .conftest import GunicornServer
from .conftest import MiB
from .conftest import running

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().with_name("js")


@pytest.fixture(scope="session")
def js_clients() -> Path:
    """tests/e2e/js with its node_modules installed exactly as the lock file says."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the JavaScript client tests (Node 18 or later)")
    if not (JS_DIR / "node_modules" / "tus-js-client" / "package.json").exists():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {JS_DIR}:\n{result.stdout}\n{result.stderr}")
    return JS_DIR


def run_upload(js_dir: Path, endpoint: str, source: Path, protocol: str, parallel: int, chunk: int,
               creation_urls: Path | None = None) -> dict:
    argv = ["node", str(js_dir / "upload.cjs"), endpoint, str(source), protocol, str(parallel), str(chunk)]
    if creation_urls is not None:
        argv.append(str(creation_urls))
    result = subprocess.run(
        argv,
        cwd=js_dir, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"tus-js-client failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(20261130).randbytes(3 * MiB + 4321)
    path = tmp_path / "js-source.bin"
    path.write_bytes(data)
    return path, data


def test_tus_js_client_parallel_uploads(gunicorn_server: GunicornServer, js_clients: Path, source):
    path, data = source
    report = run_upload(js_clients, gunicorn_server.url, path, "tus-v1", 4, 512 * 1024)
    posts = [r for r in report["requests"] if r["method"] == "POST"]
    partials = [r for r in posts if r["concat"] == "partial"]
    finals = [r for r in posts if (r["concat"] or "").startswith("final;")]
    assert len(partials) == 4 and len(finals) == 1, report["requests"]
    assert all(r["tus"] == "1.0.0" and r["status"] in (201, 204) for r in report["requests"])
    final = requests.head(report["url"], headers={"Tus-Resumable": "1.0.0"}, timeout=30)
    assert final.headers["Upload-Offset"] == str(len(data))
    assert final.headers["Upload-Concat"].startswith("final;")
    response, digest = gunicorn_server.sha256_of(report["url"])
    assert response.status_code == 200 and digest == hashlib.sha256(data).hexdigest()


def test_tus_js_client_ietf_draft_05(gunicorn_server: GunicornServer, js_clients: Path, source):
    path, data = source
    report = run_upload(js_clients, gunicorn_server.url, path, "ietf-draft-05", 1, MiB)
    sent = report["requests"]
    # tus-js-client's "ietf-draft-05" is interop version 6, and sends no tus header.
    assert {r["interop"] for r in sent} == {"6"} and {r["tus"] for r in sent} == {None}, sent
    assert [r["method"] for r in sent] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"], sent
    assert sent[0]["complete"] == "?0" and sent[0]["status"] == 201  # the 104 before it was skipped
    patches = sent[1:]
    assert all(r["contentType"] == "application/partial-upload" for r in patches)
    assert [r["complete"] for r in patches] == ["?0", "?0", "?0", "?1"]
    assert all(r["status"] == 204 for r in patches)
    assert patches[-1]["uploadComplete"] == "?1"
    url = report["url"]
    head = requests.head(url, headers={"Upload-Draft-Interop-Version": "6"}, timeout=30)
    assert head.headers["Upload-Complete"] == "?1" and head.headers["Upload-Offset"] == str(len(data))
    response, digest = gunicorn_server.sha256_of(url)
    assert response.status_code == 200 and digest == hashlib.sha256(data).hexdigest()
    ranged = requests.get(url, headers={"Range": "bytes=1048570-1048585"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[1048570:1048586]
    assert urlsplit(url).path.startswith("/files/")


def test_tus_js_client_through_a_signed_url(database_url, tmp_path, js_clients: Path, source):
    """tus-js-client with nothing but a signed creation URL (auth required): it keeps the query
    of the signed Location the server answers with, for every PATCH and HEAD."""
    key = "js-signing-key-0123456789abcdef"
    env = {"BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{key}"}
    path, data = source
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=env)) as server:
        minted = signed_url(server.url, key_id="web", secret=key.encode(), methods={"POST"},
                            expires=int(time.time()) + 600, max_size=len(data))
        report = run_upload(js_clients, minted, path, "tus-v1", 1, MiB)
        assert "br-sig=" in report["url"]
        assert {r["status"] for r in report["requests"]} <= {201, 204}, report["requests"]
        assert requests.get(report["url"], timeout=30).content == data
        assert requests.head(report["url"].split("?")[0], timeout=30).status_code == 401


def test_tus_js_client_parallel_uploads_through_signed_urls(database_url, tmp_path, js_clients: Path, source):
    """parallelUploads (tus concatenation) with nothing but signed URLs: the backend mints one
    creation URL per resource (4 partials, 1 final), the client creates each through its own, and
    the final names the partials by their signed Locations, which prove the right to read them."""
    key = "js-signing-key-0123456789abcdef"
    env = {"BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{key}"}
    path, data = source
    with running(GunicornServer(database_url, tmp_path / "server", extra_env=env)) as server:
        minted = [
            signed_url(server.url, key_id="web", secret=key.encode(), methods={"POST"},
                       expires=int(time.time()) + 600, max_size=len(data))
            for _ in range(5)
        ]
        urls = tmp_path / "creation-urls.json"
        urls.write_text(json.dumps(minted))
        report = run_upload(js_clients, server.url, path, "tus-v1", 4, 512 * 1024, urls)
        posts = [r for r in report["requests"] if r["method"] == "POST"]
        assert sorted(r["url"] for r in posts) == sorted(minted), report["requests"]
        final = next(r for r in posts if (r["concat"] or "").startswith("final;"))
        assert final["status"] == 201 and final["concat"].count("br-sig=") == 4, final
        assert {r["status"] for r in report["requests"]} <= {201, 204}, report["requests"]
        assert "br-sig=" in report["url"]
        assert requests.get(report["url"], timeout=30).content == data
        # The same partials named without their signatures: nobody else may concatenate them.
        bare = " ".join(urlsplit(url).path for url in final["concat"][len("final;"):].split(" "))
        stolen = requests.post(
            signed_url(server.url, key_id="web", secret=key.encode(), methods={"POST"},
                       expires=int(time.time()) + 600, max_size=len(data)),
            headers={"Tus-Resumable": "1.0.0", "Upload-Concat": f"final;{bare}"}, timeout=30,
        )
        assert stolen.status_code == 403, stolen.text
