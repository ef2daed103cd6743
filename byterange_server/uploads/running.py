"""Running SHA-256s of committed prefixes, so that an upload written in order is hashed as its
bytes arrive and its completion reads nothing back.

A hashlib state cannot be stored in the database, so the running digests live in the process:
one per resource generation (``(resource_id, storage_key)``), covering the bytes ``[0, stop)``.
A write whose bytes continue exactly at ``stop`` hashes a *copy* as they pass
(:meth:`RunningDigests.take`) and puts it back only after its commit (:meth:`put`): a digest
here only ever covers committed bytes. Committed bytes never change (a later write over them is
compared, not written), so a digest that is behind is still right, only of no use until the
write that continues it comes to this process. Whatever is missing (a restart, another worker
took the previous write, an out-of-order upload) falls back to reading the bytes back at
completion, as before.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from typing import Any

#: How many resources' running digests a process keeps (least recently used go first). Each is
#: a few hundred bytes; a resource whose digest was dropped is hashed at completion instead.
MAX_RUNNING = 4096


class RunningDigests:
    """The running digests of one process, shared by its request threads."""

    def __init__(self, capacity: int = MAX_RUNNING) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._table: collections.OrderedDict[tuple[str, str], tuple[Any, int]] = collections.OrderedDict()

    def take(self, resource_id: str, storage_key: str, start: int) -> Any | None:
        """A copy of the running digest of ``[0, start)``, for a write that continues it; a fresh
        one at 0; None when this process has none that ends exactly at ``start``."""
        if start == 0:
            return hashlib.sha256()
        with self._lock:
            held = self._table.get((resource_id, storage_key))
            if held is None or held[1] != start:
                return None
            self._table.move_to_end((resource_id, storage_key))
            return held[0].copy()

    def put(self, resource_id: str, storage_key: str, digest: Any, stop: int) -> None:
        """(After a commit) ``digest`` covers the committed bytes ``[0, stop)``; kept unless
        the process already holds one that reaches further."""
        key = (resource_id, storage_key)
        with self._lock:
            held = self._table.get(key)
            if held is not None and held[1] >= stop:
                return
            self._table[key] = (digest, stop)
            self._table.move_to_end(key)
            while len(self._table) > self.capacity:
                self._table.popitem(last=False)

    def finish(self, resource_id: str, storage_key: str, length: int) -> bytes | None:
        """The SHA-256 of the whole representation if the running digest covers all ``length``
        bytes, else None; either way the resource's entry is dropped."""
        with self._lock:
            held = self._table.pop((resource_id, storage_key), None)
        if held is None or held[1] != length:
            return None
        return held[0].digest()
