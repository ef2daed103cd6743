"""tus PATCH: appends at Upload-Offset, deferred lengths, checksums and checksum trailers (204, 400,
409, 413, 415, 460). After each error the committed state is checked, so "nothing kept" is
shown, not assumed."""

from __future__ import annotations

import base64

import pytest
from werkzeug.exceptions import ClientDisconnected

from ..helpers import MOUNT
from ..helpers import BodyStream
from ..helpers import problem
from ..helpers import read_all
from ..helpers import send_stream
from .helpers import OCTETS
from .helpers import TUS
from .helpers import checksum
from .helpers import create
from .helpers import create_path
from .helpers import offset_of
from .helpers import send_chunked
from .helpers import tus_head
from .helpers import tus_patch


def _append_with_trailer(service, path, data, trailer):
    import io

    from byterange_server.api.body import CountingReader
    from byterange_server.uploads.tus import TusUploads

    body = CountingReader(io.BytesIO(data), content_length=None, chunk_size=4)
    return TusUploads(service).append(
        path.rsplit("/", 1)[1], body, offset=0, content_length=None, trailer_checksum=trailer
    )


def test_deferred_length_is_echoed_until_a_patch_sets_it(client):
    path = create_path(client, headers={"Upload-Defer-Length": "1"})
    response = tus_head(client, path)
    assert response.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in response.headers
    response = tus_patch(client, path, 0, b"hello")
    assert response.status_code == 204
    assert response.headers["Upload-Defer-Length"] == "1"
    response = tus_patch(client, path, 5, b" world", {"Upload-Length": "11"})
    assert response.status_code == 204, response.get_data()
    assert response.headers["Upload-Length"] == "11"
    assert "Upload-Defer-Length" not in response.headers
    assert read_all(client, path) == b"hello world"


def test_length_set_by_an_empty_patch(client):
    path = create_path(client, headers={"Upload-Defer-Length": "1"})
    assert tus_patch(client, path, 0, b"abc").status_code == 204
    response = tus_patch(client, path, 3, b"", {"Upload-Length": "3"})
    assert response.status_code == 204
    assert response.headers["Upload-Length"] == "3"
    assert read_all(client, path) == b"abc"


def test_length_cannot_change_once_set(client):
    path = create_path(client, headers={"Upload-Defer-Length": "1"})
    assert tus_patch(client, path, 0, b"ab", {"Upload-Length": "10"}).status_code == 204
    problem(tus_patch(client, path, 2, b"cd", {"Upload-Length": "12"}), 409, "length-conflict")
    assert offset_of(client, path) == 2
    problem(tus_patch(client, path, 2, b"", {"Upload-Length": "1"}), 409)
    # Repeating the same length is harmless.
    assert tus_patch(client, path, 2, b"cd", {"Upload-Length": "10"}).status_code == 204


def test_deferred_upload_past_declared_length_is_413(client):
    path = create_path(client, headers={"Upload-Defer-Length": "1"})
    response = tus_patch(client, path, 0, b"too long", {"Upload-Length": "3"})
    problem(response, 413)
    assert offset_of(client, path) == 0
    assert tus_head(client, path).headers["Upload-Defer-Length"] == "1"


def test_patch_appends_in_chunks(client):
    path = create_path(client, 9)
    for offset, chunk in ((0, b"abc"), (3, b"def"), (6, b"ghi")):
        response = tus_patch(client, path, offset, chunk)
        assert response.status_code == 204
        assert response.headers["Upload-Offset"] == str(offset + 3)
        assert response.get_data() == b""
    assert read_all(client, path) == b"abcdefghi"


def test_empty_patch_is_204_with_the_same_offset(client):
    path = create_path(client, 9)
    tus_patch(client, path, 0, b"abc")
    response = tus_patch(client, path, 3, b"")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"
    problem(tus_patch(client, path, 2, b""), 409, "offset-mismatch")


@pytest.mark.parametrize(
    "content_type,status",
    [(None, 415), ("application/octet-stream", 415), ("message/byterange", 415), ("not a type", 400)],
)
def test_patch_of_another_type_is_refused(client, content_type, status):
    path = create_path(client, 9)
    headers = {**TUS, "Upload-Offset": "0"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    problem(client.patch(path, data=b"abc", headers=headers), status)
    assert offset_of(client, path) == 0


def test_offset_type_parameters_are_allowed(client):
    path = create_path(client, 3)
    response = tus_patch(client, path, 0, b"abc", {"Content-Type": OCTETS + "; charset=binary"})
    assert response.status_code == 204


@pytest.mark.parametrize("offset", [None, "-1", "1.0", "x", "1" * 16])
def test_missing_or_bad_offset_is_400(client, offset):
    path = create_path(client, 9)
    headers = {**TUS, "Content-Type": OCTETS}
    if offset is not None:
        headers["Upload-Offset"] = offset
    problem(client.patch(path, data=b"abc", headers=headers), 400)
    assert offset_of(client, path) == 0


def test_offset_mismatch_is_409_with_the_current_offset(client):
    path = create_path(client, 9)
    tus_patch(client, path, 0, b"abc")
    for wrong in (0, 2, 4, 9):
        response = tus_patch(client, path, wrong, b"xyz")
        body = problem(response, 409, "offset-mismatch")
        assert response.headers["Upload-Offset"] == "3"
        assert body["expected-offset"] == 3 and body["provided-offset"] == wrong
    assert offset_of(client, path) == 3


def test_length_overrun_is_413_and_nothing_is_kept(client):
    path = create_path(client, 5)
    tus_patch(client, path, 0, b"ab")
    response = tus_patch(client, path, 2, b"cdefgh")
    problem(response, 413)
    assert response.headers["Upload-Offset"] == "2"
    assert offset_of(client, path) == 2


def test_length_overrun_of_a_chunked_body_is_413(client):
    path = create_path(client, 5)
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = send_chunked(client, path, stream, {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS})
    problem(response, 413)
    assert offset_of(client, path) == 0


def test_patch_after_completion_is_413(client):
    path = create_path(client, 3)
    tus_patch(client, path, 0, b"abc")
    problem(tus_patch(client, path, 3, b"d"), 413)


def test_chunked_patch(client):
    path = create_path(client, 8)
    stream = BodyStream(b"abcdefgh", chunk=3)
    response = send_chunked(client, path, stream, {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS})
    assert response.status_code == 204
    assert read_all(client, path) == b"abcdefgh"


def test_interrupted_patch_keeps_the_received_prefix(client, service):
    """tus: 'the server SHOULD store as much as possible'; the prefix is durable and shown."""
    path = create_path(client, 100)
    stream = BodyStream(b"x" * 40, chunk=10, fail=ClientDisconnected())
    send_stream(client, "PATCH", path, stream, 100, {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS})
    assert offset_of(client, path) == 40
    assert tus_patch(client, path, 40, b"y" * 60).status_code == 204
    assert read_all(client, path) == b"x" * 40 + b"y" * 60


def test_short_body_keeps_the_received_prefix(client):
    path = create_path(client, 100)
    stream = BodyStream(b"x" * 25, chunk=10)
    send_stream(client, "PATCH", path, stream, 50, {**TUS, "Upload-Offset": "0", "Content-Type": OCTETS})
    assert offset_of(client, path) == 25


def test_checksum_spec_example(client):
    path = create_path(client, 11)
    example = {"Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="}
    response = tus_patch(client, path, 0, b"hello world", example)
    assert response.status_code == 204


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_checksum_match_and_mismatch(client, service, algorithm):
    path = create_path(client, 6)
    response = tus_patch(client, path, 0, b"abc", {"Upload-Checksum": checksum(algorithm, b"abc")})
    assert response.status_code == 204
    response = tus_patch(client, path, 3, b"def", {"Upload-Checksum": checksum(algorithm, b"xyz")})
    assert response.status_code == 460
    assert response.status == "460 Checksum Mismatch"
    problem(response, 460, "checksum-mismatch")
    assert response.headers["Upload-Offset"] == "3"
    assert offset_of(client, path) == 3
    right = {"Upload-Checksum": checksum(algorithm, b"def")}
    assert tus_patch(client, path, 3, b"def", right).status_code == 204
    assert read_all(client, path) == b"abcdef"


@pytest.mark.parametrize(
    "value,code",
    [
        ("crc32 AAAAAA==", "unsupported-checksum-algorithm"),
        ("sha3-256 " + base64.b64encode(b"\0" * 32).decode(), "unsupported-checksum-algorithm"),
        ("SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "malformed-header"),
        ("sha1", "malformed-header"),
        ("sha1 not-base64", "malformed-header"),
        ("sha1 AAAA", "malformed-header"),  # wrong digest size
    ],
)
def test_bad_checksum_is_400_and_nothing_is_kept(client, value, code):
    path = create_path(client, 11)
    problem(tus_patch(client, path, 0, b"hello world", {"Upload-Checksum": value}), 400, code)
    assert offset_of(client, path) == 0


def test_interrupted_patch_with_checksum_keeps_nothing(client):
    path = create_path(client, 100)
    stream = BodyStream(b"x" * 40, chunk=10, fail=ClientDisconnected())
    send_stream(client, "PATCH", path, stream, 100, {
        **TUS, "Upload-Offset": "0", "Content-Type": OCTETS,
        "Upload-Checksum": checksum("sha256", b"x" * 100),
    })
    assert offset_of(client, path) == 0


def test_checksum_trailer_is_not_offered_without_gunicorn(client):
    assert "checksum-trailer" not in client.options(MOUNT).headers["Tus-Extension"].split(",")


def test_checksum_trailer_is_refused_where_trailers_cannot_be_read(client):
    path = create_path(client, 3)
    response = tus_patch(client, path, 0, b"abc", {"Trailer": "Upload-Checksum"})
    problem(response, 400, "malformed-header")
    assert offset_of(client, path) == 0
    response = create(client, 3, data=b"abc", headers={"Trailer": "upload-checksum"}, expect=400)
    assert "Location" not in response.headers


def test_trailer_checksum_is_verified_from_the_stored_bytes(client, service):
    from byterange_server.errors import ChecksumMismatchError
    from byterange_server.errors import MalformedHeaderError
    from byterange_server.protocol.tus import parse_upload_checksum

    path = create_path(client, 11)
    wrong = parse_upload_checksum(checksum("md5", b"x"))
    with pytest.raises(ChecksumMismatchError):
        _append_with_trailer(service, path, b"hello world", lambda: wrong)
    assert offset_of(client, path) == 0

    def missing():
        raise MalformedHeaderError("no trailer")

    with pytest.raises(MalformedHeaderError):
        _append_with_trailer(service, path, b"hello world", missing)
    assert offset_of(client, path) == 0
    state = _append_with_trailer(
        service, path, b"hello world", lambda: parse_upload_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
    )
    assert state.offset == 11 and read_all(client, path) == b"hello world"
