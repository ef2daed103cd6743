"""The API suite's core modules, run again with ``BYTERANGE_STORAGE=s3`` (see conftest.py):
every protocol's writes, reads, interruptions, deletion and concatenation on a real store."""

from __future__ import annotations

from tests.api.test_delete import *  # noqa: F403
from tests.api.test_get import *  # noqa: F403
from tests.api.test_head import *  # noqa: F403
from tests.api.test_ietf import *  # noqa: F403
from tests.api.test_interruptions import *  # noqa: F403
from tests.api.test_patch_binary import *  # noqa: F403
from tests.api.test_patch_multipart import *  # noqa: F403
from tests.api.test_post import *  # noqa: F403
from tests.api.test_put import *  # noqa: F403
from tests.api.test_tus import *  # noqa: F403
from tests.api.test_tus_concat import *  # noqa: F403
