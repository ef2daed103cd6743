"""What the storage backends under test hold for a resource, whatever its generation.

The object of a resource whose id a signed creation URL derived is keyed ``<id>.<generation>``
(storage/base.py): tests that look for its bytes ask for every object of the id.
"""

from __future__ import annotations

import os

from byterange_server.storage import LocalSparseStorage
from byterange_server.storage import MemoryStorage


def objects_of(storage: object, resource_id: str) -> list[str]:
    """The storage keys of every object of ``resource_id`` (any generation, or the bare id)."""
    if isinstance(storage, MemoryStorage):
        keys = list(storage._objects)
    elif isinstance(storage, LocalSparseStorage):
        shard = os.path.join(storage.root, resource_id[:2])
        keys = os.listdir(shard) if os.path.isdir(shard) else []
    else:
        raise TypeError(f"cannot list the objects of {storage!r}")
    return sorted(key for key in keys if key == resource_id or key.startswith(resource_id + "."))
