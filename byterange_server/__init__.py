"""byterange-server: resumable, segmented, parallel uploads over plain HTTP.

``create_app()`` builds a configured Flask app; nothing is built at import time. The server's
heavy imports (Flask, SQLAlchemy) load on first use, so the client (``byterange_server.client``)
and the ``byterange`` command start without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

__all__ = ["create_app", "Settings", "UploadService"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .app import create_app
    from .config import Settings
    from .uploads.service import UploadService

_LAZY = {
    "create_app": "app",
    "EXTENSION_KEY": "app",
    "Settings": "config",
    "UploadService": "uploads.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
