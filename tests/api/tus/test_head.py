"""tus HEAD: the committed offset, at once even while a PATCH runs; 404 and 410."""

from __future__ import annotations

from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import problem
from ..helpers import read_all
from ..helpers import send_stream
from .helpers import OCTETS
from .helpers import TUS
from .helpers import create_path
from .helpers import expire
from .helpers import offset_of
from .helpers import tus_head
from .helpers import tus_patch


def test_head(client):
    path = create_path(client, 10)
    response = tus_head(client, path)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "10"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_data() == b""


def test_head_and_patch_of_unknown_upload_are_404_without_offset(client):
    missing = MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"
    for response in (tus_head(client, missing), tus_patch(client, missing, 0, b"x")):
        assert response.status_code == 404
        assert "Upload-Offset" not in response.headers


def test_expired_upload_is_410(client, service):
    path = create_path(client, 10)
    assert tus_patch(client, path, 0, b"abc").status_code == 204
    expire(service, path)
    response = tus_head(client, path)
    assert response.status_code == 410
    assert "Upload-Offset" not in response.headers
    problem(tus_patch(client, path, 3, b"def"), 410)


def test_head_during_a_patch_answers_at_once_with_the_committed_offset(client, app):
    """No whole-upload lock: a HEAD in the middle of a PATCH body neither waits nor breaks it."""
    path = create_path(client, 30)
    tus_patch(client, path, 0, b"0123456789")
    seen = []

    def probe(position):
        if position == 10:
            other = app.test_client()
            seen.append(offset_of(other, path))
            # A second writer at the same offset is refused while the first holds the range.
            seen.append(tus_patch(other, path, 10, b"z" * 20).status_code)

    stream = BodyStream(b"a" * 20, chunk=10, on_read=probe)
    response = send_stream(client, "PATCH", path, stream, 20,
                           {**TUS, "Upload-Offset": "10", "Content-Type": OCTETS})
    assert response.status_code == 204, response.get_data()
    assert seen == [10, 409]
    assert read_all(client, path) == b"0123456789" + b"a" * 20
