"""The write rules every PATCH media type must follow, run once per format.

A test module subclasses :class:`WriteRules` as ``class TestWriteRules(WriteRules): media_type =
...``; ``test_patch_message.py``, ``test_patch_multipart.py`` and ``test_patch_binary.py`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from byterange_server.protocol.message import encode_message

from ..helpers import MESSAGE
from ..helpers import MOUNT
from ..helpers import MULTIPART
from ..helpers import Part
from ..helpers import allocate
from ..helpers import binary_body
from ..helpers import committed_link
from ..helpers import extent_rows
from ..helpers import for_each
from ..helpers import head_state
from ..helpers import multipart_body
from ..helpers import parse_state
from ..helpers import part_fields
from ..helpers import patch_parts
from ..helpers import problem
from ..helpers import read_all
from ..helpers import read_range
from ..helpers import sha256_field
from ..helpers import sha512_field
from ..helpers import stored_bytes


class WriteRules:
    """The write rules of the byte-range PATCH formats (docs/spec-notes.md#edge-cases), for one
    ``media_type``; every request here has one part, so message/byterange can carry it."""

    media_type: str = MESSAGE

    def send(
        self, client: Any, path: str, parts: Sequence[Part], headers: Mapping[str, str] | None = None
    ) -> Any:
        return patch_parts(client, path, self.media_type, parts, headers)

    def test_single_part_writes_and_reports_state(self, client: Any, service: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [(0, b"01234")])
        assert response.status_code in (200, 204)
        state = parse_state(response.headers)
        assert state["offset"] == 5 and state["length"] == 10 and state["complete"] is False
        assert state["ranges"] == [(0, 5)]
        assert state["cache_control"] == "no-store"
        assert committed_link(response.headers)
        assert response.headers["Preference-Applied"] == "transaction=persist"
        assert stored_bytes(service, path, 5) == b"01234"
        assert read_range(client, path, 0, 4) == b"01234"

    def test_sparse_write_then_fill_completes(self, client: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [(6, b"6789", 10)])
        assert response.status_code == 204
        state = parse_state(response.headers)
        assert state["offset"] == 0 and state["ranges"] == [(6, 10)]
        response = self.send(client, path, [(0, b"012345", 10)])
        assert response.status_code == 204
        state = parse_state(response.headers)
        assert state["complete"] is True and state["offset"] == 10 and state["ranges"] == [(0, 10)]
        assert response.headers.get("Cache-Control") != "no-store"
        assert read_all(client, path) == b"0123456789"

    def test_complete_length_in_range_sets_length(self, client: Any) -> None:
        path = allocate(client)
        response = self.send(client, path, [(0, b"abc", 8)])
        assert response.status_code == 204
        assert parse_state(response.headers)["length"] == 8
        assert head_state(client, path)["length"] == 8

    def test_length_only_part_sets_length(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcd")])
        response = self.send(client, path, [((("Content-Range", "bytes */6"),), b"")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["length"] == 6
        assert head_state(client, path)["length"] == 6
        # Repeating the same length is fine.
        assert self.send(client, path, [((("Content-Range", "bytes */6"),), b"")]).status_code == 204

    def test_length_only_part_completes_covered_resource(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcd")])
        response = self.send(client, path, [((("Content-Range", "bytes */4"),), b"")])
        assert response.status_code == 204
        assert parse_state(response.headers)["complete"] is True
        assert read_all(client, path) == b"abcd"

    def test_different_later_length_is_409(self, client: Any) -> None:
        path = allocate(client)
        assert self.send(client, path, [((("Content-Range", "bytes */10"),), b"")]).status_code == 204
        problem(self.send(client, path, [((("Content-Range", "bytes */11"),), b"")]), 409, "length-conflict")
        problem(self.send(client, path, [(0, b"ab", 12)]), 409, "length-conflict")
        assert head_state(client, path)["length"] == 10
        assert head_state(client, path)["ranges"] == []

    def test_length_differs_from_allocation_is_409(self, client: Any) -> None:
        path = allocate(client, 10)
        problem(self.send(client, path, [((("Content-Range", "bytes */9"),), b"")]), 409, "length-conflict")
        assert head_state(client, path)["length"] == 10

    def test_length_below_committed_bytes_is_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(0, b"abcdef")])
        problem(self.send(client, path, [((("Content-Range", "bytes */4"),), b"")]), 409)
        state = head_state(client, path)
        assert state["length"] is None and state["ranges"] == [(0, 6)]

    def test_length_below_committed_sparse_bytes_is_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [(20, b"xy")])
        problem(self.send(client, path, [((("Content-Range", "bytes */21"),), b"")]), 409)
        assert head_state(client, path)["length"] is None

    def test_bytes_at_length_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(4, b"x")]), 409, "length-conflict")
        problem(self.send(client, path, [(2, b"xyz")]), 409, "length-conflict")
        problem(self.send(client, path, [(100, b"x")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_bytes_past_length_declared_later_are_409(self, client: Any) -> None:
        path = allocate(client)
        self.send(client, path, [((("Content-Range", "bytes */4"),), b"")])
        problem(self.send(client, path, [(3, b"xy")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_identical_resend_is_idempotent(self, client: Any, service: Any) -> None:
        path = allocate(client, 8)
        first = self.send(client, path, [(2, b"cdef")])
        assert first.status_code == 204
        again = self.send(client, path, [(2, b"cdef")])
        assert again.status_code == 204
        assert parse_state(again.headers) == parse_state(first.headers)
        assert extent_rows(service, path) == [(2, 6)]
        # A sub-range of committed bytes, identical, too.
        assert self.send(client, path, [(3, b"de")]).status_code == 204
        assert extent_rows(service, path) == [(2, 6)]

    def test_overlap_with_identical_bytes_extends(self, client: Any, service: Any) -> None:
        path = allocate(client, 8)
        self.send(client, path, [(2, b"cdef")])
        response = self.send(client, path, [(0, b"abcd")])
        assert response.status_code == 204
        assert parse_state(response.headers)["ranges"] == [(0, 6)]
        assert extent_rows(service, path) == [(0, 6)]
        assert stored_bytes(service, path, 6) == b"abcdef"

    def test_different_bytes_over_committed_are_409_and_nothing_applied(
        self, client: Any, service: Any
    ) -> None:
        path = allocate(client, 10)
        self.send(client, path, [(2, b"cdef")])
        # Starts with new bytes, then hits committed bytes that differ.
        response = self.send(client, path, [(0, b"abXdef")])
        body = problem(response, 409, "content-mismatch")
        assert body.get("first") is not None, body
        state = head_state(client, path)
        assert state["ranges"] == [(2, 6)]
        assert extent_rows(service, path) == [(2, 6)]
        assert read_range(client, path, 2, 5) == b"cdef"
        # The state headers come with the error.
        assert parse_state(response.headers)["ranges"] == [(2, 6)]

    def test_different_bytes_after_completion_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        self.send(client, path, [(0, b"abcd")])
        problem(self.send(client, path, [(1, b"X")]), 409, "content-mismatch")
        assert self.send(client, path, [(1, b"b")]).status_code == 204
        assert read_all(client, path) == b"abcd"

    def test_content_offset_part(self, client: Any) -> None:
        path = allocate(client, 10)
        response = self.send(client, path, [((("Content-Offset", "3"),), b"3456")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["ranges"] == [(3, 7)]

    def test_content_offset_with_complete_length_and_content_length(self, client: Any) -> None:
        path = allocate(client)
        fields = (("Content-Offset", "2; complete-length=6"), ("Content-Length", "4"))
        response = self.send(client, path, [(fields, b"cdef")])
        assert response.status_code == 204, response.get_data()
        state = parse_state(response.headers)
        assert state["length"] == 6 and state["ranges"] == [(2, 6)]

    def test_empty_content_offset_part_is_a_no_op(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [((("Content-Offset", "0"),), b"")])
        assert response.status_code == 204, response.get_data()
        assert parse_state(response.headers)["ranges"] == []

    def test_empty_content_offset_part_at_the_length_is_a_no_op(self, client: Any) -> None:
        """E2: an empty Content-Offset part writes nothing, also at the very end of a known
        length or with Content-Length: 0 (not "no parts", which is a document without any)."""
        path = allocate(client, 4)
        for fields in ((("Content-Offset", "4"),), (("Content-Offset", "2"), ("Content-Length", "0"))):
            response = self.send(client, path, [(fields, b"")])
            assert response.status_code == 204, response.get_data()
            assert parse_state(response.headers)["ranges"] == []

    def test_content_offset_at_length_is_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "4"),), b"x")]), 409)
        assert head_state(client, path)["ranges"] == []

    def test_content_offset_bytes_past_length_are_409(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "3"),), b"xy")]), 409, "length-conflict")
        assert head_state(client, path)["ranges"] == []

    def test_part_without_range_is_422(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Type", "text/plain"),), b"ab")]), 422, "missing-range")
        assert head_state(client, path)["ranges"] == []

    def test_unknown_unit_is_422(self, client: Any) -> None:
        def check(value: str) -> None:
            path = allocate(client, 4)
            problem(
                self.send(client, path, [((("Content-Range", value),), b"ab")]), 422, "unsupported-range-unit"
            )
            assert head_state(client, path)["ranges"] == []

        for_each(["items 0-1/4", "pages */4", "Items 0-1/*"], check)

    def test_content_offset_unknown_unit_is_422(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [((("Content-Offset", "0; unit=items"),), b"ab")]), 422)

    BAD_CONTENT_RANGES = (
        "bytes 3-1/4",  # last < first
        "bytes 0-1/1",  # length <= last
        "bytes 0-1/0",
        "bytes 0-1",  # no length
        "bytes 0 - 1/4",
        "bytes -1-1/4",
        "bytes 0-/4",  # legacy indeterminate end
        "bytes */*",
        "bytes 1-2/x",
        "bytes=0-1/4",
        "bytes 0-1234567890123456/*",  # 16 digits
        "bytes 1234567890123456-1234567890123457/*",
        "bytes */1234567890123456",
        "",
    )

    def test_bad_content_range_is_400(self, client: Any) -> None:
        def check(value: str) -> None:
            path = allocate(client)
            problem(self.send(client, path, [((("Content-Range", value),), b"ab")]), 400)
            state = head_state(client, path)
            assert state["ranges"] == [] and state["length"] is None

        for_each(self.BAD_CONTENT_RANGES, check)

    def test_part_content_length_disagreeing_is_400(self, client: Any) -> None:
        def check(content_length: str) -> None:
            path = allocate(client, 4)
            fields = (("Content-Range", "bytes 0-1/4"), ("Content-Length", content_length))
            problem(self.send(client, path, [(fields, b"ab")]), 400)
            assert head_state(client, path)["ranges"] == []

        for_each(["3", "1", "0", "x", "-2"], check)

    def test_part_content_length_agreeing_is_fine(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Length", "2"))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204

    def test_two_content_ranges_in_a_part_is_400(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Range", "bytes 2-3/4"))
        problem(self.send(client, path, [(fields, b"ab")]), 400)

    def test_unknown_part_fields_are_ignored(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("X-Whatever", "1"), ("Content-Range", "bytes 0-1/4"))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204

    def test_lowercase_unit_and_field_name_accepted(self, client: Any) -> None:
        path = allocate(client, 4)
        assert self.send(client, path, [((("content-range", "BYTES 0-1/4"),), b"ab")]).status_code == 204

    def test_if_none_match_star_on_existing_is_412(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"If-None-Match": "*"}), 412)
        assert head_state(client, path)["ranges"] == []

    def test_if_match_mismatch_is_412(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"If-Match": '"nope"'}), 412)
        assert head_state(client, path)["ranges"] == []

    def test_content_digest_correct_is_applied_atomically(self, client: Any) -> None:
        path = allocate(client, 4)
        body = self._body([(0, b"ab")])
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(body)})
        assert response.status_code == 204, response.get_data()
        assert response.headers["Preference-Applied"] == "transaction=atomic"
        assert head_state(client, path)["ranges"] == [(0, 2)]

    def test_content_digest_sha512_correct(self, client: Any) -> None:
        path = allocate(client, 4)
        body = self._body([(0, b"ab")])
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha512_field(body)})
        assert response.status_code == 204, response.get_data()

    def test_content_digest_wrong_is_400_and_nothing_applied(self, client: Any, service: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(b"other")})
        problem(response, 400, "content-digest-mismatch")
        assert head_state(client, path)["ranges"] == []
        assert extent_rows(service, path) == []

    def test_content_digest_of_part_body_only_is_wrong(self, client: Any) -> None:
        # Content-Digest covers the whole patch document, framing included.
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Content-Digest": sha256_field(b"ab")})
        problem(response, 400, "content-digest-mismatch")
        assert head_state(client, path)["ranges"] == []

    def test_malformed_content_digest_is_400(self, client: Any) -> None:
        path = allocate(client, 4)
        problem(self.send(client, path, [(0, b"ab")], {"Content-Digest": "sha-256=abc"}), 400)
        assert head_state(client, path)["ranges"] == []

    def test_prefer_atomic_is_reported(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Prefer": "transaction=atomic"})
        assert response.status_code == 204
        assert response.headers["Preference-Applied"] == "transaction=atomic"
        assert head_state(client, path)["ranges"] == [(0, 2)]

    def test_prefer_persist_is_reported(self, client: Any) -> None:
        path = allocate(client, 4)
        response = self.send(client, path, [(0, b"ab")], {"Prefer": "transaction=persist"})
        assert response.headers["Preference-Applied"] == "transaction=persist"

    def test_unknown_resource_is_404(self, client: Any) -> None:
        problem(self.send(client, MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA", [(0, b"ab")]), 404, "not-found")

    def test_repr_digest_in_part_is_verified_at_completion(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Repr-Digest", sha256_field(b"nope")))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204
        problem(self.send(client, path, [(2, b"cd")]), 409, "repr-digest-mismatch")
        problem(client.get(path), 409, "repr-digest-mismatch")

    def test_repr_digest_in_part_matching(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Repr-Digest", sha256_field(b"abcd")))
        assert self.send(client, path, [(fields, b"ab")]).status_code == 204
        assert self.send(client, path, [(2, b"cd")]).status_code == 204
        assert read_all(client, path) == b"abcd"

    def test_part_content_type_is_the_media_type_get_serves(self, client: Any) -> None:
        """Byte Range PATCH -03 §2.4: a part's Content-Type has the effect it has on a PUT of the
        whole resource: it is the resource's media type, and GET (whole or ranges) serves it."""
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Type", "application/json; charset=utf-8"))
        assert self.send(client, path, [(fields, b"{}")]).status_code == 204
        assert client.get(path, headers={"Range": "bytes=0-1"}).headers["Content-Type"] == (
            "application/json; charset=utf-8"
        )
        # Later parts may say it again (spelled otherwise) or say nothing.
        again = (("Content-Range", "bytes 2-2/4"), ("Content-Type", "Application/JSON;charset=utf-8"))
        assert self.send(client, path, [(again, b" ")]).status_code == 204
        assert self.send(client, path, [(3, b"\n")]).status_code == 204
        response = client.get(path)
        assert response.status_code == 200 and response.get_data() == b"{} \n"
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"

    def test_part_content_type_other_than_declared_is_409(self, client: Any) -> None:
        """Like the length: declared once (at creation or by a part), then fixed; another media
        type is a conflict and nothing of the request is applied."""
        path = allocate(client, 4, {"Content-Type": "text/plain"})
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Type", "image/png"))
        body = problem(self.send(client, path, [(fields, b"ab")]), 409, "media-type-conflict")
        assert body["content-type"] == "text/plain" and body["requested-content-type"] == "image/png"
        assert head_state(client, path)["ranges"] == []
        same = (("Content-Range", "bytes 0-3/4"), ("Content-Type", "text/plain"))
        assert self.send(client, path, [(same, b"abcd")]).status_code == 204
        assert client.get(path).headers["Content-Type"] == "text/plain"

    def test_part_content_type_on_a_complete_resource_cannot_change_it(self, client: Any) -> None:
        path = allocate(client, 2)
        assert self.send(client, path, [(0, b"ab", 2)]).status_code == 204
        fields = (("Content-Range", "bytes 0-1/2"), ("Content-Type", "text/html"))
        problem(self.send(client, path, [(fields, b"ab")]), 409, "media-type-conflict")
        assert client.get(path).headers["Content-Type"] == "application/octet-stream"

    def test_malformed_part_content_type_is_400(self, client: Any) -> None:
        path = allocate(client, 4)
        fields = (("Content-Range", "bytes 0-1/4"), ("Content-Type", "not a media type"))
        problem(self.send(client, path, [(fields, b"ab")]), 400, "malformed-header")
        assert head_state(client, path)["ranges"] == []

    def _body(self, parts: Sequence[Part]) -> bytes:
        if self.media_type == MESSAGE:
            fields, data = part_fields(parts[0])
            return encode_message(fields, data)
        if self.media_type == MULTIPART:
            return multipart_body(parts)
        return binary_body(parts)
