"""Storage backends: where resource bytes live. See :mod:`.base` for the contract.

``load_backend`` turns the ``BYTERANGE_STORAGE`` setting into a backend instance.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import RESOURCE_ID_PATTERN
from .base import STORAGE_KEY_PATTERN
from .base import InvalidResourceIdError
from .base import StorageBackend
from .base import StorageError
from .base import StorageObjectExistsError
from .base import StorageObjectMissingError
from .base import StoredObject
from .base import generation_key
from .base import validate_resource_id
from .base import validate_storage_key
from .local import LocalSparseStorage
from .memory import MemoryStorage

__all__ = [
    "InvalidResourceIdError",
    "LocalSparseStorage",
    "MemoryStorage",
    "RESOURCE_ID_PATTERN",
    "STORAGE_KEY_PATTERN",
    "StorageBackend",
    "StorageError",
    "StorageObjectExistsError",
    "StorageObjectMissingError",
    "StoredObject",
    "generation_key",
    "load_backend",
    "validate_resource_id",
    "validate_storage_key",
]


def load_backend(name_or_dotted_path: str, **options: Any) -> StorageBackend:
    """Build the storage backend named by configuration.

    - ``"local"``: :class:`LocalSparseStorage` with ``root=options["root"]`` (and ``fsync`` if
      given);
    - ``"memory"``: :class:`MemoryStorage` (tests only; ``options`` are ignored, so the same
      settings can be passed whatever the backend);
    - ``"s3"``: :class:`~.s3.S3Storage` (``options``: its keyword arguments; needs boto3);
    - ``"package.module:Class"`` or ``"package.module.Class"``: ``Class(**options)``.

    Called once by the app factory, so a mistake stops the server at startup.

    :raises ValueError: for ``"local"`` without ``root``, or a name that is neither a known
        backend nor a dotted path.
    :raises ImportError: if the module of a dotted path cannot be imported.
    :raises TypeError: if the object built does not implement :class:`StorageBackend`.
    """
    if name_or_dotted_path == "local":
        if options.get("root") is None:
            raise ValueError("local storage needs a root directory (BYTERANGE_STORAGE_DIR)")
        return LocalSparseStorage(root=options["root"], fsync=options.get("fsync", True))
    if name_or_dotted_path == "memory":
        return MemoryStorage()
    if name_or_dotted_path == "s3":
        from .s3 import S3Storage  # boto3 is an optional dependency (the s3 extra)

        return S3Storage(**options)

    module_name, colon, attribute = name_or_dotted_path.partition(":")
    if not colon:
        module_name, _, attribute = name_or_dotted_path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(
            f"unknown storage backend {name_or_dotted_path!r}: "
            "use 'local', 'memory' or a dotted path such as 'package.module:Class'"
        )
    factory: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise ValueError(
                f"storage backend {name_or_dotted_path!r}: no {part!r} in {module_name!r}"
            ) from None
    backend = factory(**options)
    if not isinstance(backend, StorageBackend):
        raise TypeError(f"{name_or_dotted_path!r} did not build a StorageBackend: {backend!r}")
    return backend
