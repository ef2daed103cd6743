"""Resource lifecycle events, published inside the transaction that makes them true; and the
pre-create port, asked before a resource exists.

The service publishes one :class:`ResourceEvent` for each change a subscriber may care about:

=============  ==================================================================================
``created``    a resource was allocated (POST, tus creation, IETF creation, a tus final upload)
``progress``   a write committed new ranges (``data["ranges"]``: ``[[start, stop), …]``)
``completed``  the resource is complete (``data["failed"]``: its bytes miss a declared digest)
``deleted``    a client deleted (or tus-terminated) it
``expired``    the expiry sweep removed it, incomplete
=============  ==================================================================================

A sink gets every event twice over, at two moments:

- :meth:`EventSink.in_transaction` runs inside the database transaction that made the change, on
  its connection, so what it writes (an outbox row) commits or rolls back with the change itself;
- :meth:`EventSink.after_commit` runs once that transaction has committed (never if it rolled
  back), for effects outside the database (metrics, waking a delivery thread).

Events published outside a write transaction (nothing does today) go to ``after_commit`` at once.

Before it creates anything, the service asks its pre-create port (:data:`PreCreate`, given to
:class:`~byterange_server.uploads.service.UploadService`) about a :class:`CreationRequest`; the
port raises to refuse. :mod:`byterange_server.hooks` implements it with the configured hook.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from ..db.engine import after_commit
from ..protocol.tus import parse_upload_metadata

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["CreationRequest", "EventBus", "EventKind", "EventSink", "PreCreate", "ResourceEvent"]

log = logging.getLogger(__name__)

EventKind = Literal["created", "progress", "completed", "deleted", "expired"]


@dataclasses.dataclass(frozen=True)
class ResourceEvent:
    kind: EventKind
    resource_id: str
    at: dt.datetime
    #: The principal the resource belongs to (see auth.py), None when unauthenticated.
    owner: str | None = None
    #: Complete length, when known.
    length: int | None = None
    #: Kind-specific details; JSON-serialisable.
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class EventSink:
    """Base class of subscribers; override either method (both do nothing here)."""

    def in_transaction(self, conn: Connection, event: ResourceEvent) -> None:
        """Called inside the change's transaction. An exception rolls the change back."""

    def after_commit(self, event: ResourceEvent) -> None:
        """Called after the commit. Exceptions are logged and swallowed: the change stands."""


class EventBus:
    def __init__(self) -> None:
        self._sinks: list[EventSink] = []

    @property
    def active(self) -> bool:
        """Whether anyone listens (so the service can skip computing event details)."""
        return bool(self._sinks)

    @property
    def recorded(self) -> bool:
        """Whether a sink records events in the transaction (the hook outbox): only then are
        details that cost a query (a write's new offset) worth computing."""
        return any(type(sink).in_transaction is not EventSink.in_transaction for sink in self._sinks)

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def publish(self, conn: Connection, event: ResourceEvent) -> None:
        for sink in self._sinks:
            sink.in_transaction(conn, event)
        after_commit(conn, lambda: self._deliver(event))

    def _deliver(self, event: ResourceEvent) -> None:
        for sink in self._sinks:
            try:
                sink.after_commit(event)
            except Exception:  # the change is committed; a sink's failure must not undo the reply
                log.exception("event sink %r failed on %s %s", sink, event.kind, event.resource_id)


@dataclasses.dataclass(frozen=True)
class CreationRequest:
    """What the pre-create port decides on."""

    #: ``byterange``, ``tus`` or ``ietf``; None outside an HTTP request.
    protocol: str | None
    length: int | None
    content_type: str | None
    filename: str | None
    #: tus ``Upload-Metadata`` as sent.
    upload_metadata: str | None
    #: tus concatenation role: ``partial``, ``final`` or None.
    concat: str | None
    #: The authenticated principal the resource would belong to.
    owner: str | None
    #: The client's address (after trusted proxies, see forwarded.py).
    client_address: str | None = None

    @property
    def metadata(self) -> dict[str, str | None]:
        """``Upload-Metadata`` decoded; a value that is not UTF-8 text is None."""
        if not self.upload_metadata:
            return {}
        decoded: dict[str, str | None] = {}
        for key, value in parse_upload_metadata(self.upload_metadata):
            try:
                decoded[key] = value.decode()
            except UnicodeDecodeError:
                decoded[key] = None
        return decoded


#: Asked before any resource is created; raises (a ByterangeError) to refuse it.
PreCreate = Callable[[CreationRequest], None]
