"""The pre-create hook, through the real HTTP API (SQLite and PostgreSQL): a refusal is a 403
problem and leaves nothing behind for byte-range POST, tus creation (also a final upload) and
IETF creation; an unavailable hook refuses with 503 + Retry-After unless failing open; the HTTP
form against a real receiver."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func
from sqlalchemy import select

from byterange_server import create_app
from byterange_server.db.models import resources
from byterange_server.hooks import verify_signature

from . import deciders
from .receiver import closed_port_url
from .receiver import receiving

MOUNT = "/files"
TUS = {"Tus-Resumable": "1.0.0"}
IETF = {"Upload-Draft-Interop-Version": "8", "Upload-Complete": "?0"}


@pytest.fixture(autouse=True)
def _reset_decider():
    deciders.verdict = "allow"
    deciders.seen.clear()
    yield
    deciders.verdict = "allow"


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "HOOK_PRE_CREATE": "tests.hooks.deciders:decide"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def count(service) -> int:
    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


def objects(service_settings) -> list:
    root = service_settings.resolved_storage_dir
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


CREATIONS = {
    "byterange": lambda client: client.post(MOUNT, headers={"Upload-Length": "10"}),
    "tus": lambda client: client.post(
        MOUNT, headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "filename " + b64(b"a.txt")}
    ),
    "tus-with-upload": lambda client: client.post(
        MOUNT,
        headers={**TUS, "Upload-Length": "10", "Content-Type": "application/offset+octet-stream"},
        data=b"0123456789",
    ),
    "ietf": lambda client: client.post(MOUNT, headers={**IETF, "Upload-Length": "10"}, data=b"01234"),
}


@pytest.mark.parametrize("how", sorted(CREATIONS))
def test_a_refusal_is_403_and_nothing_is_created(client, service, how) -> None:
    deciders.verdict = "refuse"
    response = CREATIONS[how](client)
    assert response.status_code == 403, response.get_data()
    document = response.get_json()
    assert document["type"].endswith("creation-rejected")
    assert document["reason"] == "no uploads of 10 bytes"
    assert "Location" not in response.headers
    assert count(service) == 0
    assert objects(service.settings) == []
    assert deciders.seen[0].protocol == how.split("-")[0]


@pytest.mark.parametrize("how", sorted(CREATIONS))
def test_an_allowed_creation_proceeds_and_the_hook_saw_the_request(client, service, how) -> None:
    response = CREATIONS[how](client)
    assert response.status_code == 201, response.get_data()
    assert count(service) == 1
    (request,) = deciders.seen
    assert request.protocol == how.split("-")[0]
    assert request.length == 10
    assert request.client_address == "127.0.0.1"
    if how == "tus":
        assert request.metadata == {"filename": "a.txt"}


def test_returning_false_refuses_without_a_reason(client, service) -> None:
    deciders.verdict = "false"
    response = client.post(MOUNT, headers={"Upload-Length": "3"})
    assert response.status_code == 403
    assert "reason" not in response.get_json()
    assert count(service) == 0


def test_a_tus_final_upload_is_asked_too(client, service) -> None:
    partial = client.post(MOUNT, headers={**TUS, "Upload-Length": "2", "Upload-Concat": "partial"})
    assert partial.status_code == 201
    deciders.verdict = "refuse"
    final = client.post(MOUNT, headers={**TUS, "Upload-Concat": "final;" + partial.headers["Location"]})
    assert final.status_code == 403
    assert deciders.seen[-1].concat == "final"
    assert count(service) == 1


def test_a_crashing_hook_fails_closed_by_default(client, service, caplog) -> None:
    deciders.verdict = "crash"
    response = client.post(MOUNT, headers={"Upload-Length": "3"})
    assert response.status_code == 503
    assert response.get_json()["type"].endswith("creation-hook-unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert count(service) == 0
    assert "the hook has a bug" in caplog.text


def _app(settings_overrides, **hook):
    app = create_app({**settings_overrides, **hook})
    app.config["TESTING"] = True
    return app


def test_a_crashing_hook_fails_open_when_configured(settings_overrides) -> None:
    deciders.verdict = "crash"
    app = _app(settings_overrides, HOOK_PRE_CREATE_FAIL_OPEN="true")
    try:
        response = app.test_client().post(MOUNT, headers={"Upload-Length": "3"})
        assert response.status_code == 201
    finally:
        app.extensions["byterange"].db.dispose()


def test_the_http_form_allows_refuses_and_is_signed(settings_overrides) -> None:
    def answer(request):
        upload = request.json()["upload"]
        if upload["length"] == 13:
            return 422, {"reason": "unlucky length"}
        return 204

    with receiving(answer) as receiver:
        app = _app(settings_overrides, HOOK_PRE_CREATE=receiver.url, HOOK_SECRET="s3cret")
        try:
            client = app.test_client()
            allowed = client.post(MOUNT, headers={"Upload-Length": "12", "Content-Type": "text/plain"})
            refused = client.post(MOUNT, headers={**TUS, "Upload-Length": "13"})
            assert allowed.status_code == 201
            assert refused.status_code == 403
            assert refused.get_json()["reason"] == "unlucky length"
            assert count(app.extensions["byterange"]) == 1
        finally:
            app.extensions["byterange"].db.dispose()
    first, second = receiver.requests
    assert verify_signature("s3cret", first.body, first.headers["byterange-signature"])
    assert not verify_signature("other", first.body, first.headers["byterange-signature"])
    document = json.loads(first.body)
    assert document["type"] == "pre-create"
    assert document["upload"]["protocol"] == "byterange"
    assert document["upload"]["content_type"] == "text/plain"
    assert second.json()["upload"]["protocol"] == "tus"


@pytest.mark.parametrize("fail_open", [False, True])
@pytest.mark.parametrize("failure", ["refused", "500", "timeout"])
def test_an_unreachable_http_hook(settings_overrides, fail_open, failure) -> None:
    import threading

    release = threading.Event()

    def answer(request):
        if failure == "timeout":
            release.wait(5)
        return 500

    with receiving(answer) as receiver:
        url = closed_port_url() if failure == "refused" else receiver.url
        app = _app(
            settings_overrides,
            HOOK_PRE_CREATE=url,
            HOOK_PRE_CREATE_TIMEOUT="0.3",
            HOOK_PRE_CREATE_FAIL_OPEN=str(fail_open),
        )
        try:
            response = app.test_client().post(MOUNT, headers={"Upload-Length": "3"})
            release.set()
            if fail_open:
                assert response.status_code == 201
                assert count(app.extensions["byterange"]) == 1
            else:
                assert response.status_code == 503
                assert "Retry-After" in response.headers
                assert count(app.extensions["byterange"]) == 0
        finally:
            release.set()
            app.extensions["byterange"].db.dispose()
