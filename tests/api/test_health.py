"""``GET /healthz``: pass when the database and the storage answer, fail (503) naming which not."""

from __future__ import annotations

import json
from typing import Any

from byterange_server import create_app


def body_of(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/health+json"
    assert response.headers["Cache-Control"] == "no-store"
    return json.loads(response.data)


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = body_of(response)
    assert body["status"] == "pass"
    for name in ("database", "storage"):
        (check,) = body["checks"][name]
        assert check["status"] == "pass" and check["observedUnit"] == "ms" and check["observedValue"] >= 0
    assert client.head("/healthz").status_code == 200


def test_failing_storage_is_503_and_named(settings_overrides):
    app = create_app({**settings_overrides, "STORAGE": "memory"})
    try:
        app.extensions["byterange"].storage.healthy = False
        response = app.test_client().get("/healthz")
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        body = body_of(response)
        assert body["status"] == "fail"
        assert body["checks"]["storage"][0] == {**body["checks"]["storage"][0], "status": "fail",
                                                 "output": "storage unavailable"}
        assert body["checks"]["database"][0]["status"] == "pass"
    finally:
        app.extensions["byterange"].db.dispose()


def test_unreachable_database_is_503_without_internals(tmp_path):
    unusable = tmp_path / "a-directory-not-a-database"
    unusable.mkdir()
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{unusable}", "DATA_DIR": str(tmp_path / "data"), "AUTH": "off"}
    )
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        body = body_of(response)
        assert body["checks"]["database"][0]["status"] == "fail"
        assert body["checks"]["storage"][0]["status"] == "pass"
        assert str(tmp_path) not in response.get_data(as_text=True)  # no paths, no SQL
    finally:
        app.extensions["byterange"].db.dispose()


def test_health_is_outside_the_upload_mount(client):
    assert client.get("/files/healthz").status_code in (400, 404)
