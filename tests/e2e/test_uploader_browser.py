"""The browser uploader in real headless Chromium (SQLite, PostgreSQL), driven over the DevTools
protocol (tests/e2e/cdp.py).

The main test uploads 32 MiB as 4 parallel segments through a bandwidth-limited proxy, stops
gunicorn mid-way (its grace commits what each write received), restarts it, loads the page
again, chooses the same file, and the upload resumes with only the missing bytes: the server's
sha-256 is exact. At each step the extent map the page shows is the one the server reports
(committed ranges from HEAD, in flight from the committed-ranges document).

A second test imports ``byterange.js`` from another origin (CORS) into a page that holds
nothing but a signed creation URL, pauses the upload with an AbortSignal and resumes it.

With ``BYTERANGE_SCREENSHOTS=<dir>`` the pages' screenshots are written there:
``python -m tests.e2e.screenshots`` regenerates docs/images/ that way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from urllib.parse import urlencode

import pytest
import requests

from byterange_server.auth.signing import signed_url

from ..support.faultproxy import FaultProxy
from ..support.pages import PageServer
from .cdp import Browser
from .conftest import GunicornServer
from .conftest import MiB
from .conftest import parse_committed_ranges
from .conftest import running

#: The client is what these tests exercise; the server's behaviour on both databases is the API and
#: server end-to-end suites' job. Once, on SQLite, keeps CI inside its 30 minutes.
ONLY_DATABASES = ("sqlite",)

pytestmark = pytest.mark.e2e

SIZE = 32 * MiB
RATE = 2 * MiB  # bytes per second through the proxy: the upload takes ~16 s, time to stop it
IMPORT_PAGE = Path(__file__).resolve().with_name("uploader_import_page.html")


def shots_dir() -> Path | None:
    value = os.environ.get("BYTERANGE_SCREENSHOTS")
    return Path(value) if value else None


def screenshot(browser: Browser, name: str, tmp_path: Path) -> None:
    browser.screenshot((shots_dir() or tmp_path / "shots") / name)


def fmt(ranges: list[tuple[int, int]]) -> str:
    """Inclusive pairs as the page's data attributes show them."""
    return ",".join(f"{first}-{last}" for first, last in ranges) or "none"


def server_map(url: str) -> dict[str, object]:
    """What the server reports of a resource: HEAD's Committed-Ranges, and the document's
    in_flight (both straight from gunicorn, not through the proxy)."""
    head = requests.head(url, timeout=30)
    assert head.status_code == 200, head.status_code
    committed = parse_committed_ranges(head.headers.get("Committed-Ranges"))
    assert committed is not None
    document = requests.get(url + "/committed-ranges", timeout=30).json()
    return {
        "committed": fmt(committed),
        "ranges": committed,
        "in_flight": [tuple(pair) for pair in document["in_flight"]],
        "complete": head.headers.get("Upload-Complete") == "?1",
    }


def page_map(browser: Browser, selector: str) -> dict[str, str]:
    return browser.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " return e ? {committed: e.dataset.committed, inFlight: e.dataset.inFlight,"
        " length: e.dataset.length} : null; })()"
    )


def wait_map_matches_server(browser: Browser, selector: str, url: str, timeout: float = 60) -> dict:
    """Until the page's map shows the committed ranges the server reports (polled both sides)."""
    deadline = time.monotonic() + timeout
    while True:
        server = server_map(url)
        shown = page_map(browser, selector)
        if shown and shown["committed"] == server["committed"]:
            return server
        if time.monotonic() > deadline:
            raise AssertionError(f"map {shown} never showed the server's {server}")
        time.sleep(0.2)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(20261203).randbytes(SIZE)
    path = tmp_path / "upload-32m.bin"
    path.write_bytes(data)
    return path, data


def test_uploader_survives_a_server_restart_and_a_reload(
    database_url: str, tmp_path: Path, chromium: str, source: tuple[Path, bytes]
) -> None:
    path, data = source
    server = GunicornServer(database_url, tmp_path / "server", workers=2, threads=8,
                            extra_env={"BYTERANGE_AUTH": "off", "BYTERANGE_SHUTDOWN_GRACE": "0.5"})
    with running(server), FaultProxy("127.0.0.1", server.port, rate_limit=RATE) as proxy, \
            Browser(chromium, tmp_path / "profile") as browser:
        page = proxy.url_for("/upload?parallel=4&segment=8")
        browser.navigate(page)
        browser.wait_for("document.body.dataset.ready === 'true'")
        browser.set_files("#files", [path])
        item = "#list li.file"
        shown_url = browser.wait_for(f"document.querySelector('{item}')?.dataset.url", what="resource URL")
        url = shown_url.replace(f":{proxy.port}/", f":{server.port}/")

        # 1. Mid-way: four writers hold the four 8 MiB segments; the map agrees with the server.
        deadline = time.monotonic() + 60
        while True:
            state = server_map(url)
            if len(state["in_flight"]) == 1 and proxy.stats.bytes_from_clients >= 8 * MiB:
                break  # four adjacent reservations merge into one range: [0, 32 MiB)
            assert time.monotonic() < deadline, (state, proxy.stats)
            time.sleep(0.1)
        assert state["in_flight"] == [(0, SIZE - 1)], state
        wait_map_matches_server(browser, f"{item} .extent-map", url)
        browser.wait_for(f"document.querySelector('{item} .extent-map').dataset.inFlight !== 'none'")
        screenshot(browser, "uploader-uploading.png", tmp_path)

        # 2. Stop gunicorn: each cut write commits the prefix it received.
        server.stop()
        browser.wait_for(f"document.querySelector('{item}').dataset.state === 'retrying'", what="retrying")
        browser.navigate("about:blank")  # the tab leaves: no retry reaches the new server early
        server.start()
        before = server_map(url)
        ranges = before["ranges"]
        assert before["in_flight"] == [] and not before["complete"], before
        # Some of every segment arrived, none completely (the proxy let through 2 MiB/s).
        assert len(ranges) == 4 and [first for first, _ in ranges] == [0, 8 * MiB, 16 * MiB, 24 * MiB], ranges
        missing = SIZE - sum(last - first + 1 for first, last in ranges)
        assert 0 < missing < SIZE

        # 3. The page again: it remembers the upload and shows the server's map of it.
        browser.navigate(page)
        browser.wait_for("document.body.dataset.ready === 'true'")
        remembered = "#remembered-list li.file"
        assert browser.evaluate(f"document.querySelector('{remembered}').dataset.url") == shown_url
        assert page_map(browser, f"{remembered} .extent-map")["committed"] == before["committed"]
        screenshot(browser, "uploader-remembered.png", tmp_path)

        # The status page of the resource shows the same.
        browser.navigate(proxy.url_for(f"/upload/status?url={quote(shown_url, safe='')}"))
        browser.wait_for("document.body.dataset.ready === 'true'")
        assert page_map(browser, "#map")["committed"] == before["committed"]
        assert browser.evaluate("document.querySelector('#complete').textContent") == "no"
        screenshot(browser, "status-incomplete.png", tmp_path)

        # 4. Choose the same file: it resumes, sending only what is missing.
        browser.navigate(page)
        browser.wait_for("document.body.dataset.ready === 'true'")
        proxy.reset_stats()
        browser.set_files("#files", [path])
        browser.wait_for(f"document.querySelector('{item}')?.dataset.state === 'done'", timeout=120,
                         what="upload done")
        assert browser.evaluate(f"document.querySelector('{item} .status').textContent") == "done (resumed)"
        assert browser.evaluate(f"document.querySelector('{item}').dataset.url") == shown_url
        sent = proxy.stats.bytes_from_clients
        assert missing <= sent < missing + 256 * 1024, (missing, sent)
        after = wait_map_matches_server(browser, f"{item} .extent-map", url)
        assert after["committed"] == f"0-{SIZE - 1}" and after["complete"], after
        assert browser.evaluate("document.querySelector('#remembered-list').children.length") == 0
        overall = browser.evaluate("document.querySelector('#overall-text').textContent")
        assert overall.startswith("1 of 1 files"), overall
        screenshot(browser, "uploader-done.png", tmp_path)
        response, digest = server.sha256_of(url)
        assert response.status_code == 200
        assert digest == hashlib.sha256(data).hexdigest()
        assert browser.evaluate("localStorage.length") == 0  # a finished upload is forgotten

        browser.navigate(proxy.url_for(f"/upload/status?url={quote(shown_url, safe='')}"))
        browser.wait_for("document.body.dataset.ready === 'true'")
        assert page_map(browser, "#map")["committed"] == f"0-{SIZE - 1}"
        screenshot(browser, "status-complete.png", tmp_path)
        assert not [line for line in browser.console if "Error" in line], browser.console


# -- byterange.js imported by another origin's page, with a signed URL ---------------------------


SIGNING_KEY = "uploader-browser-key-0123456789"


@contextlib.contextmanager
def import_setup(
    database_url: str, tmp_path: Path, data: bytes
) -> Iterator[tuple[GunicornServer, PageServer]]:
    page = PageServer(IMPORT_PAGE, data)
    server = GunicornServer(database_url, tmp_path / "server", workers=1, threads=8, extra_env={
        "BYTERANGE_AUTH": "required", "BYTERANGE_SIGNING_KEYS": f"web:{SIGNING_KEY}",
        "BYTERANGE_CORS_ORIGINS": page.origin, "BYTERANGE_UPLOADER": "on",
    })
    try:
        with running(server):
            yield server, page
    finally:
        page.close()


def test_another_origin_imports_the_module_and_uploads_with_a_signed_url(
    database_url: str, tmp_path: Path, chromium: str
) -> None:
    data = random.Random(20261204).randbytes(3 * MiB + 1234)
    with import_setup(database_url, tmp_path, data) as (server, page), \
            Browser(chromium, tmp_path / "profile") as browser:
        minted = signed_url(server.url, key_id="web", secret=SIGNING_KEY.encode(), methods={"POST"},
                            expires=int(time.time()) + 600, max_size=len(data))
        query = urlencode({"module": f"{server.base}/upload/byterange.js", "create": minted})
        browser.navigate(f"{page.origin}/page.html?{query}")
        assert page.reported.wait(90), browser.console
        report = page.reports[-1]
        assert report.get("ok"), report
        # Paused at a third, then resumed from what the server had committed.
        assert report["paused"] == "AbortError" and report["resumed"] is True, report
        assert report["sameUrlAfterPause"] is True and report["remembered"] == 1, report
        assert 0 < report["committedAtPause"] < len(data), report
        assert report["committed"] == [[0, len(data)]] and report["complete"] is True, report
        url = report["url"]
        assert "br-sig=" in url and url.startswith(server.url + "/"), url
        assert requests.get(url, timeout=30).content == data
        assert requests.get(url.split("?")[0], timeout=30).status_code == 401  # the signature is the key
