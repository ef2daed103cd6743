"""POST /files: allocation (PROTOCOL.md §2)."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest

from ..helpers import MOUNT
from ..helpers import allocate
from ..helpers import for_each
from ..helpers import head_state
from ..helpers import patch_message
from ..helpers import problem
from ..helpers import read_all
from ..helpers import sha256_field
from ..helpers import sha512_field
from ..helpers import write

ID_RE = re.compile(r"[A-Za-z0-9_-]{22,}")


def test_post_creates_resource_with_absolute_location(client):
    response = client.post(MOUNT, headers={"Upload-Length": "12"})
    assert response.status_code == 201
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert parts.scheme in ("http", "https") and parts.netloc, location
    assert parts.path.startswith(MOUNT + "/")
    resource_id = parts.path[len(MOUNT) + 1 :]
    # At least 128 random bits: 22 base64url characters.
    assert ID_RE.fullmatch(resource_id), resource_id
    assert response.headers["Upload-Length"] == "12"
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.get_data() == b""
    state = head_state(client, parts.path)
    assert state["length"] == 12 and state["offset"] == 0 and state["complete"] is False


def test_post_ids_are_unique_and_random(client):
    ids = {urlsplit(client.post(MOUNT).headers["Location"]).path for _ in range(20)}
    assert len(ids) == 20
    # 16 random bytes encode to 22 base64url characters and decode back to at least 16 bytes.
    for path in ids:
        resource_id = path.rsplit("/", 1)[1]
        raw = base64.urlsafe_b64decode(resource_id + "=" * (-len(resource_id) % 4))
        assert len(raw) >= 16


def test_post_without_length_leaves_it_unknown(client):
    path = allocate(client)
    state = head_state(client, path)
    assert state["length"] is None
    assert state["complete"] is False
    assert state["ranges_header"] == "none"


def test_post_with_trailing_slash(client):
    response = client.post(MOUNT + "/")
    assert response.status_code == 201


def test_post_zero_length_is_complete_at_once(client):
    path = allocate(client, 0)
    state = head_state(client, path)
    assert state["complete"] is True and state["length"] == 0
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.headers["Repr-Digest"] == sha256_field(b"")


class TestMaxSize:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return dict(settings_overrides, MAX_RESOURCE_SIZE="1000")

    def test_over_max_size_is_413_with_limit_in_problem(self, client):
        response = client.post(MOUNT, headers={"Upload-Length": "1001"})
        body = problem(response, 413, "too-large")
        assert body.get("max-size") == 1000, body
        assert body.get("length") == 1001, body

    def test_at_max_size_is_accepted(self, client):
        assert client.post(MOUNT, headers={"Upload-Length": "1000"}).status_code == 201


def test_post_malformed_upload_length_is_400(client):
    def check(value):
        problem(client.post(MOUNT, headers={"Upload-Length": value}), 400)

    for_each(["-1", "abc", "1.5", "1234567890123456", "", "1e3", "+5", " 5x"], check)


def test_post_with_body_is_400(client):
    problem(client.post(MOUNT, data=b"hello", headers={"Upload-Length": "5"}), 400)


def test_post_metadata_is_served_on_get(client):
    data = b"col1,col2\n1,2\n"
    path = allocate(
        client,
        len(data),
        {"Content-Disposition": 'attachment; filename="report.csv"', "Content-Type": "text/csv"},
    )
    write(client, path, 0, data, len(data))
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_data() == data
    assert response.mimetype == "text/csv"
    assert "report.csv" in response.headers["Content-Disposition"]
    head = client.head(path)
    assert "report.csv" in head.headers["Content-Disposition"]
    assert head.mimetype == "text/csv"


def test_post_non_ascii_filename_round_trips(client):
    data = b"x"
    path = allocate(client, 1, {"Content-Disposition": "attachment; filename*=UTF-8''na%C3%AFve%20file.txt"})
    write(client, path, 0, data, 1)
    disposition = client.get(path).headers["Content-Disposition"]
    assert "na%C3%AFve" in disposition or "naïve" in disposition


def test_post_default_media_type_is_octet_stream(client):
    path = allocate(client, 1)
    write(client, path, 0, b"z", 1)
    assert client.get(path).mimetype == "application/octet-stream"


class TestReprDigest:
    DATA = b"the quick brown fox jumps over the lazy dog"

    def test_matching_digest_completes(self, client):
        path = allocate(client, len(self.DATA), {"Repr-Digest": sha256_field(self.DATA)})
        write(client, path, 0, self.DATA[:10], len(self.DATA))
        response = patch_message(client, path, 10, self.DATA[10:], len(self.DATA))
        assert response.status_code == 204
        assert response.headers["Upload-Complete"] == "?1"
        got = client.get(path)
        assert got.status_code == 200 and got.get_data() == self.DATA
        assert got.headers["Repr-Digest"] == sha256_field(self.DATA)

    def test_matching_sha512_digest_completes(self, client):
        path = allocate(client, len(self.DATA), {"Repr-Digest": sha512_field(self.DATA)})
        response = patch_message(client, path, 0, self.DATA, len(self.DATA))
        assert response.status_code == 204
        assert read_all(client, path) == self.DATA

    def test_mismatch_fails_completing_write_and_get(self, client):
        path = allocate(client, len(self.DATA), {"Repr-Digest": sha256_field(b"something else")})
        first = patch_message(client, path, 0, self.DATA[:10], len(self.DATA))
        assert first.status_code == 204  # not complete yet: nothing to verify
        response = patch_message(client, path, 10, self.DATA[10:], len(self.DATA))
        body = problem(response, 409, "repr-digest-mismatch")
        assert "sha-256" in body or "algorithm" in body
        problem(client.get(path), 409, "repr-digest-mismatch")
        problem(client.get(path, headers={"Range": "bytes=0-3"}), 409, "repr-digest-mismatch")

    def test_part_repr_digest_differing_from_declared_is_409(self, client):
        path = allocate(client, len(self.DATA), {"Repr-Digest": sha256_field(self.DATA)})
        fields = (
            ("Content-Range", f"bytes 0-3/{len(self.DATA)}"),
            ("Repr-Digest", sha256_field(b"other")),
        )
        response = patch_message(client, path, None, self.DATA[:4], fields=fields)
        problem(response, 409, "repr-digest-mismatch")
        assert head_state(client, path)["ranges"] == []

    def test_malformed_repr_digest_is_400(self, client):
        problem(client.post(MOUNT, headers={"Repr-Digest": "sha-256=notbase64"}), 400)

    def test_repr_digest_of_wrong_size_is_400(self, client):
        bad = "sha-256=:" + base64.b64encode(hashlib.sha256(b"").digest()[:16]).decode() + ":"
        problem(client.post(MOUNT, headers={"Repr-Digest": bad}), 400)


def _resource_count(service):
    from sqlalchemy import func
    from sqlalchemy import select

    from byterange_server.db.models import resources

    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


@pytest.mark.parametrize(
    ("headers", "field", "max_length"),
    [
        ({"Content-Type": "text/" + "x" * 300}, "content-type", 255),
        ({"Content-Disposition": 'attachment; filename="' + "f" * 1100 + '"'}, "filename", 1024),
    ],
    ids=["long-content-type", "long-filename"],
)
def test_post_over_long_metadata_is_400_limit_exceeded_and_creates_nothing(
    client, service, headers, field, max_length
):
    before = _resource_count(service)
    body = problem(client.post(MOUNT, headers=headers), 400, "limit-exceeded")
    assert (body["field"], body["max-length"]) == (field, max_length)
    assert _resource_count(service) == before


def test_post_malformed_content_disposition_is_400_and_creates_nothing(client, service):
    before = _resource_count(service)
    response = client.post(MOUNT, headers={"Content-Disposition": "attachment; filename="})
    body = problem(response, 400, "malformed-header")
    assert body["field"] == "Content-Disposition"
    assert "Location" not in response.headers
    assert _resource_count(service) == before


def test_post_zero_length_with_wrong_digest_leaves_no_orphan(client, service):
    before = _resource_count(service)
    response = client.post(MOUNT, headers={"Upload-Length": "0", "Repr-Digest": sha256_field(b"x")})
    # An empty representation is complete at once, so its declared digest is checked at once.
    body = problem(response, 409, "repr-digest-mismatch")
    assert body["algorithm"] == "sha-256"
    assert "Location" not in response.headers
    assert _resource_count(service) == before
