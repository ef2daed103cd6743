"""The directory shared by the workers' metrics, managed by the gunicorn master.

``prometheus_client`` decides at import time whether it runs in multiprocess mode, from
``PROMETHEUS_MULTIPROC_DIR``; so the master sets the variable in ``on_starting``, before any
worker is forked, and this module does not import ``prometheus_client`` at import time (the master
must not import it before the variable is set, or the workers it forks would inherit private
values).

What happens to a worker that dies (``child_exit`` → :func:`mark_process_dead`):

- its counters and histograms stay in its file and keep being added to the totals, so totals
  never go backwards when a worker is killed or recycled (``max_requests``);
- its ``livesum`` gauges (requests in flight, live workers) are removed, so a killed worker's
  in-flight requests stop counting.

Every worker start adds one set of small files (one per metric type) to the directory, so a
server that recycles workers very often grows it slowly; restarting the server starts afresh.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["MULTIPROC_ENV", "mark_process_dead", "prepare", "remove"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(environ: MutableMapping[str, str] | None = None) -> tuple[Path, bool]:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` an existing, empty directory; when it is unset, create a
    private one and set the variable. Call before any worker starts.

    :returns: the directory, and whether it was created here (so it is removed at exit).
    """
    environ = os.environ if environ is None else environ
    given = environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        # Values of a previous run would be added to this one's: start from zero.
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="byterange-metrics-"))
    environ[MULTIPROC_ENV] = str(path)
    return path, True


def mark_process_dead(pid: int, environ: MutableMapping[str, str] | None = None) -> None:
    """A worker exited: drop its live gauges; its counters stay."""
    path = (os.environ if environ is None else environ).get(MULTIPROC_ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
