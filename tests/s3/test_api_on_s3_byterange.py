"""The API suite's byte-range writes, reads, interruptions and deletion, run again with
``BYTERANGE_STORAGE=s3`` (see conftest.py) on a real store. One module per protocol, so that
pytest-xdist can spread them; OPTIONS and dispatch, which touch no storage, run once, on local
storage."""

from __future__ import annotations

from tests.api.byterange.test_delete import *  # noqa: F403
from tests.api.byterange.test_get import *  # noqa: F403
from tests.api.byterange.test_head import *  # noqa: F403
from tests.api.byterange.test_patch_binary import *  # noqa: F403
from tests.api.byterange.test_patch_multipart import *  # noqa: F403
from tests.api.byterange.test_post import *  # noqa: F403
from tests.api.byterange.test_put import *  # noqa: F403
from tests.api.test_interruptions import *  # noqa: F403

#: The API suite runs on both databases with local storage; here the object store is what is under
#: test, so once, on PostgreSQL (the database of a deployment that shares a bucket between hosts).
#: The S3-specific tests (test_objects.py, test_kill.py) still run on both.
ONLY_DATABASES = ("postgresql",)
