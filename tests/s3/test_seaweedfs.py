"""The SeaweedFS the S3 tests run against (tests/support/seaweedfs.py) is a real store on loopback."""

from __future__ import annotations

import secrets

from tests.support.seaweedfs import client


def test_seaweedfs_stores_and_serves_ranges(s3_server):
    s3 = client(s3_server["endpoint"])
    key = f"fixture/{secrets.token_hex(8)}"
    body = secrets.token_bytes(100_000)
    s3.put_object(Bucket=s3_server["bucket"], Key=key, Body=body)
    got = s3.get_object(Bucket=s3_server["bucket"], Key=key, Range="bytes=10-99")["Body"].read()
    assert got == body[10:100]
    s3.delete_object(Bucket=s3_server["bucket"], Key=key)
    listed = s3.list_objects_v2(Bucket=s3_server["bucket"], Prefix=key)
    assert listed["KeyCount"] == 0
