"""The browser uploader's pages: where they are served, when, and with which headers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from byterange_server import create_app
from byterange_server.api.uploader import STATIC
from byterange_server.config import SettingError
from byterange_server.config import Settings

TOKENS = "alice:alice-secret-0123456789"


def app_with(settings_overrides: dict[str, Any], **overrides: str) -> Any:
    app = create_app({**settings_overrides, **overrides})
    app.config["TESTING"] = True
    return app


@pytest.fixture
def pages(settings_overrides):
    app = app_with(settings_overrides)
    yield app.test_client()
    app.extensions["byterange"].db.dispose()


def test_the_uploader_is_on_by_default_without_authentication(pages):
    response = pages.get("/upload")
    assert response.status_code == 200 and response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert '<meta name="byterange-endpoint" content="/files">' in body
    assert '<script type="module" src="/upload/uploader.js"></script>' in body
    assert pages.get("/upload/status?url=/files/x").status_code == 200


@pytest.mark.parametrize(("overrides", "served"), [
    ({"AUTH": "required", "TOKENS": TOKENS}, False),
    ({"AUTH": "required", "TOKENS": TOKENS, "UPLOADER": "on"}, True),
    ({"AUTH": "off", "UPLOADER": "off"}, False),
    ({"AUTH": "off", "UPLOADER": "Auto"}, True),
])
def test_whether_the_uploader_is_served(settings_overrides, overrides, served):
    app = app_with(settings_overrides, **overrides)
    try:
        client = app.test_client()
        assert client.get("/upload").status_code == (200 if served else 404)
        assert client.get("/upload/byterange.js").status_code == (200 if served else 404)
    finally:
        app.extensions["byterange"].db.dispose()


def test_the_path_is_configurable(settings_overrides):
    app = app_with(settings_overrides, UPLOADER_PATH="web/send/")
    try:
        client = app.test_client()
        assert client.get("/upload").status_code == 404
        page = client.get("/web/send").get_data(as_text=True)
        assert 'src="/web/send/uploader.js"' in page and 'content="/web/send"' in page
        assert client.get("/web/send/extentmap.js").status_code == 200
    finally:
        app.extensions["byterange"].db.dispose()


def test_the_uploader_may_be_the_root_page(settings_overrides):
    app = app_with(settings_overrides, UPLOADER_PATH="/")
    try:
        client = app.test_client()
        page = client.get("/").get_data(as_text=True)
        assert 'src="/uploader.js"' in page
        assert client.get("/status").status_code == 200 and client.get("/byterange.js").status_code == 200
        assert client.options("/files").status_code == 204 and client.get("/metrics").status_code == 200
    finally:
        app.extensions["byterange"].db.dispose()


@pytest.mark.parametrize("path", ["/files", "/files/up", "/metrics", "/metrics/x"])
def test_a_path_that_would_hide_the_api_is_refused(settings_overrides, path):
    with pytest.raises(ValueError, match="BYTERANGE_UPLOADER_PATH"):
        create_app({**settings_overrides, "UPLOADER_PATH": path})


def test_a_bad_uploader_value_names_the_variable():
    with pytest.raises(SettingError, match="BYTERANGE_UPLOADER='maybe'"):
        Settings.from_env({"BYTERANGE_UPLOADER": "maybe"})


def test_pages_carry_a_strict_content_security_policy(pages):
    for url in ("/upload", "/upload/status"):
        headers = pages.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        assert headers["Referrer-Policy"] == "no-referrer"  # page URLs may hold a signed URL
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_no_page_has_inline_script_or_style():
    for page in STATIC.iterdir():
        if page.name.endswith(".html"):
            text = page.read_text()
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page.name
            assert " style=" not in text and "<style" not in text and " on" + "click=" not in text, page.name


def test_modules_are_importable_from_other_origins(pages):
    response = pages.get("/upload/byterange.js", headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "export async function upload(" in response.get_data(as_text=True)


@pytest.mark.parametrize("name", ["index.html", "status.html", "nope.js", "..%2Fconfig.py", ".hidden.js"])
def test_only_modules_and_the_style_sheet_are_assets(pages, name):
    response = pages.get(f"/upload/{name}")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
