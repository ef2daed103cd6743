"""Checks of Byte Range PATCH (draft-ietf-httpapi-patch-byterange-03): PATCH with
``message/byterange``, ``multipart/byteranges`` and ``application/byteranges``, with the
RFC 9110 and RFC 5789 rules they rest on.

The draft defines no way to create a resource to patch. The checker first tries this
project's allocation (``POST`` to the URL, empty body, ``201`` + ``Location``), then the
draft's own workflow (a write to a new, partly random URL under the given one with
``If-None-Match: *``). A media type the server refuses with 415 is ``not supported``.
"""

from __future__ import annotations

import time

from .catalogue import Context
from .catalogue import check
from .catalogue import failed
from .catalogue import not_applicable
from .catalogue import require
from .catalogue import unsupported
from .probe import Exchange

SPEC = "draft-ietf-httpapi-patch-byterange-03"
RFC9110 = "RFC 9110"
RFC5789 = "RFC 5789"
BOUNDARY = "conformance-boundary"


def message(fields: dict[str, str], data: bytes) -> bytes:
    """A ``message/byterange`` document: field block, blank line, the part body."""
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in fields.items()) + b"\r\n" + data


def multipart(parts: list[tuple[dict[str, str], bytes]]) -> bytes:
    out = b""
    for fields, data in parts:
        out += f"--{BOUNDARY}\r\n".encode() + message(fields, data) + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _varint(value: int) -> bytes:
    """QUIC variable-length integer (RFC 9000 §16), minimal encoding."""
    if value < 1 << 6:
        return bytes([value])
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x80000000).to_bytes(4, "big")
    return (value | 0xC000000000000000).to_bytes(8, "big")


def binary(parts: list[tuple[dict[str, str], bytes]]) -> bytes:
    """``application/byteranges``: known-length messages (framing indicator 8)."""
    out = b""
    for fields, data in parts:
        section = b"".join(
            _varint(len(name)) + name.lower().encode() + _varint(len(value)) + value.encode()
            for name, value in fields.items()
        )
        out += _varint(8) + _varint(len(section)) + section + _varint(len(data)) + data
    return out


def _resource(ctx: Context) -> str:
    """A new resource to patch."""
    cached = ctx.shared.get("byterange-create")
    if cached != "put":
        exchange = ctx.request("POST", ctx.url, {})
        location = exchange.location()
        if exchange.status == 201 and location:
            ctx.shared["byterange-create"] = "post"
            return location
    url = ctx.url.rstrip("/") + "/" + ctx.unique()
    exchange = ctx.request("PUT", url, {"If-None-Match": "*", "Prefer": "transaction=persist"}, b"")
    if exchange.status is None or exchange.status >= 300:
        raise not_applicable(
            "cannot create a resource to patch: neither POST (201 + Location) "
            "nor PUT with If-None-Match: * to a new URL worked"
        )
    ctx.shared["byterange-create"] = "put"
    return url


def _patch(ctx: Context, url: str, media_type: str, body: bytes, **fields: str) -> Exchange:
    headers = {"Content-Type": media_type}
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    exchange = ctx.request("PATCH", url, headers, body)
    if exchange.status == 415:
        raise unsupported(f"{media_type.split(';')[0]} is refused with 415")
    return exchange


def _mb(ctx: Context, url: str, first: int, data: bytes, length: int | str = "*", **extra: str) -> Exchange:
    fields = {"Content-Range": f"bytes {first}-{first + len(data) - 1}/{length}"}
    fields.update(extra)
    return _patch(ctx, url, "message/byterange", message(fields, data))


def _body(ctx: Context, url: str) -> bytes | None:
    exchange = ctx.request("GET", url, {})
    return exchange.final.body if exchange.status == 200 and exchange.final else None


def _ok(exchange: Exchange) -> bool:
    return exchange.status is not None and 200 <= exchange.status < 300


# Writes in each media type ------------------------------------------------------------------


@check(
    "byterange.message.write",
    "byterange",
    "message/byterange",
    "MUST",
    "a message/byterange part's body is written at its Content-Range",
)
def message_write(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 4, b"efgh", 8)), "the second half was not accepted")
    require(_ok(_mb(ctx, url, 0, b"abcd", 8)), "the first half was not accepted")
    require(_body(ctx, url) == b"abcdefgh", "GET does not return the bytes written")
    return ""


@check(
    "byterange.multipart.write",
    "byterange",
    "multipart/byteranges",
    "MUST",
    "each part of a multipart/byteranges patch is written at its Content-Range",
)
def multipart_write(ctx: Context) -> str:
    url = _resource(ctx)
    body = multipart(
        [({"Content-Range": "bytes 0-3/8"}, b"abcd"), ({"Content-Range": "bytes 4-7/8"}, b"efgh")]
    )
    require(_ok(_patch(ctx, url, f"multipart/byteranges; boundary={BOUNDARY}", body)), "not accepted")
    require(_body(ctx, url) == b"abcdefgh", "GET does not return the bytes written")
    return ""


@check(
    "byterange.binary.write",
    "byterange",
    "application/byteranges",
    "MUST",
    "each known-length message of an application/byteranges patch is written at its Content-Range",
)
def binary_write(ctx: Context) -> str:
    url = _resource(ctx)
    body = binary([({"Content-Range": "bytes 0-3/8"}, b"abcd"), ({"Content-Range": "bytes 4-7/8"}, b"efgh")])
    require(_ok(_patch(ctx, url, "application/byteranges", body)), "not accepted")
    require(_body(ctx, url) == b"abcdefgh", "GET does not return the bytes written")
    return ""


@check(
    "byterange.content-offset",
    "byterange",
    "Content-Offset",
    "MAY",
    "a part may give its position with Content-Offset instead of Content-Range",
)
def content_offset(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = _patch(
        ctx, url, "message/byterange", message({"Content-Offset": "0; complete-length=4"}, b"wxyz")
    )
    if not _ok(exchange):
        raise unsupported(f"Content-Offset answered {exchange.status}")
    require(_body(ctx, url) == b"wxyz", "GET does not return the bytes written")
    return ""


# Part fields --------------------------------------------------------------------------------


@check(
    "byterange.part.no-range",
    "byterange",
    "Modifying a content range with PATCH",
    "MUST",
    "a part without a known range is rejected with 422 or 400, nothing applied",
)
def part_no_range(ctx: Context) -> str:
    url = _resource(ctx)
    body = multipart([({"Content-Range": "bytes 0-3/8"}, b"abcd"), ({"X-Note": "no range"}, b"efgh")])
    exchange = _patch(ctx, url, f"multipart/byteranges; boundary={BOUNDARY}", body)
    require(exchange.status in (400, 422), "not 422 or 400")
    require(
        _ok(_mb(ctx, url, 4, b"efgh", 8))
        and _ok(_mb(ctx, url, 0, b"ABCD", 8))
        and _body(ctx, url) == b"ABCDefgh",
        "part of the rejected patch was applied",
    )
    return ""


@check(
    "byterange.part.content-length",
    "byterange",
    "Content-Length in a part",
    "MUST",
    "a part whose Content-Length differs from its range's length fails the request",
)
def part_content_length(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = _patch(
        ctx,
        url,
        "message/byterange",
        message({"Content-Range": "bytes 0-3/4", "Content-Length": "3"}, b"abcd"),
    )
    require(exchange.status is not None and 400 <= exchange.status < 500, "not refused with a 4xx")
    return ""


@check(
    "byterange.part.unknown-fields",
    "byterange",
    "message/byterange",
    "MUST",
    "unknown part fields are ignored",
)
def part_unknown_fields(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 0, b"abcd", 4, **{"X-Conformance-Unknown": "1"})), "refused")
    require(_body(ctx, url) == b"abcd", "GET does not return the bytes written")
    return ""


@check(
    "byterange.part.content-type",
    "byterange",
    "2.4 Part fields",
    "MUST",
    "a part's Content-Type has the effect it would have on a PUT of the whole resource",
)
def part_content_type(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 0, b"{}", 2, **{"Content-Type": "application/json"})), "refused")
    exchange = ctx.request("GET", url, {})
    served = exchange.field("Content-Type")
    require(exchange.status == 200, "GET of the written resource failed")
    require((served or "").split(";")[0].strip() == "application/json", f"served as {served!r}")
    return ""


@check(
    "byterange.range.invalid",
    "byterange",
    "RFC 9110 §14.4",
    "MUST",
    "an invalid Content-Range (last < first) is not combined with stored data",
    spec=RFC9110,
)
def invalid_range(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = _patch(ctx, url, "message/byterange", message({"Content-Range": "bytes 3-0/8"}, b"abcd"))
    require(exchange.status is not None and 400 <= exchange.status < 500, "not refused with a 4xx")
    return ""


# Resource state ------------------------------------------------------------------------------


@check(
    "byterange.sparse.uninitialised",
    "byterange",
    "Sparse writes",
    "MUST",
    "bytes never written (holes) are never served as uninitialised data",
)
def sparse(ctx: Context) -> str:
    url = _resource(ctx)
    if not (_ok(_mb(ctx, url, 0, b"ab", 8)) and _ok(_mb(ctx, url, 6, b"gh", 8))):
        raise not_applicable("sparse writes are refused (the draft says SHOULD NOT accept them)")
    exchange = ctx.request("GET", url, {"Range": "bytes=0-7"})
    if exchange.status not in (200, 206) or exchange.final is None:
        return f"holes refused ({exchange.status})"
    body = exchange.final.body
    require(body[2:6] in (b"", b"\0\0\0\0") or len(body) <= 2, f"the hole was served as {body[2:6]!r}")
    return "holes served as zeros"


@check(
    "byterange.interrupted",
    "byterange",
    "Body shorter than declared",
    "MUST",
    "a body cut short is an interruption: nothing past what arrived, and the resource is not complete",
)
def interrupted(ctx: Context) -> str:
    url = _resource(ctx)
    size = 64 * 1024
    document = message({"Content-Range": f"bytes 0-{size - 1}/{size}"}, b"i" * size)
    stream = ctx.open(
        "PATCH",
        url,
        {"Content-Type": "message/byterange", "Prefer": "transaction=persist"},
        content_length=len(document),
    )
    stream.send(document[: len(document) // 2])
    time.sleep(0.5)
    stream.abort()
    ctx.note(f"PATCH of {len(document)} bytes: half sent, then the connection closed")
    time.sleep(1.0)
    exchange = ctx.request("GET", url, {})
    if exchange.status == 200 and exchange.final is not None:
        require(
            len(exchange.final.body) < size, "the resource is served whole though half its body never came"
        )
    return f"GET answered {exchange.status}"


@check(
    "byterange.prefer.applied",
    "byterange",
    "The transaction preference",
    "SHOULD",
    "Prefer: transaction=atomic is reported with Preference-Applied",
)
def prefer_applied(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = ctx.request(
        "PATCH",
        url,
        {"Content-Type": "message/byterange", "Prefer": "transaction=atomic"},
        message({"Content-Range": "bytes 0-3/4"}, b"abcd"),
    )
    value = (exchange.field("Preference-Applied") or "")
    require("transaction=atomic" in value.replace(" ", ""), "no Preference-Applied: transaction=atomic")
    return ""


@check(
    "byterange.large-allocation",
    "byterange",
    "Security: large allocations",
    "SHOULD",
    "a length too large to allocate is refused with 400, not 413",
)
def large_allocation(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = _mb(ctx, url, 0, b"a", 999_999_999_999_999)
    if _ok(exchange):
        raise not_applicable("the server accepted a 999999999999999-byte length")
    require(exchange.status == 400, f"refused with {exchange.status}, not 400")
    return ""


# RFC 5789 and RFC 9110 around it --------------------------------------------------------------


@check(
    "byterange.415.accept-patch",
    "byterange",
    "RFC 5789 §2.2",
    "SHOULD",
    "a PATCH in an unsupported format gets 415 with Accept-Patch",
    spec=RFC5789,
)
def accept_patch_415(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = ctx.request("PATCH", url, {"Content-Type": "application/x-conformance-unknown"}, b"x")
    require(exchange.status == 415, "not 415")
    require(exchange.has("Accept-Patch"), "no Accept-Patch")
    return exchange.final.get("Accept-Patch") or ""


@check(
    "byterange.options.accept-patch",
    "byterange",
    "RFC 5789 §3.1",
    "SHOULD",
    "OPTIONS of a resource that accepts PATCH lists the formats in Accept-Patch",
    spec=RFC5789,
)
def options_accept_patch(ctx: Context) -> str:
    url = _resource(ctx)
    exchange = ctx.request("OPTIONS", url, {})
    value = (exchange.field("Accept-Patch") or "")
    require(
        "message/byterange" in value or "multipart/byteranges" in value,
        "Accept-Patch lists no byte-range format",
    )
    return value


@check(
    "byterange.put.partial",
    "byterange",
    "RFC 9110 §14.5",
    "SHOULD",
    "a PUT with Content-Range either replaces that range or is refused with 400",
    spec=RFC9110,
)
def partial_put(ctx: Context) -> str:
    url = _resource(ctx)
    if not _ok(_mb(ctx, url, 0, b"abcd", 8)):
        raise failed("setup: writing the first half failed")
    exchange = ctx.request("PUT", url, {"Content-Range": "bytes 4-7/8"}, b"efgh")
    if exchange.status == 400:
        return "refused with 400"
    body = _body(ctx, url)
    require(body != b"efgh", "the PUT replaced the whole resource")
    require(
        _ok(exchange) and body == b"abcdefgh",
        f"neither applied to the range nor refused with 400 ({exchange.status})",
    )
    return "applied to the range"


# Policies (the draft is silent) --------------------------------------------------------------


@check(
    "byterange.policy.rewrite-same",
    "byterange",
    "Overlapping writes",
    "POLICY",
    "re-sending bytes already stored, identical, succeeds (idempotent retry)",
    policy="the draft says nothing of overlapping writes; byterange-server accepts identical bytes",
)
def rewrite_same(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 0, b"abcd", 8)), "setup: the first write failed")
    require(_ok(_mb(ctx, url, 0, b"abcd", 8)), "the identical retry was refused")
    return ""


@check(
    "byterange.policy.rewrite-different",
    "byterange",
    "Overlapping writes",
    "POLICY",
    "bytes that would overwrite stored bytes with different ones get 409; nothing applied",
    policy="the draft says nothing of overlapping writes; byterange-server's uploads are write-once",
)
def rewrite_different(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 0, b"abcd", 8)), "setup: the first write failed")
    require(_mb(ctx, url, 2, b"XY", 8).status == 409, "not 409")
    return ""


@check(
    "byterange.policy.committed-ranges",
    "byterange",
    "Open issue #1 (resuming non-contiguous uploads)",
    "POLICY",
    "HEAD lists the stored ranges in Committed-Ranges",
    policy="nothing standard reports sparse ranges; byterange-server sends Committed-Ranges",
)
def committed_ranges(ctx: Context) -> str:
    url = _resource(ctx)
    require(_ok(_mb(ctx, url, 4, b"efgh", 8)), "setup: the write failed")
    exchange = ctx.request("HEAD", url, {})
    value = exchange.field("Committed-Ranges")
    require(value == "bytes=4-7", f"Committed-Ranges: {value!r}")
    return ""
