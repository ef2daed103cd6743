"""Which protocol a request speaks, decided once, and what that changes about its answer.

Three protocols share the same URLs (the resumable-upload drafts and tus 1.0 do not collide on
their methods, only on the fields that name them). Each is a :class:`Dialect`: whether it claims
a request, the handler that answers a verb of its own, the state headers of its responses, how
an error of the shared tree is told in it, what ``OPTIONS`` advertises for it, and what it
stamps on every response.

:data:`DIALECTS` is the dispatch policy: the first dialect that claims a request is the
request's (``Tus-Resumable`` wins over the IETF fields; what neither claims is a byte-range
request). The same order settles a field two dialects advertise on ``OPTIONS``: the earlier one's.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

from flask import Response
from flask import g
from flask import request

from ..errors import ByterangeError
from ..errors import ResourceGoneError
from ..errors import ResourceNotFoundError
from ..errors import UnsupportedVersionError
from ..uploads.values import ResourceState
from . import context
from . import ietf
from . import tus
from .responses import ErrorAnswer
from .responses import discovery_headers as byterange_discovery_headers
from .responses import state_headers as byterange_state_headers

__all__ = ["BYTERANGE", "DIALECTS", "IETF", "TUS", "Dialect", "dialect"]

Handler = Callable[..., Response | None]


class Dialect:
    """One protocol on the upload URLs; this base is the byte-range protocol's own behaviour."""

    name = "byterange"

    def claims(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these header fields is in this dialect."""
        return True

    def handler(self, endpoint: str, method: str) -> Handler | None:
        """What answers ``method`` on ``endpoint`` instead of the URL's own view (None: the view)."""
        return None

    def state_headers(self, state: ResourceState) -> dict[str, str]:
        """The resource's state, as this dialect's responses carry it."""
        return byterange_state_headers(state, context.settings())

    def answer(self, error: ByterangeError) -> ErrorAnswer:
        """The status (and problem type, and headers) this dialect gives ``error``."""
        return ErrorAnswer(error.status)

    def discovery_headers(self) -> dict[str, str]:
        """What ``OPTIONS`` advertises: only capabilities that are configured here."""
        return byterange_discovery_headers(context.settings())

    def stamp(self, response: Response) -> None:
        """What every response to a request in this dialect carries."""

    def problem(self, error: ByterangeError) -> ErrorAnswer:
        """How ``error`` is answered: :meth:`answer`, and the state of the resource the request
        is about when the error reports it, so a client can resume at once."""
        answer = self.answer(error)
        resource_id = context.subject_id()
        if resource_id is None or not error.reports_state:
            return answer
        if isinstance(error, (ResourceNotFoundError, ResourceGoneError, UnsupportedVersionError)):
            return answer  # no such resource, or (tus 412) a request that must not be processed at all
        try:
            state = context.service().state(resource_id, ranges_budget=context.ranges_budget())
        except ByterangeError:
            return answer
        return answer.with_headers(self.state_headers(state))


class _Tus(Dialect):
    name = "tus"

    def claims(self, headers: Mapping[str, str]) -> bool:
        return tus.claims(headers)

    def handler(self, endpoint: str, method: str) -> Handler | None:
        tus.check_version()  # a version this server does not speak is refused before anything else
        return tus.HANDLERS.get((endpoint, method))

    def state_headers(self, state: ResourceState) -> dict[str, str]:
        return tus.tus_state_headers(state)

    def answer(self, error: ByterangeError) -> ErrorAnswer:
        return tus.tus_answer(error)

    def discovery_headers(self) -> dict[str, str]:
        return tus.discovery_headers()

    def stamp(self, response: Response) -> None:
        tus.stamp(response)


class _Ietf(Dialect):
    name = "ietf"

    def claims(self, headers: Mapping[str, str]) -> bool:
        return ietf.claims(headers)

    def handler(self, endpoint: str, method: str) -> Handler | None:
        return ietf.HANDLERS.get((endpoint, method))

    def state_headers(self, state: ResourceState) -> dict[str, str]:
        return ietf.ietf_state_headers(state)

    def answer(self, error: ByterangeError) -> ErrorAnswer:
        return ietf.ietf_answer(error)

    def discovery_headers(self) -> dict[str, str]:
        return ietf.options_headers()

    def stamp(self, response: Response) -> None:
        ietf.stamp(response)

    def problem(self, error: ByterangeError) -> ErrorAnswer:
        return ietf.says_incomplete(super().problem(error), error)


TUS: Dialect = _Tus()
IETF: Dialect = _Ietf()
BYTERANGE = Dialect()
#: The dispatch policy: the first that claims a request is its dialect.
DIALECTS: tuple[Dialect, ...] = (TUS, IETF, BYTERANGE)


def dialect() -> Dialect:
    """The dialect of the request being handled (decided on first use, then kept for it)."""
    if "dialect" not in g:
        g.dialect = next(candidate for candidate in DIALECTS if candidate.claims(request.headers))
    return g.dialect  # type: ignore[no-any-return]


def discovery_headers() -> dict[str, str]:
    """What ``OPTIONS`` advertises of every dialect; the policy's order settles a shared field."""
    headers: dict[str, str] = {}
    for candidate in DIALECTS:
        for name, value in candidate.discovery_headers().items():
            headers.setdefault(name, value)
    return headers
