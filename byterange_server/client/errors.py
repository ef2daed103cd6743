"""The client's exception tree: one class per way a transfer can end badly.

Every class carries the process exit code the ``byterange`` command uses for it, so scripts
can tell "re-run later to resume" (3) from "the server will never accept this" (4) from "the
bytes are wrong" (5) without parsing messages. ``docs/client.md`` lists the codes.
"""

from __future__ import annotations

from typing import Any

from byterange_server.units import format_size

__all__ = [
    "Cancelled",
    "ClientError",
    "IntegrityError",
    "ProtocolError",
    "RemoteChanged",
    "ServerRefused",
    "TransferFailed",
]


class ClientError(Exception):
    """Base class of every error the client raises on purpose."""

    #: Exit status of the ``byterange`` command for this error.
    exit_code = 1


class TransferFailed(ClientError):
    """The network or the server kept failing until the retry budget ran out.

    Nothing committed is lost: running the same upload or download again resumes it.
    """

    exit_code = 3

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ServerRefused(ClientError):
    """The server answered a request with a status that retrying cannot change (most 4xx).

    :ivar status: the HTTP status code.
    :ivar problem: the RFC 9457 problem document, when the body was one (else ``{}``).
    """

    exit_code = 4

    def __init__(
        self, method: str, url: str, status: int, problem: dict[str, Any] | None = None, reason: str = ""
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.problem = problem or {}
        self.reason = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        title = str(self.problem.get("title") or self.reason or "")
        detail = str(self.problem.get("detail") or "")
        text = f"{self.method} {self.url}: HTTP {self.status}"
        if detail.startswith(title):  # the server's detail often restates its title
            title = ""
        if title:
            text += f" {title}"
        if detail:
            text += f": {detail}" if title else f" {detail}"
        figures = describe_figures(self.problem)
        if figures:
            text += f" ({figures})"
        return text


#: Members of every problem document (RFC 9457 §3.1), and the server's request id: not figures.
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "request-id"})
#: Words in a member name that say its number counts bytes (``max-size``, ``requested-length``).
_BYTE_WORDS = ("size", "length", "bytes", "offset", "stop")


def describe_figures(problem: dict[str, Any]) -> str:
    """The extension members of a problem document, the figures that explain the error.

    ``{"length": 2000000, "max-size": 1048576}`` → ``length 2000000 (1.9 MiB), max-size 1048576
    (1.0 MiB)``: the limit a request went past is what its sender needs to know.
    """
    shown = []
    for name, value in problem.items():
        if name in _STANDARD_MEMBERS or not isinstance(name, str):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str, list)):
            continue
        text = ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)
        if len(text) > 200:
            text = text[:200] + "…"
        if isinstance(value, int) and value >= 1024 and any(word in name for word in _BYTE_WORDS):
            text += f" ({format_size(value)})"
        shown.append(f"{name} {text}")
    return ", ".join(shown)


class ProtocolError(ClientError):
    """The server's answer does not follow the protocol (a missing or malformed header)."""

    exit_code = 4


class IntegrityError(ClientError):
    """The bytes do not match their digest: the local file changed during an upload, or the
    downloaded bytes differ from the server's ``Repr-Digest``."""

    exit_code = 5


class RemoteChanged(ClientError):
    """The resource being downloaded changed on the server (its strong ETag moved on)."""

    exit_code = 6


class Cancelled(ClientError):
    """The transfer was cancelled (``cancel()`` or Ctrl-C); what was committed stays."""

    exit_code = 130
    MESSAGE = "cancelled; what was transferred is kept, and the same transfer resumes it"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)
