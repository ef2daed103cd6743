"""Authentication through the app, on SQLite and PostgreSQL: each credential form accepted, each
forgery refused with nothing written, resources bound to the principal that created them.

Every refusal is checked for its status and problem type *and* for what it left behind: the
resource count, the committed ranges and the stored bytes are unchanged.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func
from sqlalchemy import select

from byterange_server import create_app
from byterange_server.auth.signing import signed_url
from byterange_server.db.models import resources
from byterange_server.protocol.message import encode_message
from byterange_server.uploads.lifecycle import EventSink

from .helpers import MESSAGE
from .helpers import MOUNT
from .helpers import content_range
from .helpers import extent_rows
from .helpers import problem
from .helpers import stored_bytes

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789abc"
OPS = "ops-secret-0123456789abc"
KEY = "k1-secret-0123456789abcdef"
OLD_KEY = "k0-secret-0123456789abcdef"
INVALID = "invalid-credentials"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_overrides,
        "AUTH": "required",
        "TOKENS": f"alice:{ALICE}, bob:{BOB}\nops:{OPS}",
        "ADMIN_TOKENS": "ops",
        "SIGNING_KEYS": f"k1:{KEY} k0:{OLD_KEY}",
    }


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sign(path: str, methods: str, *, key: str = "k1", secret: str = KEY, expires: int | None = None,
         max_size: int = 1 << 20) -> str:
    return signed_url(
        path,
        key_id=key,
        secret=secret.encode(),
        methods=methods.split(","),
        expires=expires if expires is not None else int(time.time()) + 600,
        max_size=max_size,
    )


def local(url: str) -> str:
    """The path and query of an absolute URL (the test client takes those)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts.path + "?" + urlencode(query)


def resource_count(service: Any) -> int:
    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


def owner_of(service: Any, path: str) -> str | None:
    return service.owner_of(path.rsplit("/", 1)[1])[1]


def message(first: int, data: bytes, length: int | str = "*") -> bytes:
    return encode_message((("Content-Range", content_range(first, data, length)),), data)


def patch(client: Any, url: str, first: int, data: bytes, headers: dict[str, str] | None = None,
          length: int | str = "*") -> Any:
    return client.patch(url, data=message(first, data, length),
                        headers={"Content-Type": MESSAGE, **(headers or {})})


def create(client: Any, secret: str = ALICE, length: int = 8) -> str:
    response = client.post(MOUNT, headers={**bearer(secret), "Upload-Length": str(length)})
    assert response.status_code == 201, response.get_data()
    return urlsplit(response.headers["Location"]).path


# -- configuration -------------------------------------------------------------------------------


def test_required_by_default_and_a_server_without_credentials_refuses_to_start(database_url, tmp_path):
    settings = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "d")}
    with pytest.raises(ValueError, match="no credentials are configured"):
        create_app(settings)
    with pytest.raises(ValueError, match="'required' or 'off'"):
        create_app({**settings, "AUTH": "maybe"})
    with pytest.raises(ValueError, match="at least 16 characters"):
        create_app({**settings, "TOKENS": "alice:short"})
    with pytest.raises(ValueError, match="not configured"):
        create_app({**settings, "TOKENS": f"alice:{ALICE}", "ADMIN_TOKENS": "root"})


def test_tokens_and_keys_from_files(database_url, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# backend\ncarol:{ALICE}\n")
    settings = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "d"), "TOKENS_FILE": str(tokens)}
    app = create_app(settings)
    client = app.test_client()
    response = client.post(MOUNT, headers=bearer(ALICE))
    assert response.status_code == 201
    assert owner_of(app.extensions["byterange"], urlsplit(response.headers["Location"]).path) == "token:carol"


# -- bearer tokens -------------------------------------------------------------------------------


def test_no_credentials_is_401_with_a_challenge_and_creates_nothing(client, service):
    for response in (
        client.post(MOUNT, headers={"Upload-Length": "8"}),
        client.post(MOUNT, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "8"}),
        client.post(MOUNT, headers={"Upload-Complete": "?1", "Upload-Draft-Interop-Version": "6"}, data=b"a"),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="byterange-server"'
    assert resource_count(service) == 0


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {ALICE}x", f"Bearer {ALICE[:-1]}", f"Basic {ALICE}", "Bearer", f"Bearer  {ALICE} extra", ALICE],
)
def test_wrong_or_malformed_tokens_are_401_invalid_token(client, service, authorization):
    response = client.post(MOUNT, headers={"Authorization": authorization})
    body = problem(response, 401, "invalid-credentials")
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    assert ALICE not in str(body)  # the presented secret is never echoed
    assert resource_count(service) == 0


def test_a_token_creates_and_owns(client, service):
    path = create(client)
    assert owner_of(service, path) == "token:alice"
    assert patch(client, path, 0, b"abcd", bearer(ALICE)).status_code == 204
    assert client.head(path, headers=bearer(ALICE)).status_code == 200


def test_another_token_may_not_touch_it_and_writes_nothing(client, service):
    path = create(client)
    assert patch(client, path, 0, b"abcd", bearer(ALICE)).status_code == 204
    for response in (
        client.head(path, headers=bearer(BOB)),
        client.get(path, headers={**bearer(BOB), "Range": "bytes=0-3"}),
        client.get(path + "/committed-ranges", headers=bearer(BOB)),
        patch(client, path, 4, b"EVIL", bearer(BOB)),
        patch(client, path, 0, b"EVIL", bearer(BOB)),
        client.put(path, data=b"EVIL", headers={**bearer(BOB), "Content-Range": "bytes 4-7/8"}),
        client.patch(path, data=b"EVIL", headers={**bearer(BOB), "Tus-Resumable": "1.0.0",
                     "Upload-Offset": "4", "Content-Type": "application/offset+octet-stream"}),
        client.delete(path, headers=bearer(BOB)),
    ):
        assert response.status_code == 403, response.get_data()
    assert extent_rows(service, path) == [(0, 4)]
    assert stored_bytes(service, path, 4) == b"abcd"
    assert client.head(path, headers=bearer(ALICE)).status_code == 200


def test_an_admin_token_may(client, service):
    path = create(client)
    assert patch(client, path, 0, b"abcdefgh", bearer(OPS)).status_code == 204
    assert client.get(path, headers=bearer(OPS)).get_data() == b"abcdefgh"
    assert client.delete(path, headers=bearer(OPS)).status_code == 204


def test_tus_concatenation_of_another_principals_partials_is_refused(client, service):
    tus = {"Tus-Resumable": "1.0.0"}
    partial = client.post(
        MOUNT, headers={**tus, **bearer(ALICE), "Upload-Length": "2", "Upload-Concat": "partial"}
    )
    assert partial.status_code == 201
    url = urlsplit(partial.headers["Location"]).path
    stolen = client.post(MOUNT, headers={**tus, **bearer(BOB), "Upload-Concat": f"final;{url}"})
    assert stolen.status_code == 403
    mine = client.post(MOUNT, headers={**tus, **bearer(ALICE), "Upload-Concat": f"final;{url}"})
    assert mine.status_code == 201


def test_options_needs_no_credentials(client):
    assert client.options(MOUNT).status_code == 204
    assert client.options(MOUNT, headers={"Tus-Resumable": "1.0.0"}).status_code == 204


def test_a_token_and_a_signature_together_are_400(client, service):
    url = sign(MOUNT, "POST")
    problem(client.post(local(url), headers=bearer(ALICE)), 400, "ambiguous-credentials")
    assert resource_count(service) == 0


@pytest.mark.parametrize(
    "hostile", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a" * 65, "bad%00id0123456789", "x/y"]
)
def test_hostile_ids_never_reach_storage(client, service, hostile):
    response = client.patch(f"{MOUNT}/{hostile}", data=message(0, b"ab"),
                            headers={**bearer(ALICE), "Content-Type": MESSAGE})
    assert response.status_code in (400, 404)
    assert resource_count(service) == 0


# -- signed URLs ---------------------------------------------------------------------------------


def test_a_signed_creation_url_creates_exactly_one_resource(client, service):
    url = sign(MOUNT, "POST", max_size=64)
    first = client.post(local(url), headers={"Upload-Length": "8"})
    assert first.status_code == 201
    location = first.headers["Location"]
    assert "br-sig=" in location  # signed for the new resource: the browser needs no secret
    path = urlsplit(location).path
    # The grant's principal, not the key's: what it created is its own alone.
    assert owner_of(service, path) == f"signed:k1:{path.rsplit('/', 1)[1]}"
    # A retry after a lost response finds the same resource, it does not create a second one.
    again = client.post(local(url), headers={"Upload-Length": "8"})
    assert again.status_code == 200 and again.headers["Location"] == location
    problem(client.post(local(url), headers={"Upload-Length": "9"}), 409, "resource-exists")
    assert resource_count(service) == 1
    # The signed Location is all the holder needs: write, read state, read the ranges, read back.
    assert patch(client, local(location), 0, b"abcd").status_code == 204
    assert patch(client, local(location), 4, b"efgh").status_code == 204
    assert client.head(local(location)).headers["Upload-Complete"] == "?1"
    committed = urlsplit(location)
    ranges = client.get(committed.path + "/committed-ranges?" + committed.query)
    assert ranges.status_code == 200 and ranges.json["ranges"] == [[0, 7]]
    assert client.get(local(location)).get_data() == b"abcdefgh"


def test_signed_creation_through_tus_and_ietf(client, service):
    tus = client.post(local(sign(MOUNT, "POST")), headers={"Tus-Resumable": "1.0.0", "Upload-Length": "4"})
    assert tus.status_code == 201 and "br-sig=" in tus.headers["Location"]
    appended = client.patch(local(tus.headers["Location"]), data=b"wxyz", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert appended.status_code == 204
    # Another URL (the same one would name the tus upload it already created).
    ietf = client.post(local(sign(MOUNT, "POST", max_size=99)), data=b"hello",
                       headers={"Upload-Complete": "?1", "Upload-Draft-Interop-Version": "6"})
    assert ietf.status_code == 201 and "br-sig=" in ietf.headers["Location"]
    assert client.get(local(ietf.headers["Location"])).get_data() == b"hello"


def test_old_keys_keep_working_during_rotation(client):
    assert client.post(local(sign(MOUNT, "POST", key="k0", secret=OLD_KEY))).status_code == 201


@pytest.mark.parametrize(
    "forge, status, code",
    [
        (lambda url: sign(MOUNT, "POST", secret="another-secret-0123456789"), 401, INVALID),
        (lambda url: sign(MOUNT, "POST", key="k9", secret="k9-secret-0123456789abcd"), 401, INVALID),
        (lambda url: sign(MOUNT, "POST", expires=int(time.time()) - 1), 403, "signature-scope"),
        (lambda url: with_query(url, **{"br-max-size": str(1 << 40)}), 401, INVALID),
        (lambda url: with_query(url, **{"br-expires": str(int(time.time()) + 10**6)}), 401, INVALID),
        (lambda url: with_query(url, **{"br-methods": "DELETE.POST"}), 401, INVALID),
        (lambda url: with_query(url, **{"br-key": "k0"}), 401, INVALID),
        (lambda url: with_query(url, **{"br-sig": "A" * 43}), 401, INVALID),
        (lambda url: url.replace(MOUNT, MOUNT + "/"), 401, INVALID),  # another path
        (lambda url: url + "&br-sig=" + dict(parse_qsl(urlsplit(url).query))["br-sig"], 401, INVALID),
        (lambda url: sign(MOUNT, "PATCH"), 403, "signature-scope"),  # another method
    ],
)
def test_forged_creation_urls_are_refused_and_create_nothing(client, service, forge, status, code):
    forged = forge(sign(MOUNT, "POST"))
    problem(client.post(local(forged), headers={"Upload-Length": "8"}), status, code)
    assert resource_count(service) == 0


def test_a_resource_signature_replayed_on_another_resource_is_refused(client, service):
    first = client.post(local(sign(MOUNT, "POST", max_size=10))).headers["Location"]
    second = client.post(local(sign(MOUNT, "POST", max_size=20))).headers["Location"]
    assert urlsplit(first).path != urlsplit(second).path
    replayed = urlsplit(second).path + "?" + urlsplit(first).query
    problem(patch(client, replayed, 0, b"EVIL"), 401, "invalid-credentials")
    assert client.head(replayed).status_code == 401
    assert extent_rows(service, urlsplit(second).path) == []
    # A creation signature does not open existing resources either.
    assert client.head(urlsplit(second).path + "?" + urlsplit(sign(MOUNT, "POST")).query).status_code == 401


def test_a_signature_for_reading_does_not_allow_writing(client, service):
    path = create(client)
    read_only = sign(path, "GET,HEAD")
    assert client.head(local(read_only)).status_code == 200
    problem(patch(client, local(read_only), 0, b"EVIL"), 403, "signature-scope")
    problem(client.delete(local(read_only)), 403, "signature-scope")
    assert extent_rows(service, path) == []


def test_the_signed_size_caps_the_length_and_the_bytes(client, service):
    url = sign(MOUNT, "POST", max_size=8)
    problem(client.post(local(url), headers={"Upload-Length": "9"}), 413, "too-large")
    assert resource_count(service) == 0
    location = client.post(local(url)).headers["Location"]  # length unknown
    path = urlsplit(location).path
    problem(patch(client, local(location), 4, b"12345"), 400, "limit-exceeded")
    assert patch(client, local(location), 0, b"1234").status_code == 204
    assert extent_rows(service, path) == [(0, 4)]
    tus = client.post(local(sign(MOUNT, "POST", max_size=4)), headers={"Tus-Resumable": "1.0.0",
                                                                      "Upload-Defer-Length": "1"})
    response = client.patch(local(tus.headers["Location"]), data=b"12345", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert response.status_code == 413
    assert extent_rows(service, urlsplit(tus.headers["Location"]).path) == []


def test_a_signed_holder_can_follow_the_committed_ranges_links(client):
    location = client.post(local(sign(MOUNT, "POST", max_size=4096))).headers["Location"]
    for start in range(0, 40, 4):  # ten separate ranges
        assert patch(client, local(location), start * 10, b"ab").status_code == 204
    head = client.head(local(location))
    link = head.headers["Link"]
    assert "br-sig=" in link
    target = link[link.index("<") + 1 : link.index(">")]
    page = client.get(target + "&limit=3" if "?" in target else target)
    assert page.status_code == 200 and len(page.json["ranges"]) == 3
    following = page.headers["Link"]
    assert "br-sig=" in following
    nxt = following[following.index("<") + 1 : following.index(">")]
    assert client.get(nxt).status_code == 200


# -- issue 11: grants are unique, and own only what they created ----------------------------------

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def tus_partial(client: Any, url: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    """A complete tus partial upload created through ``url``; its Location (signed if ``url`` was)."""
    created = client.post(local(url), headers={**TUS, **(headers or {}), "Upload-Concat": "partial",
                                              "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.get_data()
    location = created.headers["Location"]
    wrote = client.patch(local(location), data=data,
                         headers={**OCTETS, **(headers or {}), "Upload-Offset": "0"})
    assert wrote.status_code == 204, wrote.get_data()
    return location


def tus_final(client: Any, url: str, parts: list[str], headers: dict[str, str] | None = None) -> Any:
    concat = "final;" + " ".join(parts)
    return client.post(local(url), headers={**TUS, **(headers or {}), "Upload-Concat": concat})


def test_two_identical_mints_create_two_resources(client, service, monkeypatch):
    """Audit item 1: two mints in the same second with the same arguments were the same URL, so
    the second holder was handed the first holder's resource, to read and to write."""
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    mine, theirs = sign(MOUNT, "POST"), sign(MOUNT, "POST")
    first = client.post(local(mine), headers={"Upload-Length": "4"})
    second = client.post(local(theirs), headers={"Upload-Length": "4"})
    assert first.status_code == 201 and second.status_code == 201
    assert urlsplit(first.headers["Location"]).path != urlsplit(second.headers["Location"]).path
    assert patch(client, local(first.headers["Location"]), 0, b"mine").status_code == 204
    assert extent_rows(service, urlsplit(second.headers["Location"]).path) == []
    assert resource_count(service) == 2


def test_concatenation_needs_the_right_to_read_every_partial(client, service):
    """Audit item 2: every URL signed with one key shared the owner signed:<key>, so anyone who
    held such a URL and learnt a partial's id could concatenate it and read the victim's bytes."""
    victim = tus_partial(client, sign(MOUNT, "POST"), b"secret bytes")
    bare = urlsplit(victim).path  # what logs and Upload-Concat headers show
    attacker = sign(MOUNT, "POST")
    refused = tus_final(client, attacker, [bare])
    body = problem(refused, 403, "partial-not-readable")
    assert body["upload"] == bare.rsplit("/", 1)[1]
    # The attacker's own signature stuck onto the victim's path proves nothing either.
    own_query = urlsplit(client.post(local(sign(MOUNT, "POST"))).headers["Location"]).query
    problem(tus_final(client, attacker, [f"{bare}?{own_query}"]), 403, "partial-not-readable")
    # A token that does not own it, and a read signature that expired, are refused too.
    problem(tus_final(client, MOUNT, [bare], bearer(BOB)), 403, "partial-not-readable")
    expired = sign(bare, "GET", expires=int(time.time()) - 1)
    problem(tus_final(client, sign(MOUNT, "POST"), [local(expired)]), 403, "partial-not-readable")
    write_only = sign(bare, "PATCH")
    problem(tus_final(client, sign(MOUNT, "POST"), [local(write_only)]), 403, "partial-not-readable")
    # Whoever holds a URL that allows reading it may: the signed Location, a HEAD-only grant,
    # an admin token.
    for allowed in (
        tus_final(client, sign(MOUNT, "POST"), [victim]),
        tus_final(client, sign(MOUNT, "POST"), [local(sign(bare, "HEAD"))]),
        tus_final(client, MOUNT, [bare], bearer(OPS)),
    ):
        assert allowed.status_code == 201, allowed.get_data()
        final = urlsplit(allowed.headers["Location"]).path
        assert client.get(final, headers=bearer(OPS)).get_data() == b"secret bytes"


def test_a_signed_final_is_created_once_and_owned_by_its_grant(client, service):
    a = tus_partial(client, sign(MOUNT, "POST"), b"ab")
    b = tus_partial(client, sign(MOUNT, "POST"), b"cd")
    url = sign(MOUNT, "POST")
    created = tus_final(client, url, [a, b])
    assert created.status_code == 201
    location = created.headers["Location"]
    path = urlsplit(location).path
    assert owner_of(service, path) == f"signed:k1:{path.rsplit('/', 1)[1]}"
    assert client.get(local(location)).get_data() == b"abcd"
    # One grant, one resource: the same creation URL again makes no second final.
    problem(tus_final(client, url, [a, b]), 409, "resource-exists")


def test_deleting_a_partial_takes_back_other_principals_finals(client, service):
    """Audit item 2: a final kept reading a partial its owner had deleted. Now a final of another
    principal goes with it (same transaction, a deleted event); the owner's own final stays."""
    events: list[Any] = []

    class Recorder(EventSink):
        def after_commit(self, event: Any) -> None:
            events.append(event)

    service.events.subscribe(Recorder())
    partial = tus_partial(client, MOUNT, b"private", bearer(ALICE))
    path = urlsplit(partial).path
    own = tus_final(client, MOUNT, [path], bearer(ALICE)).headers["Location"]
    foreign = tus_final(client, MOUNT, [path], bearer(OPS)).headers["Location"]
    signed = tus_final(client, sign(MOUNT, "POST"), [local(sign(path, "GET"))]).headers["Location"]
    assert client.get(urlsplit(foreign).path, headers=bearer(OPS)).get_data() == b"private"
    assert client.delete(path, headers={**TUS, **bearer(ALICE)}).status_code == 204
    for gone in (client.get(urlsplit(foreign).path, headers=bearer(OPS)), client.head(local(signed))):
        assert gone.status_code == 404
    for final in (foreign, signed):
        assert not service.storage.exists(urlsplit(final).path.rsplit("/", 1)[1])
    # Alice's own final still reads her bytes, so they stay until it goes too.
    assert client.get(local(own), headers=bearer(ALICE)).get_data() == b"private"
    deleted = [event for event in events if event.kind == "deleted"]
    assert {event.resource_id for event in deleted if event.data.get("cause") == "source-deleted"} == {
        urlsplit(final).path.rsplit("/", 1)[1] for final in (foreign, signed)
    }
    assert client.delete(local(own), headers=bearer(ALICE)).status_code == 204
    assert not service.storage.exists(path.rsplit("/", 1)[1])
    assert resource_count(service) == 0
