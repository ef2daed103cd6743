"""Requests in the tus dialect and what the tus API tests read back (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from ..helpers import MOUNT

TUS = {"Tus-Resumable": "1.0.0"}


OCTETS = "application/offset+octet-stream"


def create(client, length=None, headers=None, data=None, expect=201):
    sent = dict(TUS)
    if length is not None:
        sent["Upload-Length"] = str(length)
    sent.update(headers or {})
    if data is not None:
        sent.setdefault("Content-Type", OCTETS)
    response = client.post(MOUNT, headers=sent, data=data)
    assert response.status_code == expect, (response.status_code, response.get_data())
    return response


def create_path(client, length=None, headers=None):
    return urlsplit(create(client, length, headers).headers["Location"]).path


def tus_patch(client, path, offset, data, headers=None):
    sent = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS}
    sent.update(headers or {})
    return client.patch(path, data=data, headers=sent)


def send_chunked(client, path, stream, headers):
    """A body without Content-Length, as a chunked request reaches the app under gunicorn."""
    return client.open(
        path,
        method="PATCH",
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )


def tus_head(client, path):
    return client.head(path, headers=TUS)


def offset_of(client, path):
    response = tus_head(client, path)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def checksum(algorithm, data):
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm} {base64.b64encode(digest).decode()}"


def expire(service, path):
    from sqlalchemy import update

    from byterange_server.db import clock
    from byterange_server.db.models import resources

    with service.db.write() as conn:
        conn.execute(
            update(resources)
            .where(resources.c.id == path.rsplit("/", 1)[1])
            .values(expires_at=clock.utcnow().replace(year=2000))
        )


def resource_count(service):
    from sqlalchemy import func
    from sqlalchemy import select

    from byterange_server.db.models import resources

    with service.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


def partial(client, data=None, length=None, metadata=None):
    headers = {**TUS, "Upload-Concat": "partial"}
    if length is None and data is not None:
        length = len(data)
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    if metadata:
        headers["Upload-Metadata"] = metadata
    response = client.post(MOUNT, headers=headers)
    assert response.status_code == 201, response.get_data()
    path = urlsplit(response.headers["Location"]).path
    if data:
        assert tus_patch(client, path, 0, data).status_code == 204
    return path


def final(client, urls, headers=None, expect=201):
    response = client.post(
        MOUNT, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), **(headers or {})}
    )
    assert response.status_code == expect, (response.status_code, response.get_data())
    return response
