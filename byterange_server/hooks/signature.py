"""HMAC-SHA256 signatures of hook bodies (sans-IO; receivers may copy this module).

Every hook request carries ``Byterange-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact
body bytes under ``BYTERANGE_HOOK_SECRET`` (the scheme GitHub webhooks use). The body holds the
event's ``id`` and time, so a receiver that deduplicates on ``Idempotency-Key`` also shrugs off a
replayed request.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign", "verify_signature"]

SIGNATURE_HEADER = "Byterange-Signature"
_PREFIX = "sha256="


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``Byterange-Signature`` value of ``body``."""
    return _PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret``, compared in constant time.

    Pass the raw body bytes as received, before any JSON parsing.
    """
    if not header or not secret:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
