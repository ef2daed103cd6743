"""tus concatenation and concatenation-unfinished (http-specs.md §3.2), by reference.

A final upload stores no bytes of its own: these tests check the bytes it serves, that its
own stored object stays empty, and what termination and expiry do to partials it reads from.
"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlsplit

import pytest

from ..helpers import MOUNT
from ..helpers import head_state
from ..helpers import patch_message
from ..helpers import problem
from ..helpers import read_all
from ..helpers import read_range
from .helpers import OCTETS
from .helpers import TUS
from .helpers import expire
from .helpers import final
from .helpers import offset_of
from .helpers import partial
from .helpers import tus_head
from .helpers import tus_patch


def final_path(client, urls, headers=None):
    return urlsplit(final(client, urls, headers).headers["Location"]).path


def stored_size(service, path):
    resource_id = path.rsplit("/", 1)[1]
    with service.storage.open(resource_id) as stored:
        return len(stored.read_at(0, 1 << 20))


def test_partial_echoes_upload_concat(client):
    path = partial(client, length=5)
    assert tus_head(client, path).headers["Upload-Concat"] == "partial"


def test_final_echoes_upload_concat_as_received(client):
    """tus Concatenation: HEAD of a final carries Upload-Concat as it was received -- absolute
    URLs stay absolute -- except a URL's query, which is dropped (a signature is a credential)."""
    a = partial(client, b"ab")
    b = partial(client, b"cd")
    sent = [f"http://localhost{a}", f"https://uploads.example{b}?br-sig=secret"]
    path = final_path(client, sent)
    head = tus_head(client, path)
    assert head.headers["Upload-Concat"] == f"final;http://localhost{a} https://uploads.example{b}"
    assert read_all(client, path) == b"abcd"


def test_final_of_complete_partials(client, service):
    a = partial(client, b"hello ", metadata="filename YS50eHQ=")
    b = partial(client, b"world")
    response = final(client, [a, b], {"Upload-Metadata": "filename aGVsbG8udHh0"})
    assert response.headers["Upload-Offset"] == "11"
    assert response.headers["Upload-Length"] == "11"
    path = urlsplit(response.headers["Location"]).path
    head = tus_head(client, path)
    assert head.headers["Upload-Offset"] == "11"
    assert head.headers["Upload-Concat"] == f"final;{a} {b}"
    # Metadata is the final's own, not inherited from the partials.
    assert head.headers["Upload-Metadata"] == "filename aGVsbG8udHh0"
    assert read_all(client, path) == b"hello world"
    assert read_range(client, path, 4, 7) == b"o wo"
    state = head_state(client, path)
    assert state["complete"] is True and state["ranges"] == [(0, 11)]
    assert state["headers"]["ETag"] and state["headers"]["Repr-Digest"]
    # Concatenated by reference: nothing was written to the final's own object.
    assert stored_size(service, path) == 0


def test_absolute_urls_and_a_partial_used_twice(client):
    a = partial(client, b"ab")
    b = partial(client, b"cd")
    path = final_path(client, [f"http://localhost{a}", b, f"https://elsewhere.example{a}"])
    assert read_all(client, path) == b"abcdab"
    assert read_range(client, path, 3, 4) == b"da"


def test_zero_length_partials(client):
    empty = partial(client, length=0)
    a = partial(client, b"xyz")
    path = final_path(client, [empty, a, empty])
    assert read_all(client, path) == b"xyz"
    path = final_path(client, [empty])
    assert tus_head(client, path).headers["Upload-Offset"] == "0"
    assert read_all(client, path) == b""


def test_unfinished_partials(client, service):
    """concatenation-unfinished: the final exists before its partials are done."""
    a = partial(client, length=3)
    b = partial(client, b"def")
    path = final_path(client, [a, b])
    head = tus_head(client, path)
    assert "Upload-Offset" not in head.headers  # not concatenated yet
    assert head.headers["Upload-Length"] == "6"
    assert "Upload-Expires" in head.headers
    # Byte-range clients see the committed part already, and can read it.
    state = head_state(client, path)
    assert state["ranges"] == [(3, 6)] and state["complete"] is False
    assert read_range(client, path, 3, 5) == b"def"
    problem(client.get(path, headers={"Range": "bytes=0-2"}), 416)

    assert tus_patch(client, a, 0, b"ab").status_code == 204
    assert "Upload-Offset" not in tus_head(client, path).headers  # a is not complete yet
    assert tus_patch(client, a, 2, b"c").status_code == 204
    head = tus_head(client, path)
    assert head.headers["Upload-Offset"] == "6"
    assert "Upload-Expires" not in head.headers
    assert read_all(client, path) == b"abcdef"
    assert stored_size(service, path) == 0


def test_a_final_missed_by_a_crash_is_assembled_on_head(client, service, monkeypatch):
    a = partial(client, length=2)
    path = final_path(client, [a])
    # The completing request dies before it reaches the finals waiting for it.
    monkeypatch.setattr(service.concat, "assemble", lambda final_id: False)
    assert tus_patch(client, a, 0, b"ok").status_code == 204
    monkeypatch.undo()
    assert tus_head(client, path).headers["Upload-Offset"] == "2"
    assert read_all(client, path) == b"ok"


def test_deferred_length_partial_can_join_once_its_length_is_known(client):
    a = partial(client)  # Upload-Defer-Length: 1
    problem(final(client, [a], expect=400), 400, "invalid-concatenation")
    assert tus_patch(client, a, 0, b"abc", {"Upload-Length": "3"}).status_code == 204
    assert read_all(client, final_path(client, [a])) == b"abc"


def test_patch_to_a_final_is_403(client):
    a = partial(client, length=3)
    path = final_path(client, [a])
    problem(tus_patch(client, path, 0, b"abc"), 403, "final-upload")
    problem(patch_message(client, path, 0, b"abc"), 403, "final-upload")
    problem(client.put(path, data=b"abc", headers={"Content-Range": "bytes 0-2/3"}), 403)
    assert tus_patch(client, a, 0, b"abc").status_code == 204
    problem(tus_patch(client, path, 3, b""), 403)
    assert read_all(client, path) == b"abc"


@pytest.mark.parametrize(
    "make_urls,extra",
    [
        (lambda p, plain: [p, plain], {}),  # a source that is not a partial upload
        (lambda p, plain: [p, MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"], {}),  # unknown
        (lambda p, plain: [p, "/elsewhere/" + p.rsplit("/", 1)[1]], {}),  # not our URL
        (lambda p, plain: [p, p + "/committed-ranges"], {}),
        (lambda p, plain: [p, MOUNT + "/bad.id"], {}),
        (lambda p, plain: [p], {"Upload-Length": "3"}),  # the length is not the client's
        (lambda p, plain: [p], {"Upload-Defer-Length": "1"}),
    ],
)
def test_bad_final_is_400_and_creates_nothing(client, service, make_urls, extra):
    p = partial(client, b"abc")
    plain = urlsplit(client.post(MOUNT, headers={**TUS, "Upload-Length": "3"}).headers["Location"]).path
    before = _count(service)
    problem(final(client, make_urls(p, plain), extra, expect=400), 400)
    assert _count(service) == before


@pytest.mark.parametrize("value", ["final;", "final", "final; /files/x", "partial;x", "whole"])
def test_malformed_upload_concat_is_400(client, service, value):
    problem(client.post(MOUNT, headers={**TUS, "Upload-Concat": value, "Upload-Length": "1"}), 400)
    assert _count(service) == 0


def test_final_with_a_body_is_400(client, service):
    p = partial(client, b"abc")
    response = client.post(MOUNT, data=b"xyz", headers={
        **TUS, "Upload-Concat": f"final;{p}", "Content-Type": OCTETS})
    problem(response, 400)
    assert _count(service) == 1


class TestSmallMaximum:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "MAX_RESOURCE_SIZE": "10"}

    def test_final_over_the_maximum_size_is_413(self, client, service):
        a = partial(client, b"123456")
        problem(final(client, [a, a], expect=413), 413, "too-large")
        assert _count(service) == 1
        assert read_all(client, final_path(client, [a])) == b"123456"


def test_terminating_a_partial_keeps_the_final_whole(client, service, settings_overrides):
    a = partial(client, b"left ")
    b = partial(client, b"right")
    path = final_path(client, [a, b])
    assert client.delete(a, headers=TUS).status_code == 204
    assert tus_head(client, a).status_code == 404
    problem(tus_patch(client, a, 5, b"x"), 404)
    problem(final(client, [a], expect=400), 400)  # gone for clients: it cannot join again
    assert read_all(client, path) == b"left right"
    # Deleting the final removes the terminated partial's bytes too, but not b's.
    assert client.delete(path, headers=TUS).status_code == 204
    assert not service.storage.exists(a.rsplit("/", 1)[1])
    assert not service.storage.exists(path.rsplit("/", 1)[1])
    assert service.storage.exists(b.rsplit("/", 1)[1])
    assert read_all(client, b) == b"right"
    assert _count(service) == 1


def test_a_partial_read_by_two_finals_lives_until_the_last_goes(client, service):
    a = partial(client, b"abc")
    one = final_path(client, [a])
    two = final_path(client, [a, a])
    client.delete(a, headers=TUS)
    client.delete(one, headers=TUS)
    assert read_all(client, two) == b"abcabc"
    client.delete(two, headers=TUS)
    assert not service.storage.exists(a.rsplit("/", 1)[1])
    assert _count(service) == 0


def test_expired_unfinished_final_is_cleaned_up_with_its_terminated_partials(client, service):
    a = partial(client, length=4)
    done = partial(client, b"ok")
    path = final_path(client, [a, done])
    client.delete(a, headers=TUS)  # hidden: the final still refers to it
    expire(service, path)
    assert tus_head(client, path).status_code == 410
    assert service.remove_expired() == 1
    assert tus_head(client, path).status_code == 404
    assert not service.storage.exists(a.rsplit("/", 1)[1])
    assert read_all(client, done) == b"ok"
    assert _count(service) == 1


def test_expired_partial_read_by_a_final_is_hidden_not_removed(client, service):
    a = partial(client, length=4)
    b = partial(client, b"zz")
    path = final_path(client, [a, b])
    expire(service, a)
    assert service.remove_expired() == 1
    assert tus_head(client, a).status_code == 404
    assert service.storage.exists(a.rsplit("/", 1)[1])  # the final still refers to it
    assert offset_of(client, b) == 2
    assert "Upload-Offset" not in tus_head(client, path).headers


def test_concatenated_bytes_stay_put_on_disk(client, service, settings_overrides):
    """The final's own file holds no blocks: the bytes were never copied."""
    data = os.urandom(3 << 20)
    a = partial(client, data[: 1 << 20])
    b = partial(client, data[1 << 20 :])
    path = final_path(client, [a, b])
    assert read_all(client, path) == data
    resource_id = path.rsplit("/", 1)[1]
    found = [
        os.path.join(folder, name)
        for folder, _dirs, names in os.walk(settings_overrides["DATA_DIR"])
        for name in names
        if name == resource_id
    ]
    assert len(found) == 1
    assert os.stat(found[0]).st_size == 0 and os.stat(found[0]).st_blocks == 0


def _count(service):
    from sqlalchemy import func
    from sqlalchemy import select

    from byterange_server.db.models import resources

    with service.db.read() as conn:
        return conn.execute(
            select(func.count()).select_from(resources).where(resources.c.terminated_at.is_(None))
        ).scalar_one()


# -- issue 11, item 6: concatenation must not amplify hashing ------------------------------------


class TestFewParts:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "MAX_CONCAT_PARTS": "4"}

    def test_more_partials_than_allowed_are_refused_before_any_is_looked_at(self, client, service):
        """Audit: a 7.5 kB header naming one 8 MiB partial 250 times made a 2 GiB final."""
        a = partial(client, b"abc")
        before = _count(service)
        unknown = [MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"] * 5  # refused for their number, unread
        body = problem(final(client, unknown, expect=400), 400, "limit-exceeded")
        assert body["max-concat-parts"] == 4 and body["parts"] == 5
        problem(final(client, [a] * 5, expect=400), 400, "limit-exceeded")
        assert _count(service) == before
        assert read_all(client, final_path(client, [a] * 4)) == b"abc" * 4


def test_the_default_cap_stops_the_audits_header(client, service):
    a = partial(client, b"12345678")
    problem(final(client, [a] * 250, expect=400), 400, "limit-exceeded")
    assert read_all(client, final_path(client, [a] * 100)) == b"12345678" * 100


def test_concurrent_first_reads_hash_a_final_once(app, client, service, monkeypatch):
    """Audit: every concurrent first HEAD of a final hashed all of it. One reader hashes (it holds
    the final's digest lease); the others answer at once, without ETag and Repr-Digest."""
    from byterange_server.storage.composed import ComposedObject

    a = partial(client, os.urandom(1 << 20))
    path = final_path(client, [a, a, a])
    hashed = []
    release = threading.Event()
    real = ComposedObject.readinto_at

    def slow_read(self, offset, buffer):
        hashed.append(len(buffer))
        release.wait(timeout=30)  # on the old code every reader gets here, and waits this out
        return real(self, offset, buffer)

    monkeypatch.setattr(ComposedObject, "readinto_at", slow_read)
    answers: dict[int, object] = {}

    def head(index: int) -> None:
        answers[index] = app.test_client().head(path)

    hasher = threading.Thread(target=head, args=(0,))
    hasher.start()
    deadline = time.monotonic() + 30
    while not hashed and time.monotonic() < deadline:
        time.sleep(0.01)
    others = [threading.Thread(target=head, args=(index,)) for index in range(1, 6)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(timeout=60)
    release.set()
    hasher.join(timeout=60)
    monkeypatch.undo()
    assert sum(hashed) == 3 << 20  # the final's bytes, read once
    assert answers[0].status_code == 200 and answers[0].headers["ETag"]
    for index in range(1, 6):
        assert answers[index].status_code == 200 and "ETag" not in answers[index].headers
        assert "Repr-Digest" not in answers[index].headers
    assert client.head(path).headers["ETag"] == answers[0].headers["ETag"]


def test_a_reader_that_died_hashing_is_replaced(client, service, monkeypatch):
    """A hasher that dies leaves its lease to lapse; the next reader after that hashes."""
    from byterange_server.uploads import concat

    a = partial(client, b"abc")
    path = final_path(client, [a])
    monkeypatch.setattr(concat, "hash_into", _boom)
    assert client.head(path).status_code == 500
    monkeypatch.undo()
    assert client.head(path).headers["ETag"]  # released on the error: no wait for the lease


def _boom(*args, **kwargs):
    raise RuntimeError("the hashing reader died")
