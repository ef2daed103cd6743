"""``chattr +i``: make a file immutable even for root, as a read-only volume would."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    chattr("+i", path)
    try:
        yield
    finally:
        chattr("-i", path)


def chattr_works(directory: Path) -> bool:
    """chattr needs CAP_LINUX_IMMUTABLE (root) and a filesystem with the flag (ext4, xfs)."""
    if shutil.which("chattr") is None:
        return False
    probe = directory / "chattr-probe"
    probe.write_bytes(b"")
    try:
        chattr("+i", probe)
        chattr("-i", probe)
        return True
    except subprocess.CalledProcessError:
        return False
    finally:
        probe.unlink(missing_ok=True)
