"""The synchronous pre-create hook: asked before a resource exists, it may refuse it.

``BYTERANGE_HOOK_PRE_CREATE`` is an ``http(s)://`` URL or a ``module:callable``:

- URL: a JSON POST of :func:`document` (signed like event hooks, type
  ``pre-create``). 2xx allows; 4xx refuses, with the reason from a JSON body ``{"reason": …}``
  or the first line of a text body; anything else (5xx, timeout, refused connection) means the
  hook is unavailable.
- callable: ``hook(request: CreationRequest)``; returning None or True allows, False refuses,
  raising :class:`CreationRejected` refuses with its reason; any other exception means the hook
  is unavailable (and is logged).

A refusal is ``403 creation-rejected``; an unavailable hook is ``503 creation-hook-unavailable``
with ``Retry-After``, or is let through when ``hook_pre_create_fail_open`` is on. Nothing has
been created either way: the service asks before it touches storage or the database.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from ..errors import ByterangeError
from ..errors import CreationHookUnavailableError
from ..errors import CreationRejectedError
from ..uploads.lifecycle import CreationRequest
from .delivery import USER_AGENT
from .delivery import DeliveryError
from .delivery import post
from .signature import SIGNATURE_HEADER
from .signature import sign

__all__ = ["CreationRejected", "PreCreateGate", "document"]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_MAX_REASON_LENGTH = 500


class CreationRejected(Exception):  # noqa: N818 - a verdict, not a malfunction
    """Raised by a Python pre-create hook to refuse; ``reason`` reaches the client."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "rejected")
        self.reason = reason


def document(request: CreationRequest) -> dict[str, Any]:
    """The JSON body a URL hook is sent."""
    return {
        "type": "pre-create",
        "id": "req_" + secrets.token_hex(16),
        "upload": {
            "protocol": request.protocol,
            "length": request.length,
            "content_type": request.content_type,
            "filename": request.filename,
            "metadata": request.metadata,
            "upload_metadata": request.upload_metadata,
            "concat": request.concat,
            "owner": request.owner,
            "client_address": request.client_address,
        },
    }


class _Unavailable(Exception):  # noqa: N818
    pass


class PreCreateGate:
    """The service's pre-create port (:data:`~byterange_server.uploads.lifecycle.PreCreate`):
    raises unless the hook allows the creation."""

    def __init__(
        self,
        hook: str | Callable[[CreationRequest], Any],
        *,
        secret: str = "",
        timeout: float = 5.0,
        fail_open: bool = False,
        origin: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.hook = hook
        self.secret = secret
        self.timeout = timeout
        self.fail_open = fail_open
        #: Fills ``protocol`` and ``client_address`` from the current HTTP request (api layer).
        self.origin = origin

    def __call__(self, request: CreationRequest) -> None:
        if self.origin is not None:
            request = dataclasses.replace(request, **self.origin())
        try:
            if callable(self.hook):
                self._ask_callable(self.hook, request)
            else:
                self._ask_url(self.hook, request)
        except _Unavailable as exc:
            if self.fail_open:
                log.warning("pre-create hook unavailable (%s); failing open", exc)
                return
            log.warning("pre-create hook unavailable (%s); refusing the creation", exc)
            raise CreationHookUnavailableError(
                "The upload cannot be checked right now; try again later.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None

    @staticmethod
    def _reject(reason: str | None) -> CreationRejectedError:
        extra = {"reason": reason[:_MAX_REASON_LENGTH]} if reason else {}
        return CreationRejectedError(
            f"The creation hook rejected this upload: {extra['reason']}" if extra else None, extra=extra
        )

    def _ask_callable(self, hook: Callable[[CreationRequest], Any], request: CreationRequest) -> None:
        try:
            verdict = hook(request)
        except CreationRejected as exc:
            raise self._reject(exc.reason) from None
        except ByterangeError:
            raise  # a hook may raise a problem of ours on purpose (e.g. a limit)
        except Exception as exc:
            log.exception("pre-create hook %r failed", hook)
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc
        if verdict is False:
            raise self._reject(None)

    def _ask_url(self, url: str, request: CreationRequest) -> None:
        body = json.dumps(document(request), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Byterange-Event": "pre-create",
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            status, text = post(url, body, headers, timeout=self.timeout)
        except DeliveryError as exc:
            raise _Unavailable(str(exc)) from exc
        if 200 <= status < 300:
            return
        if 400 <= status < 500:
            raise self._reject(_reason(text))
        raise _Unavailable(f"HTTP {status}")


def _reason(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return text.splitlines()[0]
    if isinstance(document, dict) and isinstance(document.get("reason"), str):
        return document["reason"] or None
    return None
