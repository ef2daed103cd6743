"""IETF cancellation: DELETE, then in-flight appends stop."""

from __future__ import annotations

from ..helpers import problem
from .helpers import append
from .helpers import create_path
from .helpers import ietf_head
from .helpers import v


def test_cancellation(client, service):
    path = create_path(client, length=10)
    append(client, path, 0, b"abc")
    response = client.delete(path, headers=v())
    assert response.status_code == 204
    assert not service.storage.exists(path.rsplit("/", 1)[1])
    assert ietf_head(client, path).status_code == 404
    problem(append(client, path, 3, b"def"), 404)
