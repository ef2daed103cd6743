"""The object-store baseline of ``python -m bench --storage s3``: boto3 uploading the same bytes
as one plain multipart upload to the same store, in the same run.

:func:`seaweed_store` starts the throwaway SeaweedFS the tests use (tests/support/seaweedfs.py);
:class:`DirectUploader` uploads ``size`` bytes in ``part``-sized parts from ``clients`` threads
(S1: one, S2: eight), with boto3's defaults otherwise (its CRC-32 per part included), and
completes the upload: what an application that talks to the store itself would do.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .server import REPO_ROOT

MIN_PART = 5 * 1024 * 1024


@contextlib.contextmanager
def seaweed_store() -> Iterator[dict[str, str]]:
    """A SeaweedFS on loopback with one bucket (started as tests/support/seaweedfs.py does)."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.seaweedfs import seaweed_server

    with seaweed_server() as server:
        yield server


def server_environ(store: dict[str, str], prefix: str) -> dict[str, str]:
    """The settings of a byterange-server on ``store``, its keys under ``prefix``."""
    return {
        "BYTERANGE_STORAGE": "s3", "BYTERANGE_S3_ENDPOINT": store["endpoint"],
        "BYTERANGE_S3_BUCKET": store["bucket"], "BYTERANGE_S3_REGION": store["region"],
        "BYTERANGE_S3_PREFIX": prefix, "AWS_ACCESS_KEY_ID": store["access_key"],
        "AWS_SECRET_ACCESS_KEY": store["secret_key"], "AWS_EC2_METADATA_DISABLED": "true",
    }


class DirectUploader:
    def __init__(self, store: dict[str, str], max_clients: int) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = store["bucket"]
        self.client: Any = boto3.client(
            "s3", endpoint_url=store["endpoint"], region_name=store["region"],
            aws_access_key_id=store["access_key"], aws_secret_access_key=store["secret_key"],
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, max_clients)),
        )

    def upload(self, body: bytes, size: int, part: int, clients: int) -> str:
        """One multipart upload of ``size`` bytes (``body`` repeated), parts taken in order by
        ``clients`` threads, completed; returns its key."""
        if part < MIN_PART:
            raise ValueError(f"a multipart part must be at least {MIN_PART} bytes")
        key = f"bench/direct/{secrets.token_hex(8)}"
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        offsets = iter(enumerate(range(0, size, part), start=1))
        lock, etags, errors = threading.Lock(), {}, []

        def work() -> None:
            try:
                while True:
                    with lock:
                        number, offset = next(offsets, (None, None))
                    if number is None:
                        return
                    length = min(part, size - offset)
                    chunk = body if length == len(body) else body[:length]
                    answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                     PartNumber=number, Body=chunk)
                    etags[number] = answer["ETag"]
            except BaseException as exc:  # reported by the caller
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise errors[0]
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
        )
        return key

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
