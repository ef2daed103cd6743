"""Gunicorn settings for uploads: threaded workers, long-body-friendly timeouts.

Every value can be overridden on the command line or with ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from typing import Any

from byterange_server.config import gunicorn_count

bind = os.environ.get("BYTERANGE_BIND", "127.0.0.1:8080")
# gthread: a slow upload occupies a thread, not a whole process, and the worker heartbeat keeps
# running while a thread streams a large body (sync workers would be killed by `timeout`). Ours
# (byterange_server/runtime/worker.py) is gthread with the request head read by the main loop under a
# deadline (BYTERANGE_HEADER_TIMEOUT), so slow heads hold no thread, and with refused requests
# closed by the main loop instead of drained by a thread.
worker_class = "byterange_server.runtime.worker.UploadWorker"
workers = gunicorn_count("WORKERS", max(2, multiprocessing.cpu_count()))
threads = gunicorn_count("THREADS", 8)
# For gthread, `timeout` only checks that a worker process is alive, not request duration.
timeout = 60
graceful_timeout = 60
keepalive = 75
# Each worker builds its own app, engine and connection pool after fork.
preload_app = False
# Header blocks stay small; bodies are streamed by the app. These are backstops: the app's own
# caps (BYTERANGE_MAX_HEADER_FIELDS / _BYTES, 100 fields and 16 KiB by default) are lower and
# answer with a problem document; beyond these the worker answers 431 with one too (a request
# line over limit_request_line gets gunicorn's plain-text 414). The worker's main loop buffers at
# most the head these allow (about 1.6 MB) per connection, for BYTERANGE_HEADER_TIMEOUT at most.
limit_request_line = 8190
limit_request_fields = 200
limit_request_field_size = 8190
# gunicorn's own access log is off unless asked for: the app writes a structured line per
# request, with its request id, protocol and problem code (docs/observability.md).
accesslog = os.environ.get("BYTERANGE_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("BYTERANGE_LOG_LEVEL", "info")
# gunicorn 27 opens one control socket per user by default, so two servers of one user would
# take over each other's; enable it explicitly (--control-socket PATH) where gunicornc is used.
control_socket_disable = True


# Graceful shutdown (byterange_server/runtime/shutdown.py): SIGTERM drains the worker, cutting in-flight
# writes after BYTERANGE_SHUTDOWN_GRACE so they commit what arrived and answer 503; SIGINT and
# SIGQUIT cut them at once.
def post_worker_init(worker):  # type: ignore[no-untyped-def]
    from byterange_server.runtime.shutdown import on_worker_init

    on_worker_init(worker)


def worker_int(worker):  # type: ignore[no-untyped-def]
    from byterange_server.runtime.shutdown import on_worker_int

    on_worker_int(worker)


# -- metrics shared by the workers (byterange_server/runtime/multiproc.py) -------------------------------
# Self-contained functions so that other hooks can be added beside them.

_metrics_private_dir = None


def _metrics_on_starting(server: Any) -> None:
    """Master, before any worker forks: an empty PROMETHEUS_MULTIPROC_DIR (a private one when the
    operator set none), so the workers' metrics add up and /metrics shows the total."""
    global _metrics_private_dir
    from byterange_server.runtime import multiproc

    path, private = multiproc.prepare()
    _metrics_private_dir = path if private else None
    if private:
        # A master that fails to start (its port in use) exits without on_exit: remove the
        # directory at the interpreter's exit as well, in the master only (workers exit through
        # the same interpreter state after fork).
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master and multiproc.remove(path))
    server.log.info("metrics of all workers in %s", path)


def _metrics_child_exit(server: Any, worker: Any) -> None:
    from byterange_server.runtime import multiproc

    multiproc.mark_process_dead(worker.pid)


def _metrics_on_exit(server: Any) -> None:
    if _metrics_private_dir is not None:
        from byterange_server.runtime import multiproc

        multiproc.remove(_metrics_private_dir)


def on_starting(server: Any) -> None:
    _metrics_on_starting(server)


def child_exit(server: Any, worker: Any) -> None:
    _metrics_child_exit(server, worker)


def on_exit(server: Any) -> None:
    _metrics_on_exit(server)


def when_ready(server: Any) -> None:
    """Say where the uploads go: a newcomer's first request should not be a guess."""
    mount = "/" + os.environ.get("BYTERANGE_MOUNT", "/files").strip().strip("/")
    for listener in server.LISTENERS:
        address = listener.cfg_addr if hasattr(listener, "cfg_addr") else None
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            server.log.info("uploads: POST %s%s creates one; health: GET %s/healthz", base, mount, base)
