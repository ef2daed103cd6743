"""Transfer codings other than one final ``chunked`` are refused before anything is stored, by
the app itself (here through the Flask test client; tests/e2e/test_wire_abuse.py does it over a
socket to gunicorn, which refuses some of them before the app sees them)."""

from __future__ import annotations

import pytest

from .helpers import MESSAGE
from .helpers import allocate
from .helpers import extent_rows
from .helpers import problem

BODY = b"Content-Range: bytes 0-9/*\r\n\r\n0123456789"


@pytest.mark.parametrize(
    ("coding", "status", "code"),
    [
        ("gzip, chunked", 501, "unsupported-transfer-coding"),
        ("identity, chunked", 501, "unsupported-transfer-coding"),
        ("chunked;q=1", 501, "unsupported-transfer-coding"),
        ("chunked, chunked", 400, "malformed-header"),
        ("chunked, gzip", 400, "malformed-header"),
        ("identity", 400, "malformed-header"),
    ],
)
def test_transfer_codings_other_than_chunked_are_refused(client, service, coding, status, code):
    path = allocate(client)
    response = client.patch(
        path, data=BODY, headers={"Content-Type": MESSAGE, "Transfer-Encoding": coding}
    )
    assert problem(response, status, code)["transfer-encoding"] == coding
    assert extent_rows(service, path) == []

