"""What the S3 tests ask of the store and the database directly."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy import update

from byterange_server.db.models import segments
from byterange_server.db.models import storage_gc


def stored_objects(storage: Any) -> dict[str, int]:
    """Every object under the storage's prefix: key -> size."""
    found: dict[str, int] = {}
    pages = storage.client.get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=storage.bucket, Prefix=storage.prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["Size"]
    return found


def segment_rows(db: Any) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(segments).order_by(segments.c.resource_id, segments.c.start)))


def garbage_rows(db: Any) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(storage_gc)))


def make_garbage_due(db: Any) -> None:
    """Skip the grace periods: what is recorded is due now."""
    with db.write() as conn:
        conn.execute(update(storage_gc).values(not_before_ms=0))


def assert_consistent(storage: Any, db: Any) -> None:
    """No segment without its bytes; no stored object that no segment names."""
    objects = stored_objects(storage)
    rows = segment_rows(db)
    for row in rows:
        assert row.object_key in objects, f"segment {row.resource_id} {row.start}-{row.stop} lost its object"
        assert row.object_offset + row.stop - row.start <= objects[row.object_key]
    assert set(objects) == {row.object_key for row in rows}, "objects no segment names"
