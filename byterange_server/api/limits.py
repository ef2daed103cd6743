"""Request limits checked before a view runs (the service enforces sizes, extents and concurrent
writes itself): transfer codings, header blocks and the announced size of one request body.

- **Transfer codings**: a ``Transfer-Encoding`` other than one final ``chunked`` (``gzip,
  chunked``, ``identity, chunked``) is refused with ``501`` before anything is read or stored
  (RFC 9112 §6.1); framing that cannot be trusted (``chunked`` twice or not last) is a ``400``
  (§6.3). gunicorn refuses most of these itself; ``gzip``/``deflate``/``compress`` before
  ``chunked`` it accepts, and the still-compressed bytes would have been stored as the content.
- **Header block** (``max_header_fields``, ``max_header_bytes``): checked before routing, so an
  oversized block is a ``431`` problem document. gunicorn's own caps (``limit_request_fields``,
  ``limit_request_field_size`` in gunicorn_conf.py) sit above these as a backstop; our worker
  (worker.py) answers those with a ``431`` problem document too.
- **Body size** (``max_request_bytes``): a larger ``Content-Length`` is refused before a byte is
  read (413); a chunked body is read up to the limit and then ended (``body.py``), keeping what
  came before under ``persist``.
- **Minimum rate** (``min_body_rate`` over ``min_body_rate_window``): enforced while a body is
  read, by the throughput guard in ``body.py``.
"""

from __future__ import annotations

from flask import request

from ..config import Settings
from ..errors import HeaderFieldsTooLargeError
from ..errors import MalformedHeaderError
from ..errors import RequestTooLargeError
from ..errors import UnsupportedTransferCodingError

__all__ = ["check_request"]

_WRITE_METHODS = frozenset({"PATCH", "PUT", "POST"})


def check_request(settings: Settings) -> None:
    """Every request, before routing reaches a view: its framing, its header block, and the
    announced size of an upload body."""
    _check_transfer_coding(request.headers.get("Transfer-Encoding"))
    _check_header_block(settings)
    if request.blueprint != "byterange" or request.method not in _WRITE_METHODS:
        return
    length = request.content_length
    if settings.max_request_bytes and length is not None and length > settings.max_request_bytes:
        raise RequestTooLargeError(
            "The request body is larger than this server accepts in one request; send it in "
            "smaller requests.",
            extra={"max-request-bytes": settings.max_request_bytes, "content-length": length},
        )


def _check_transfer_coding(value: str | None) -> None:
    if value is None:
        return
    codings = [coding.strip(" \t").lower() for coding in value.split(",")]
    codings = [coding for coding in codings if coding]
    if codings == ["chunked"]:
        return
    names = [coding.split(";", 1)[0].rstrip(" \t") for coding in codings]
    if not names or names[-1] != "chunked" or names.count("chunked") > 1:
        raise MalformedHeaderError(
            "Transfer-Encoding must end with chunked, once (RFC 9112 §6.3): the body's length "
            "cannot be known otherwise.",
            extra={"transfer-encoding": value[:200]},
        )
    raise UnsupportedTransferCodingError(
        "This server supports no transfer coding but chunked; send the body uncompressed "
        "(Content-Encoding describes the content, and is stored as it is).",
        extra={"transfer-encoding": value[:200]},
    )


def _check_header_block(settings: Settings) -> None:
    fields = 0
    size = 0
    for name, value in request.headers.items():
        fields += 1
        size += len(name) + len(value) + 4  # ": " and CRLF
    if settings.max_header_fields and fields > settings.max_header_fields:
        raise HeaderFieldsTooLargeError(
            "The request has more header fields than this server accepts.",
            extra={"max-header-fields": settings.max_header_fields},
        )
    if settings.max_header_bytes and size > settings.max_header_bytes:
        raise HeaderFieldsTooLargeError(
            "The request's header fields are larger than this server accepts.",
            extra={"max-header-bytes": settings.max_header_bytes},
        )
