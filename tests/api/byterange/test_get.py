"""GET of complete and incomplete resources (PROTOCOL.md §5; RFC 9110 §13-§15; E5)."""

from __future__ import annotations

import hashlib
import os

import pytest

from ..helpers import MOUNT
from ..helpers import allocate
from ..helpers import for_each
from ..helpers import parse_multipart_byteranges
from ..helpers import parse_state
from ..helpers import patch_multipart
from ..helpers import problem
from ..helpers import sha256_field
from ..helpers import stored_bytes
from ..helpers import upload
from ..helpers import write

DATA = b"0123456789abcdefghijklmnopqrstuvwxyz"  # 36 bytes
L = len(DATA)


@pytest.fixture
def complete(client):
    return upload(
        client,
        DATA,
        {
            "Content-Type": "text/plain; charset=us-ascii",
            "Content-Disposition": 'attachment; filename="alpha.txt"',
        },
    )


class TestComplete:
    def test_full_get(self, client, complete):
        response = client.get(complete)
        assert response.status_code == 200
        assert response.get_data() == DATA
        assert response.headers["Content-Length"] == str(L)
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert response.headers["Repr-Digest"] == sha256_field(DATA)
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Content-Type"] == "text/plain; charset=us-ascii"
        assert "alpha.txt" in response.headers["Content-Disposition"]
        assert response.headers.get("Cache-Control") != "no-store"
        assert "Last-Modified" in response.headers

    def test_repr_digest_matches_hashlib_for_larger_file(self, client):
        data = os.urandom(2 * 1024 * 1024 + 3)
        path = upload(client, data)
        response = client.get(path, buffered=False)
        assert response.status_code == 200
        assert response.is_streamed  # served in chunks, not built whole in memory
        body = b"".join(response.response)
        response.close()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert response.headers["Repr-Digest"] == sha256_field(data)

    def test_etag_is_stable_and_differs_per_content(self, client, complete):
        other = upload(client, DATA[::-1])
        assert client.get(complete).headers["ETag"] == client.head(complete).headers["ETag"]
        assert client.get(complete).headers["ETag"] != client.get(other).headers["ETag"]

    SINGLE_RANGES = (
        ("bytes=2-5", 2, 5),
        ("bytes=0-0", 0, 0),
        ("bytes=30-", 30, L - 1),  # open-ended
        ("bytes=-6", L - 6, L - 1),  # suffix
        ("bytes=-1000", 0, L - 1),  # suffix longer than the representation
        ("bytes=10-1000", 10, L - 1),  # last-pos clamped
        ("BYTES=3-4", 3, 4),  # unit is case-insensitive
        ("bytes=35-35", 35, 35),
    )

    def test_single_range(self, client, complete):
        etag = client.head(complete).headers["ETag"]

        def check(case):
            range_value, first, last = case
            response = client.get(complete, headers={"Range": range_value})
            assert response.status_code == 206
            assert response.get_data() == DATA[first : last + 1]
            assert response.headers["Content-Range"] == f"bytes {first}-{last}/{L}"
            assert response.headers["Content-Length"] == str(last - first + 1)
            assert response.headers["ETag"] == etag

        for_each(self.SINGLE_RANGES, check)

    def test_multiple_ranges(self, client, complete):
        response = client.get(complete, headers={"Range": "bytes=0-2,10-12,-3"})
        assert response.status_code == 206
        assert response.mimetype == "multipart/byteranges"
        assert "Content-Range" not in response.headers
        body = response.get_data()
        assert response.headers["Content-Length"] == str(len(body))
        parts = parse_multipart_byteranges(response.headers["Content-Type"], body)
        assert [(h["content-range"], d) for h, d in parts] == [
            (f"bytes 0-2/{L}", DATA[0:3]),
            (f"bytes 10-12/{L}", DATA[10:13]),
            (f"bytes {L - 3}-{L - 1}/{L}", DATA[-3:]),
        ]
        assert all(h["content-type"] == "text/plain; charset=us-ascii" for h, _ in parts)

    def test_multiple_ranges_with_one_unsatisfiable(self, client, complete):
        response = client.get(complete, headers={"Range": "bytes=0-1,500-600"})
        assert response.status_code == 206
        # One satisfiable range left: either a single part or a one-part multipart body.
        if response.mimetype == "multipart/byteranges":
            parts = parse_multipart_byteranges(response.headers["Content-Type"], response.get_data())
            assert [d for _, d in parts] == [DATA[0:2]]
        else:
            assert response.get_data() == DATA[0:2]
            assert response.headers["Content-Range"] == f"bytes 0-1/{L}"

    def test_unsatisfiable_range_is_416(self, client, complete):
        def check(range_value):
            response = client.get(complete, headers={"Range": range_value})
            problem(response, 416, "range-not-satisfiable")
            assert response.headers["Content-Range"] == f"bytes */{L}"

        for_each(["bytes=36-", "bytes=100-200", "bytes=-0", "bytes=36-40,50-"], check)

    def test_many_overlapping_ranges_are_refused(self, client, complete):
        response = client.get(complete, headers={"Range": "bytes=0-9,1-10,2-11,3-12"})
        problem(response, 416)

    def test_invalid_range_is_ignored(self, client, complete):
        def check(range_value):
            response = client.get(complete, headers={"Range": range_value})
            assert response.status_code == 200
            assert response.get_data() == DATA

        for_each(
            ["bytes=5-2", "items=0-3", "bytes=abc", "bytes 0-3", "bytes=1234567890123456-", "bytes="], check
        )

    def test_if_range_matching_etag_gives_206(self, client, complete):
        etag = client.head(complete).headers["ETag"]
        response = client.get(complete, headers={"Range": "bytes=0-3", "If-Range": etag})
        assert response.status_code == 206
        assert response.get_data() == DATA[:4]

    def test_if_range_other_etag_gives_200(self, client, complete):
        response = client.get(complete, headers={"Range": "bytes=0-3", "If-Range": '"not-it"'})
        assert response.status_code == 200
        assert response.get_data() == DATA

    def test_if_range_weak_etag_gives_200(self, client, complete):
        etag = client.head(complete).headers["ETag"]
        response = client.get(complete, headers={"Range": "bytes=0-3", "If-Range": "W/" + etag})
        assert response.status_code == 200

    def test_if_range_last_modified_gives_206(self, client, complete):
        modified = client.head(complete).headers["Last-Modified"]
        response = client.get(complete, headers={"Range": "bytes=0-3", "If-Range": modified})
        assert response.status_code == 206

    def test_if_range_other_date_gives_200(self, client, complete):
        response = client.get(
            complete, headers={"Range": "bytes=0-3", "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"}
        )
        assert response.status_code == 200

    def test_if_none_match_gives_304(self, client, complete):
        etag = client.head(complete).headers["ETag"]
        for value in (etag, "W/" + etag, f'"other", {etag}', "*"):
            response = client.get(complete, headers={"If-None-Match": value})
            assert response.status_code == 304, value
            assert response.get_data() == b""
            assert response.headers["ETag"] == etag

    def test_if_none_match_other_gives_200(self, client, complete):
        response = client.get(complete, headers={"If-None-Match": '"other"'})
        assert response.status_code == 200 and response.get_data() == DATA

    def test_if_none_match_beats_range(self, client, complete):
        etag = client.head(complete).headers["ETag"]
        response = client.get(complete, headers={"If-None-Match": etag, "Range": "bytes=0-1"})
        assert response.status_code == 304

    def test_empty_resource(self, client):
        path = allocate(client, 0)
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_data() == b""
        assert response.headers["Content-Length"] == "0"
        assert response.headers["Repr-Digest"] == sha256_field(b"")


class TestIncomplete:
    def test_no_range_is_409_with_state(self, client):
        path = allocate(client, L)
        write(client, path, 0, DATA[:10])
        response = client.get(path)
        problem(response, 409, "incomplete-resource")
        state = parse_state(response.headers)
        assert state["offset"] == 10 and state["length"] == L and state["complete"] is False
        assert state["ranges"] == [(0, 10)]

    def test_no_range_on_empty_resource_is_409(self, client):
        path = allocate(client)
        problem(client.get(path), 409, "incomplete-resource")

    def test_range_inside_committed_is_206_with_known_length(self, client):
        path = allocate(client, L)
        write(client, path, 10, DATA[10:20])
        response = client.get(path, headers={"Range": "bytes=12-15"})
        assert response.status_code == 206
        assert response.get_data() == DATA[12:16]
        assert response.headers["Content-Range"] == f"bytes 12-15/{L}"
        assert response.headers["Cache-Control"] == "no-store"
        assert parse_state(response.headers)["ranges"] == [(10, 20)]
        assert "ETag" not in response.headers

    def test_range_inside_committed_is_206_with_unknown_length(self, client):
        path = allocate(client)
        write(client, path, 0, DATA[:10])
        response = client.get(path, headers={"Range": "bytes=0-9"})
        assert response.status_code == 206
        assert response.get_data() == DATA[:10]
        assert response.headers["Content-Range"] == "bytes 0-9/*"

    def test_whole_committed_extent_exactly(self, client):
        path = allocate(client, L)
        write(client, path, 5, DATA[5:9])
        response = client.get(path, headers={"Range": "bytes=5-8"})
        assert response.status_code == 206 and response.get_data() == DATA[5:9]

    def test_multiple_committed_ranges(self, client):
        path = allocate(client, L)
        write(client, path, 0, DATA[:5])
        write(client, path, 20, DATA[20:30])
        response = client.get(path, headers={"Range": "bytes=1-3,22-25"})
        assert response.status_code == 206
        parts = parse_multipart_byteranges(response.headers["Content-Type"], response.get_data())
        assert [(h["content-range"], d) for h, d in parts] == [
            (f"bytes 1-3/{L}", DATA[1:4]),
            (f"bytes 22-25/{L}", DATA[22:26]),
        ]

    def test_suffix_range_with_known_length(self, client):
        path = allocate(client, L)
        write(client, path, L - 6, DATA[-6:])
        response = client.get(path, headers={"Range": "bytes=-4"})
        assert response.status_code == 206
        assert response.get_data() == DATA[-4:]

    def test_range_touching_a_hole_is_416_with_state(self, client):
        path = allocate(client, L)
        write(client, path, 0, DATA[:9])  # [0, 9)
        write(client, path, 12, DATA[12:15])  # [12, 15)

        def check(range_value):
            response = client.get(path, headers={"Range": range_value})
            problem(response, 416, "range-not-satisfiable")
            state = parse_state(response.headers)
            assert state["ranges"] == [(0, 9), (12, 15)] and state["offset"] == 9
            assert response.headers.get("Content-Range") == f"bytes */{L}"

        ranges = [
            "bytes=0-9",
            "bytes=8-12",
            "bytes=3-4,9-10",
            "bytes=20-",
            "bytes=-5",
            "bytes=10-19",
            "bytes=0-35",
        ]
        for_each(ranges, check)
        # And the committed parts next to the hole are still served.
        assert client.get(path, headers={"Range": "bytes=0-8,12-14"}).status_code == 206

    def test_range_touching_a_hole_with_unknown_length_is_416(self, client):
        path = allocate(client)
        write(client, path, 0, DATA[:9])
        response = client.get(path, headers={"Range": "bytes=5-"})
        problem(response, 416)
        assert parse_state(response.headers)["ranges"] == [(0, 9)]

    def test_uncommitted_bytes_in_storage_are_never_served(self, client, service):
        """A request that failed after streaming bytes leaves them in storage, uncommitted."""
        path = allocate(client, L)
        write(client, path, 30, DATA[30:33])
        response = patch_multipart(client, path, [(0, DATA[:10]), (30, b"XYZ")])
        problem(response, 409, "content-mismatch")
        assert stored_bytes(service, path, 10) in (DATA[:10], b"\0" * 10, b"")  # maybe written
        problem(client.get(path, headers={"Range": "bytes=0-9"}), 416)
        problem(client.get(path, headers={"Range": "bytes=0-0"}), 416)
        problem(client.get(path), 409)

    def test_invalid_range_on_incomplete_is_409(self, client):
        path = allocate(client, L)
        write(client, path, 0, DATA[:4])
        problem(client.get(path, headers={"Range": "bytes=3-1"}), 409, "incomplete-resource")


def test_get_unknown_resource_is_404(client):
    problem(client.get(MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not-found")


def test_get_collection_is_405(client):
    problem(client.get(MOUNT), 405)
