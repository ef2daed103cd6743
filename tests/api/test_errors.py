"""Errors (PROTOCOL.md §7): every 4xx/5xx is application/problem+json without internals."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError

from byterange_server.db import clock
from byterange_server.db.ledger import extents
from byterange_server.db.ledger import resources

from .helpers import BINARY
from .helpers import MESSAGE
from .helpers import MOUNT
from .helpers import MULTIPART
from .helpers import PATCH_TYPES
from .helpers import PROBLEM_JSON
from .helpers import allocate
from .helpers import for_each
from .helpers import head_state
from .helpers import multipart_body
from .helpers import patch_message
from .helpers import patch_raw
from .helpers import problem
from .helpers import upload
from .helpers import write

UNKNOWN = MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"
LEAKS = (
    "Traceback",
    'File "',
    "/work/",
    "/tmp/",
    "site-packages",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "sqlalchemy",
    "psycopg",
    "sqlite3",
    "postgresql://",
    "Error(",
)


def assert_clean(response, settings_overrides=None) -> dict:
    text = response.get_data(as_text=True)
    for marker in LEAKS:
        assert marker not in text, (marker, text)
    if settings_overrides:
        assert settings_overrides["DATA_DIR"] not in text
        assert settings_overrides["DATABASE_URL"] not in text
    return json.loads(text)


def _415(response) -> None:
    body = problem(response, 415, "unsupported-media-type")
    accept = {item.strip() for item in response.headers["Accept-Patch"].split(",")}
    assert accept == set(PATCH_TYPES), accept
    assert set(body.get("accept-patch", PATCH_TYPES)) == set(PATCH_TYPES)


UNKNOWN_PATCH_TYPES = (
    "application/octet-stream",
    "text/plain",
    "message/byteranges",  # the demo's plural: not a defined type
    "multipart/x-byteranges; boundary=x",
    "multipart/form-data; boundary=x",
    "application/offset+octet-stream",
    "application/partial-upload",
    "application/json-patch+json",
)


def test_unknown_patch_media_type_is_415_with_accept_patch(client):
    path = allocate(client, 4)

    def check(content_type):
        _415(patch_raw(client, path, b"Content-Range: bytes 0-3/4\r\n\r\nabcd", content_type))
        assert head_state(client, path)["ranges"] == []

    for_each(UNKNOWN_PATCH_TYPES, check)


def test_patch_without_content_type_is_415(client):
    path = allocate(client, 4)
    _415(client.patch(path, data=b"abcd"))
    assert head_state(client, path)["ranges"] == []


def test_malformed_content_type_is_400(client):
    path = allocate(client, 4)

    def check(content_type):
        response = patch_raw(client, path, b"Content-Range: bytes 0-3/4\r\n\r\nabcd", content_type)
        assert problem(response, 400, "malformed-header")["detail"].startswith("Content-Type ")
        assert head_state(client, path)["ranges"] == []

    for_each(["message", "message/", "/byterange", "message/byterange; a", 'message/byterange; a="b'], check)


def test_unknown_route_is_problem_json(client):
    for url in ("/", "/nope", MOUNT + "/a/b/c", UNKNOWN + "/committed-ranges/x"):
        body = problem(client.get(url), 404)
        assert_clean(client.get(url))
        assert body["type"] != "about:blank" or body["title"]


def test_doubled_slashes_are_404_not_a_redirect_built_from_host(client):
    # Werkzeug would merge the slashes and answer 308 with a Location naming the client's Host.
    path = allocate(client, 4)
    resource_id = path.rsplit("/", 1)[1]
    for url in (f"{MOUNT}//{resource_id}", f"{MOUNT}//{resource_id}//committed-ranges"):
        for method in ("HEAD", "GET", "DELETE"):
            response = client.open(url, method=method, headers={"Host": "attacker.example"})
            assert response.status_code == 404, (method, url)
            assert "Location" not in response.headers
    assert client.head(path).status_code == 200  # untouched


def test_wrong_method_is_405_problem_json(client):
    path = allocate(client)

    def check(case):
        method, url = case
        response = client.open(url.format(path=path), method=method)
        problem(response, 405)
        assert "Allow" in response.headers
        assert_clean(response)

    cases = [
        ("POST", "{path}"),
        ("PATCH", MOUNT),
        ("DELETE", MOUNT),
        ("PUT", MOUNT),
        ("GET", MOUNT),
        ("POST", "{path}/committed-ranges"),
    ]
    for_each(cases, check)


def _catalogue(client):
    """One request for each kind of error the API produces."""
    path = allocate(client, 10)
    write(client, path, 0, b"abcd")
    done = upload(client, b"complete!")
    yield "404 resource", client.get(UNKNOWN)
    yield "404 route", client.get("/nowhere")
    yield "405", client.post(path)
    yield "400 post body", client.post(MOUNT, data=b"x")
    yield (
        "400 content-range",
        patch_message(client, path, None, b"", fields=(("Content-Range", "bytes 5-1/10"),)),
    )
    yield "400 boundary", patch_raw(client, path, b"", MULTIPART)
    yield "400 binary", patch_raw(client, path, b"\x07", BINARY)
    yield "400 digest", patch_message(client, path, 4, b"e", headers={"Content-Digest": "sha-256=:AAAA:"})
    yield "409 content", patch_message(client, path, 0, b"X")
    yield "409 length", patch_message(client, path, None, b"", 11)
    yield "409 incomplete", client.get(path)
    yield "412", patch_message(client, path, 4, b"e", headers={"If-None-Match": "*"})
    yield "415", patch_raw(client, path, b"x", "text/plain")
    yield "416", client.get(done, headers={"Range": "bytes=100-"})
    yield (
        "422 overlap",
        patch_raw(client, path, multipart_body([(4, b"ef"), (5, b"fg")]), f"{MULTIPART}; boundary=SEP-7f3a"),
    )
    yield "422 missing", patch_message(client, path, None, b"e", fields=(("X", "y"),))
    yield "422 unit", patch_message(client, path, None, b"e", fields=(("Content-Range", "lines 1-1/*"),))


def test_every_error_is_a_clean_problem_document(client, settings_overrides):
    types = set()
    for name, response in _catalogue(client):
        assert response.status_code >= 400, name
        assert response.mimetype == PROBLEM_JSON, (name, response.headers.get("Content-Type"))
        body = assert_clean(response, settings_overrides)
        assert isinstance(body["type"], str) and body["type"], name
        assert isinstance(body["title"], str) and body["title"], name
        assert body["status"] == response.status_code, name
        types.add(body["type"])
    # Distinct kinds of error have distinct, stable type URIs under one prefix.
    assert len(types) >= 12
    prefixes = {t.rsplit(":", 1)[0] for t in types}
    assert len(prefixes) == 1, prefixes


def test_problem_carries_explaining_figures(client):
    path = allocate(client, 10)
    body = problem(patch_message(client, path, 8, b"xyz"), 409, "length-conflict")
    assert body.get("length") == 10
    body = problem(patch_message(client, path, None, b"", 12), 409, "length-conflict")
    assert body.get("length") == 10 and body.get("requested-length") == 12


def test_unexpected_exception_is_bare_500(client, service, monkeypatch, settings_overrides):
    path = allocate(client)

    def boom(*args, **kwargs):
        raise RuntimeError(f"secret at {settings_overrides['DATA_DIR']}: SELECT * FROM resources")

    monkeypatch.setattr(service, "state", boom)
    response = client.head(path)
    assert response.status_code == 500
    response = client.get(path)
    body = problem(response, 500)
    # request-id: an opaque id to find the log lines by, nothing of the failure
    assert set(body) <= {"type", "title", "status", "instance", "request-id"}, body
    assert_clean(response, settings_overrides)


def test_integrity_error_is_bare_500(client, monkeypatch, settings_overrides):
    path = allocate(client)

    def boom(*args, **kwargs):
        raise IntegrityError("INSERT INTO extents VALUES (1)", {"x": 1}, Exception("duplicate key"))

    monkeypatch.setattr(extents, "add_extents", boom)
    response = patch_message(client, path, 0, b"abc")
    problem(response, 500)
    assert_clean(response, settings_overrides)
    assert head_state(client, path)["ranges"] == []


def test_database_outage_is_503_without_sql(client, monkeypatch, settings_overrides):
    path = allocate(client)

    def boom(*args, **kwargs):
        raise OperationalError(
            "SELECT resources.id FROM resources",
            {},
            Exception(f"could not connect to {settings_overrides['DATABASE_URL']}"),
        )

    monkeypatch.setattr(resources, "load_snapshot", boom)
    monkeypatch.setattr(resources, "load_snapshot_joined", boom)
    response = client.get(path)
    problem(response, 503)
    assert response.headers.get("Retry-After")
    assert_clean(response, settings_overrides)


def test_storage_failure_is_problem_without_path(client, service, monkeypatch, settings_overrides):
    path = allocate(client, 4)
    original_open = service.storage.open

    class Failing:
        def __init__(self, inner):
            self.inner = inner

        def write_at(self, offset, data):
            raise OSError(28, "No space left on device", settings_overrides["DATA_DIR"] + "/objects/x")

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

    monkeypatch.setattr(service.storage, "open", lambda rid: Failing(original_open(rid)))
    response = patch_message(client, path, 0, b"abcd")
    assert response.status_code >= 500
    problem(response, response.status_code)
    assert_clean(response, settings_overrides)
    monkeypatch.undo()
    assert head_state(client, path)["ranges"] == []


def test_expired_resource_is_410(client, service):
    path = allocate(client, 4)
    write(client, path, 0, b"ab")
    from sqlalchemy import update

    from byterange_server.db.models import resources

    with service.db.write() as conn:
        conn.execute(
            update(resources)
            .where(resources.c.id == path.rsplit("/", 1)[1])
            .values(expires_at=clock.utcnow().replace(year=2000))
        )
    problem(client.get(path, headers={"Range": "bytes=0-1"}), 410, "gone")
    problem(patch_message(client, path, 2, b"cd"), 410, "gone")
    assert client.head(path).status_code == 410


def test_head_error_has_no_body(client):
    response = client.head(UNKNOWN)
    assert response.status_code == 404
    assert response.get_data() == b""


@pytest.mark.parametrize("media_type", [MESSAGE, BINARY])
def test_patch_to_collection_is_405(client, media_type):
    problem(patch_raw(client, MOUNT, b"", media_type), 405)
