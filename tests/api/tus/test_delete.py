"""tus termination: DELETE, then the upload is gone."""

from __future__ import annotations

from ..helpers import problem
from .helpers import TUS
from .helpers import create_path
from .helpers import tus_head
from .helpers import tus_patch


def test_termination(client, service):
    path = create_path(client, 10)
    tus_patch(client, path, 0, b"abc")
    response = client.delete(path, headers=TUS)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert not service.storage.exists(path.rsplit("/", 1)[1])
    assert tus_head(client, path).status_code == 404
    problem(tus_patch(client, path, 3, b"def"), 404)
    assert client.delete(path, headers=TUS).status_code == 404
