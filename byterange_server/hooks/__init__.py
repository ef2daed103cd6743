"""Event hooks: lifecycle events delivered to an HTTP endpoint and/or a Python callable, in
order per resource, at least once, with a stable ``Idempotency-Key``; and a synchronous
pre-create hook that may refuse a creation. docs/hooks.md is the user's guide.

- outbox.py — the ``hook_events`` table: written in the change's transaction, claimed by lease;
- delivery.py — the per-process delivery thread, the HTTP and Python targets, backoff;
- precreate.py — the pre-create gate: the service's pre-create port, asked before anything
  is created;
- signature.py — HMAC-SHA256 signing, and :func:`verify_signature` for receivers.

:func:`setup` builds them from the settings, before the service that they serve: it subscribes
the outbox to the event bus and returns the gate, which the service is then given
(``UploadService(..., events=events, pre_create=hooks.gate)``). With no hook configured it does
nothing at all (no sink, no thread, no query).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from ..config import Settings
from ..db.engine import Database
from ..uploads.lifecycle import CreationRequest
from ..uploads.lifecycle import EventBus
from ..uploads.lifecycle import EventSink
from ..uploads.lifecycle import ResourceEvent
from . import outbox
from .delivery import DeliveryWorker
from .delivery import HookEvent
from .delivery import HttpTarget
from .delivery import PythonTarget
from .precreate import CreationRejected
from .precreate import PreCreateGate
from .signature import verify_signature

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = [
    "CreationRejected",
    "CreationRequest",
    "HookEvent",
    "Hooks",
    "OutboxSink",
    "load_callable",
    "setup",
    "verify_signature",
]

EVENT_KINDS = ("created", "progress", "completed", "deleted", "expired")


#: Installed packages may offer hooks under this entry-point group (``BYTERANGE_HOOK_PYTHON=NAME``).
ENTRY_POINT_GROUP = "byterange_server.hooks"


def load_callable(spec: str) -> Callable[..., Any]:
    """The callable a spec names: ``package.module:attribute`` (an entry-point object reference,
    dotted attributes allowed), or the bare ``NAME`` of an entry point that an installed package
    declares in the group :data:`ENTRY_POINT_GROUP`.

    :raises ValueError: malformed, missing, not installed or not callable.
    """
    spec = spec.strip()
    if ":" in spec:
        entry = importlib.metadata.EntryPoint(name=spec, value=spec, group=ENTRY_POINT_GROUP)
    else:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=spec)
        if not found:
            installed = sorted(e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise ValueError(
                f"expected module:callable or the name of an installed {ENTRY_POINT_GROUP} entry "
                f"point, got {spec!r} (installed: {', '.join(installed) or 'none'})"
            )
        entry = next(iter(found))
    try:
        target = entry.load()
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{spec!r} cannot be loaded: {exc}") from None
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def parse_kinds(value: str) -> frozenset[str]:
    kinds = frozenset(item.strip() for item in value.replace(" ", ",").split(",") if item.strip())
    unknown = kinds - set(EVENT_KINDS)
    if unknown:
        raise ValueError(f"unknown hook events {sorted(unknown)}; known: {', '.join(EVENT_KINDS)}")
    return kinds


class OutboxSink(EventSink):
    """Writes the chosen events to the outbox in the change's transaction; wakes the worker."""

    def __init__(
        self,
        *,
        kinds: frozenset[str],
        targets: tuple[str, ...],
        progress_interval: float,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.kinds = kinds
        self.targets = targets
        self.progress_interval = progress_interval
        self.wake = wake

    def in_transaction(self, conn: Connection, event: ResourceEvent) -> None:
        if event.kind in self.kinds:
            outbox.record(conn, event, targets=self.targets, progress_interval=self.progress_interval)

    def after_commit(self, event: ResourceEvent) -> None:
        # A held progress event waits for the poll; anything else goes out now.
        if self.wake is not None and event.kind in self.kinds and event.kind != "progress":
            self.wake()


@dataclasses.dataclass
class Hooks:
    """What :func:`setup` built: the outbox sink it subscribed, the delivery worker, and the
    gate to give the service as its pre-create port."""

    sink: OutboxSink | None = None
    worker: DeliveryWorker | None = None
    gate: PreCreateGate | None = None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()


def setup(
    db: Database,
    events: EventBus,
    settings: Settings,
    *,
    origin: Callable[[], Mapping[str, Any]] | None = None,
    start: bool = True,
) -> Hooks | None:
    """Build the configured hooks over ``db``, the outbox subscribed to ``events``; None when no
    hook is configured. The service to be built over them gets ``gate`` as its pre-create port.

    ``start=False`` leaves the delivery thread unstarted (tests drive ``worker.run_once()``).

    :raises ValueError: a setting that cannot be honoured (bad URL, unknown event, import error).
    """
    # Everything is parsed and imported before anything is installed or started.
    targets: dict[str, Callable[[Any], None]] = {}
    if settings.hook_url:
        targets["http"] = HttpTarget(
            settings.hook_url, secret=settings.hook_secret, timeout=settings.hook_timeout
        )
    if settings.hook_python:
        targets["python"] = PythonTarget(load_callable(settings.hook_python))
    kinds = parse_kinds(settings.hook_events)
    pre_create: str | Callable[[CreationRequest], Any] | None = None
    spec = settings.hook_pre_create.strip()
    if spec.startswith(("http://", "https://")):
        pre_create = spec
    elif spec:
        pre_create = load_callable(spec)
    if not targets and pre_create is None:
        return None
    hooks = Hooks()
    if targets:
        hooks.worker = DeliveryWorker(db, settings, targets)
        hooks.sink = OutboxSink(
            kinds=kinds,
            targets=tuple(targets),
            progress_interval=settings.hook_progress_interval,
            wake=hooks.worker.wake,
        )
        events.subscribe(hooks.sink)
        if start:
            hooks.worker.start()
    if pre_create is not None:
        hooks.gate = PreCreateGate(
            pre_create,
            secret=settings.hook_secret,
            timeout=settings.hook_pre_create_timeout,
            fail_open=settings.hook_pre_create_fail_open,
            origin=origin,
        )
    return hooks
