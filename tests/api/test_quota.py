"""Quotas per principal (issue 11): most open resources and most bytes declared for them, on
SQLite and PostgreSQL, through every creation path; race-safe across connections; none without
authentication. A refusal is a precise 403 ``quota-exceeded`` that creates nothing.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from byterange_server import errors
from byterange_server.uploads.values import Creator

from .helpers import MOUNT
from .helpers import problem
from .test_auth import ALICE
from .test_auth import BOB
from .test_auth import bearer
from .test_auth import resource_count

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_overrides,
        "AUTH": "required",
        "TOKENS": f"alice:{ALICE}, bob:{BOB}",
        "MAX_RESOURCES_PER_PRINCIPAL": "3",
        "MAX_BYTES_PER_PRINCIPAL": "100",
    }


def post(client: Any, secret: str, length: int | None = 10, **headers: str) -> Any:
    extra = {} if length is None else {"Upload-Length": str(length)}
    return client.post(MOUNT, headers={**bearer(secret), **extra, **headers})


def test_a_principal_past_its_quota_of_resources_is_refused_and_nothing_is_created(client, service):
    """Audit: 50,491 allocations declaring 1 TiB each in 120 s, with no cap per principal."""
    paths = [urlsplit(post(client, ALICE).headers["Location"]).path for _ in range(3)]
    body = problem(post(client, ALICE), 403, "quota-exceeded")
    assert body["max-resources"] == 3 and body["resources"] == 3
    assert body["max-bytes"] == 100 and body["bytes"] == 30 and body["length"] == 10
    # Every creation path is counted: tus, IETF, a deferred length.
    problem(client.post(MOUNT, headers={**TUS, **bearer(ALICE), "Upload-Length": "1"}), 403, "quota-exceeded")
    ietf = {"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?0", "Upload-Length": "1"}
    problem(client.post(MOUNT, headers={**bearer(ALICE), **ietf}), 403, "quota-exceeded")
    problem(post(client, ALICE, None), 403, "quota-exceeded")
    assert resource_count(service) == 3
    assert post(client, BOB).status_code == 201  # another principal's quota is its own
    # Completing a resource (or deleting one) gives room back.
    whole = {**bearer(ALICE), "Content-Range": "bytes 0-9/10"}
    done = client.put(paths[0], data=b"0123456789", headers=whole)
    assert done.status_code in (200, 204), done.get_data()
    assert post(client, ALICE).status_code == 201
    assert client.delete(paths[1], headers=bearer(ALICE)).status_code == 204
    assert post(client, ALICE).status_code == 201
    problem(post(client, ALICE), 403, "quota-exceeded")


def test_a_principal_past_its_quota_of_declared_bytes_is_refused(client, service):
    assert post(client, ALICE, 60).status_code == 201
    body = problem(post(client, ALICE, 41), 403, "quota-exceeded")
    assert body["bytes"] == 60 and body["length"] == 41
    assert post(client, ALICE, 40).status_code == 201
    assert post(client, ALICE, 0).status_code == 201  # complete at once: it holds nothing
    problem(post(client, ALICE, 1), 403, "quota-exceeded")
    assert resource_count(service) == 3


def test_a_final_counts_against_the_quota_until_its_digest_is_computed(client, service):
    """Audit item 6: a final costs its owner nothing to create and its first read a hash of all of
    it. Its length counts against its creator's quota until that hash is done."""
    partial = client.post(MOUNT, headers={**TUS, **bearer(ALICE), "Upload-Concat": "partial",
                                          "Upload-Length": "40"})
    path = urlsplit(partial.headers["Location"]).path
    wrote = client.patch(path, data=b"x" * 40, headers={**OCTETS, **bearer(ALICE), "Upload-Offset": "0"})
    assert wrote.status_code == 204
    concat = {**TUS, **bearer(ALICE), "Upload-Concat": f"final;{path} {path}"}
    final = client.post(MOUNT, headers=concat)
    assert final.status_code == 201 and final.headers["Upload-Offset"] == "80"
    body = problem(client.post(MOUNT, headers=concat), 403, "quota-exceeded")
    assert body["bytes"] == 80 and body["length"] == 80
    head = client.head(urlsplit(final.headers["Location"]).path, headers=bearer(ALICE))
    assert head.status_code == 200 and head.headers["ETag"]  # the one hash, done: room again
    assert client.post(MOUNT, headers=concat).status_code == 201


def test_concurrent_creations_cannot_overrun_the_quota(service):
    """Checked in the creation's transaction, serialised per principal (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: an advisory lock), so racing creations of one principal stop at it."""
    alice = Creator(owner="token:alice")
    start = threading.Barrier(8)
    results: list[str] = []

    def create() -> None:
        start.wait()
        try:
            service.allocate(length=1, creator=alice)
            results.append("created")
        except errors.ByterangeError as error:
            assert error.code == "quota-exceeded", error
            results.append("refused")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["created"] * 3 + ["refused"] * 5
    assert resource_count(service) == 3


class TestWithoutAuthentication:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "AUTH": "off"}

    def test_no_principal_no_quota(self, client, service):
        for _ in range(5):
            assert client.post(MOUNT, headers={"Upload-Length": "50"}).status_code == 201
        assert resource_count(service) == 5
