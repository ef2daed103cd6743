"""Requests in the IETF dialect and what the IETF API tests read back (on SQLite and PostgreSQL)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..helpers import MOUNT
from ..helpers import problem

PARTIAL = "application/partial-upload"


MISSING = MOUNT + "/AAAAAAAAAAAAAAAAAAAAAA"


def v(version=8):
    return {"Upload-Draft-Interop-Version": str(version)}


def create(client, *, complete=False, length=None, data=None, headers=None, method="POST",
           version=8, expect=201):
    sent = {**v(version), "Upload-Complete": "?1" if complete else "?0"}
    if length is not None:
        sent["Upload-Length"] = str(length)
    sent.update(headers or {})
    response = client.open(MOUNT, method=method, headers=sent, data=data)
    assert response.status_code == expect, (response.status_code, response.get_data())
    return response


def create_path(client, **kwargs):
    return urlsplit(create(client, **kwargs).headers["Location"]).path


def append(client, path, offset, data, *, complete=False, headers=None, version=8):
    sent = {**v(version), "Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0",
            "Content-Type": PARTIAL}
    sent.update(headers or {})
    return client.patch(path, data=data, headers=sent)


def ietf_head(client, path, version=8):
    return client.head(path, headers=v(version))


def offset_of(client, path):
    response = ietf_head(client, path)
    assert response.status_code == 204, response.status_code
    return int(response.headers["Upload-Offset"])


def ietf_problem(response, status, type_uri):
    body = problem(response, status)
    assert body["type"] == type_uri, body
    return body


def count(service):
    from sqlalchemy import func
    from sqlalchemy import select

    from byterange_server.db.models import resources

    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()
