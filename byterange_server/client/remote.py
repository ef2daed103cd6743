"""What a response says about a remote resource, parsed (sans-IO).

The server sends the same state headers on ``HEAD`` and on every write response
(docs/protocol.md#head-committed-state): ``Upload-Offset``, ``Upload-Length``,
``Upload-Complete``, ``Committed-Ranges`` and a ``Link`` to the paginated committed-range
document; complete resources add ``ETag`` and ``Repr-Digest``. :class:`RemoteState` reads them
all once, strictly, with the server's own parsers, so the upload and download code never touches
raw header strings.

Any other HTTP server's ``HEAD`` parses too (downloads work against plain file servers): the
byte-range fields are then simply absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urljoin

import http_sf

from byterange_server.errors import ByterangeError
from byterange_server.extents import Extent
from byterange_server.protocol.digests import parse_digest_field
from byterange_server.protocol.numbers import parse_int
from byterange_server.protocol.numbers import parse_sf_boolean
from byterange_server.protocol.params import find_link
from byterange_server.protocol.validators import ETag

from .errors import ProtocolError
from .plan import committed_from_header

__all__ = ["RemoteState", "parse_limits"]


@dataclass(frozen=True)
class RemoteState:
    """The state of a resource as one response reported it.

    :ivar url: the resource URL the response was for.
    :ivar length: ``Upload-Length`` (byte-range servers) or, failing that, the ``Content-Length``
        of a ``HEAD`` on a plain server; ``None`` when unknown.
    :ivar complete: ``Upload-Complete``; ``None`` when the server did not say (plain servers).
    :ivar committed: the committed ranges from ``Committed-Ranges``; ``None`` when the header was
        absent, in which case :attr:`committed_link` points at the JSON document holding them.
    :ivar etag: the strong entity tag, or ``None`` (weak tags cannot validate ranges).
    :ivar digests: ``Repr-Digest`` members, algorithm → digest bytes.
    """

    url: str
    status: int
    length: int | None = None
    offset: int | None = None
    complete: bool | None = None
    committed: list[Extent] | None = None
    committed_link: str | None = None
    etag: ETag | None = None
    digests: dict[str, bytes] = field(default_factory=dict)
    accept_ranges: bool = False

    @classmethod
    def from_headers(
        cls, url: str, status: int, headers: Mapping[str, str], *, head: bool = False
    ) -> RemoteState:
        """Parse the state fields of one response.

        :param head: the response answers a ``HEAD``, so ``Content-Length`` is the length of
            the representation (used only when ``Upload-Length`` is absent).
        :raises ProtocolError: a state field is present but malformed.
        """
        try:
            return cls._parse(url, status, headers, head)
        except (ByterangeError, ValueError) as exc:
            raise ProtocolError(f"{url}: malformed state header in the response: {exc}") from None

    @classmethod
    def _parse(cls, url: str, status: int, headers: Mapping[str, str], head: bool) -> RemoteState:
        get = headers.get
        length = _optional_int(get("Upload-Length"), "Upload-Length")
        if length is None and head and get("Upload-Complete") is None:
            length = _optional_int(get("Content-Length"), "Content-Length")
        complete_value = get("Upload-Complete")
        ranges_value = get("Committed-Ranges")
        link = find_link(get("Link"), "committed-ranges")
        etag = ETag.parse(get("ETag")) if get("ETag") else None
        digest_value = get("Repr-Digest")
        return cls(
            url=url,
            status=status,
            length=length,
            offset=_optional_int(get("Upload-Offset"), "Upload-Offset"),
            complete=parse_sf_boolean(complete_value, field="Upload-Complete")
            if complete_value is not None
            else None,
            committed=committed_from_header(ranges_value) if ranges_value is not None else None,
            committed_link=urljoin(url, link) if link is not None else None,
            etag=etag if etag is not None and not etag.weak else None,
            digests=parse_digest_field(digest_value, field="Repr-Digest") if digest_value else {},
            accept_ranges="bytes" in (get("Accept-Ranges") or "").lower(),
        )

    @property
    def is_byterange_resource(self) -> bool:
        """The server speaks the byte-range upload protocol for this resource."""
        return self.complete is not None


def _optional_int(value: str | None, name: str) -> int | None:
    return parse_int(value.strip(" \t"), field=name) if value is not None else None


def parse_limits(value: str | None) -> dict[str, int]:
    """The integer members of a ``Byterange-Limits`` field (``OPTIONS``), e.g. ``max-parts``.

    A limit is advice for sizing requests: an absent or unreadable field gives ``{}``.
    """
    if not value or not value.isascii():
        return {}
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, ValueError):
        return {}
    return {name: member[0] for name, member in parsed.items() if type(member[0]) is int}
