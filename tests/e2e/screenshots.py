"""Regenerate docs/images/*.png, the screenshots of the uploader and status pages in docs/uploader.md.

    python -m tests.e2e.screenshots

Runs the browser test that visits every page (tests/e2e/test_uploader_browser.py, on SQLite)
with ``BYTERANGE_SCREENSHOTS`` pointing at docs/images, so the pictures are what the test saw.
"""

from __future__ import annotations

import os
import sys

import pytest

from .conftest import REPO_ROOT

TEST = "tests/e2e/test_uploader_browser.py::test_uploader_survives_a_server_restart_and_a_reload"


def main() -> int:
    os.environ["BYTERANGE_SCREENSHOTS"] = str(REPO_ROOT / "docs" / "images")
    return int(pytest.main(["-q", "-p", "no:cacheprovider", "--databases=sqlite", str(REPO_ROOT / TEST)]))


if __name__ == "__main__":
    sys.exit(main())
