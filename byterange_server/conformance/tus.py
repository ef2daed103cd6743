"""Checks of tus 1.0.0 (protocol.md of tus/tus-resumable-upload-protocol): the core protocol
and every extension a server advertises in ``Tus-Extension``.

An extension the server does not advertise is ``not supported``, never a failure: tus makes
every extension optional. Sections are the headings of protocol.md.
"""

from __future__ import annotations

import base64
import hashlib
import time
from email.utils import parsedate_to_datetime

from . import probe
from .catalogue import Context
from .catalogue import check
from .catalogue import failed
from .catalogue import not_applicable
from .catalogue import passed
from .catalogue import require
from .catalogue import summarise
from .catalogue import unsupported
from .probe import Exchange

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def _send(
    ctx: Context,
    method: str,
    url: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    is_chunked: bool = False,
    tus: bool = True,
) -> Exchange:
    sent = dict(TUS) if tus else {}
    sent.update(headers or {})
    exchange = ctx.request(method, url, sent, body, is_chunked=is_chunked)
    if method != "OPTIONS" and exchange.final is not None:
        ctx.shared.setdefault("tus-responses", []).append(exchange)
    return exchange


def _options(ctx: Context) -> Exchange:
    if "tus-options" not in ctx.shared:
        ctx.shared["tus-options"] = probe.request("OPTIONS", ctx.url, {}, timeout=ctx.timeout)
    exchange: Exchange = ctx.shared["tus-options"]
    line = summarise(exchange)
    if line not in ctx.evidence:
        ctx.note(line)
    return exchange


def _extensions(ctx: Context) -> set[str]:
    exchange = _options(ctx)
    value = exchange.final.get("Tus-Extension", "") if exchange.final else ""
    return {token.strip() for token in (value or "").split(",") if token.strip()}


def _need(ctx: Context, extension: str) -> None:
    if extension not in _extensions(ctx):
        raise unsupported(f"{extension!r} is not in Tus-Extension")


def _create(ctx: Context, length: int | None = 8, headers: dict[str, str] | None = None) -> str:
    """A new upload's URL (the creation extension is the only way tus defines to get one)."""
    if "creation" not in _extensions(ctx):
        raise not_applicable(
            "uploads can only be created with the creation extension, which is not advertised"
        )
    sent = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    sent.update(headers or {})
    exchange = _send(ctx, "POST", ctx.url, sent)
    location = exchange.location()
    if exchange.status != 201 or not location:
        raise failed(
            f"setup: creation answered {exchange.final.status_line if exchange.final else exchange.error}"
        )
    return location


def _patch(
    ctx: Context, url: str, offset: int, data: bytes, headers: dict[str, str] | None = None
) -> Exchange:
    sent = {"Content-Type": OCTETS, "Upload-Offset": str(offset)}
    sent.update(headers or {})
    return _send(ctx, "PATCH", url, sent, data)


def _offset(ctx: Context, url: str) -> int | None:
    exchange = _send(ctx, "HEAD", url)
    value = exchange.field("Upload-Offset")
    return int(value) if value is not None and value.isdigit() else None


# Core protocol -------------------------------------------------------------------------------


@check(
    "tus.options.version",
    "tus",
    "Core Protocol / OPTIONS",
    "MUST",
    "OPTIONS answers 200 or 204 with Tus-Version",
)
def options_version(ctx: Context) -> str:
    exchange = _options(ctx)
    require(exchange.status in (200, 204), "OPTIONS did not succeed")
    require(exchange.has("Tus-Version"), "no Tus-Version")
    return f"Tus-Version: {exchange.final.get('Tus-Version')}"


@check(
    "tus.version.412",
    "tus",
    "Core Protocol / Headers / Tus-Resumable",
    "MUST",
    "an unsupported Tus-Resumable version gets 412 with Tus-Version and is not processed",
)
def version_mismatch(ctx: Context) -> str:
    exchange = _send(ctx, "POST", ctx.url, {"Tus-Resumable": "0.0.1", "Upload-Length": "8"})
    require(exchange.status == 412, "not 412")
    require(exchange.has("Tus-Version"), "412 without Tus-Version")
    require(not exchange.final.has("Location"), "the request was processed: an upload was created")
    return "412 with Tus-Version"


@check(
    "tus.head.offset",
    "tus",
    "Core Protocol / Requests / HEAD",
    "MUST",
    "HEAD carries Upload-Offset (also at 0) and Upload-Length when known",
)
def head_offset(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _send(ctx, "HEAD", url)
    require(exchange.status in (200, 204), "HEAD did not succeed")
    assert exchange.final is not None
    require(exchange.final.get("Upload-Offset") == "0", "Upload-Offset is not 0 on a new upload")
    require(exchange.final.get("Upload-Length") == "8", "Upload-Length is not the declared 8")
    return "Upload-Offset: 0, Upload-Length: 8"


@check(
    "tus.head.no-store",
    "tus",
    "Core Protocol / Requests / HEAD",
    "MUST",
    "HEAD responses carry Cache-Control: no-store",
)
def head_no_store(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _send(ctx, "HEAD", url)
    value = (exchange.field("Cache-Control") or "")
    require("no-store" in value.lower(), "no Cache-Control: no-store")
    return ""


@check(
    "tus.head.404",
    "tus",
    "Core Protocol / Requests / HEAD",
    "SHOULD",
    "HEAD of an unknown upload is 404, 410 or 403, without Upload-Offset",
)
def head_missing(ctx: Context) -> str:
    exchange = _send(ctx, "HEAD", ctx.url.rstrip("/") + "/" + ctx.unique())
    require(exchange.status in (403, 404, 410), "not 404, 410 or 403")
    require(exchange.final is not None and not exchange.final.has("Upload-Offset"), "carries Upload-Offset")
    return ""


@check(
    "tus.patch.204",
    "tus",
    "Core Protocol / Requests / PATCH",
    "MUST",
    "a PATCH at the current offset is applied: 204 with the new Upload-Offset",
)
def patch_applied(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd")
    require(exchange.status == 204, "not 204")
    assert exchange.final is not None
    require(exchange.final.get("Upload-Offset") == "4", "Upload-Offset is not 4 after 4 bytes")
    require(_offset(ctx, url) == 4, "HEAD does not report the 4 bytes")
    return ""


@check(
    "tus.patch.409",
    "tus",
    "Core Protocol / Requests / PATCH",
    "MUST",
    "a PATCH whose Upload-Offset is not the current offset gets 409 and changes nothing",
)
def patch_mismatch(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 3, b"abcd")
    require(exchange.status == 409, "not 409")
    require(_offset(ctx, url) == 0, "the upload changed")
    return ""


@check(
    "tus.patch.415",
    "tus",
    "Core Protocol / Requests / PATCH",
    "SHOULD",
    "a PATCH without Content-Type application/offset+octet-stream gets 415",
)
def patch_media_type(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd", {"Content-Type": "application/octet-stream"})
    require(exchange.status == 415, "not 415")
    require(_offset(ctx, url) == 0, "the bytes were applied anyway")
    return ""


@check(
    "tus.patch.404",
    "tus",
    "Core Protocol / Requests / PATCH",
    "SHOULD",
    "a PATCH to an unknown upload gets 404",
)
def patch_missing(ctx: Context) -> str:
    exchange = _patch(ctx, ctx.url.rstrip("/") + "/" + ctx.unique(), 0, b"abcd")
    require(exchange.status == 404, "not 404")
    return ""


@check(
    "tus.patch.interrupted",
    "tus",
    "Core Protocol / Requests / PATCH",
    "SHOULD",
    "an interrupted PATCH stores as much of its body as possible",
)
def patch_interrupted(ctx: Context) -> str:
    size = 256 * 1024
    url = _create(ctx, size)
    stalled = ctx.open(
        "PATCH", url, {**TUS, "Content-Type": OCTETS, "Upload-Offset": "0"}, content_length=size
    )
    stalled.send(b"x" * (size // 2))
    time.sleep(0.5)
    stalled.abort()
    ctx.note(f"PATCH {url} with Content-Length {size}: {size // 2} bytes sent, then the connection closed")
    offset = None
    for _ in range(20):
        offset = _offset(ctx, url)
        if offset:
            break
        time.sleep(0.25)
    require(offset is not None and offset > 0, "nothing of the interrupted body was stored")
    require(offset <= size // 2, "more bytes stored than were sent")
    return f"{offset} of {size // 2} bytes kept"


@check(
    "tus.method-override",
    "tus",
    "Core Protocol / Headers / X-HTTP-Method-Override",
    "MUST",
    "X-HTTP-Method-Override is interpreted as the request's method",
)
def method_override(ctx: Context) -> str:
    url = _create(ctx, 8)
    exchange = _send(
        ctx,
        "POST",
        url,
        {"X-HTTP-Method-Override": "PATCH", "Content-Type": OCTETS, "Upload-Offset": "0"},
        b"abcd",
    )
    require(exchange.status == 204, "a POST overridden as PATCH was not answered as a PATCH")
    require(_offset(ctx, url) == 4, "the bytes were not appended")
    return ""


# creation, creation-with-upload, creation-defer-length ---------------------------------------


@check(
    "tus.creation.201",
    "tus",
    "Extensions / Creation",
    "MUST",
    "POST with Upload-Length creates an upload: 201 with Location",
    extension="creation",
)
def creation(ctx: Context) -> str:
    _need(ctx, "creation")
    exchange = _send(ctx, "POST", ctx.url, {"Upload-Length": "8"})
    require(exchange.status == 201, "not 201")
    require(exchange.location() is not None, "no Location")
    return ""


@check(
    "tus.creation.metadata",
    "tus",
    "Extensions / Creation / Upload-Metadata",
    "MUST",
    "HEAD echoes the Upload-Metadata given at creation",
    extension="creation",
)
def creation_metadata(ctx: Context) -> str:
    _need(ctx, "creation")
    metadata = "filename " + base64.b64encode(b"world.txt").decode() + ",is_confidential"
    url = _create(ctx, 8, {"Upload-Metadata": metadata})
    exchange = _send(ctx, "HEAD", url)
    echoed = exchange.field("Upload-Metadata")
    require(echoed is not None, "no Upload-Metadata on HEAD")

    def pairs(value: str) -> set[tuple[str, str]]:
        return {tuple((item.strip().split(" ", 1) + [""])[:2]) for item in value.split(",")}  # type: ignore[misc]

    require(pairs(echoed) == pairs(metadata), f"Upload-Metadata differs: {echoed!r}")
    return ""


@check(
    "tus.creation.413",
    "tus",
    "Extensions / Creation / POST",
    "MUST",
    "a length over the maximum (Tus-Max-Size) gets 413",
    extension="creation",
)
def creation_too_large(ctx: Context) -> str:
    _need(ctx, "creation")
    options = _options(ctx).final
    limit = options.get("Tus-Max-Size") if options else None
    if not limit or not limit.isdigit():
        raise not_applicable("no Tus-Max-Size advertised")
    exchange = _send(ctx, "POST", ctx.url, {"Upload-Length": str(int(limit) + 1)})
    require(exchange.status == 413, "not 413")
    return ""


@check(
    "tus.creation-with-upload.offset",
    "tus",
    "Extensions / Creation With Upload",
    "MUST",
    "a creation POST with a body answers with Upload-Offset",
    extension="creation-with-upload",
)
def creation_with_upload(ctx: Context) -> str:
    _need(ctx, "creation-with-upload")
    exchange = _send(ctx, "POST", ctx.url, {"Upload-Length": "8", "Content-Type": OCTETS}, b"abcd")
    require(exchange.status == 201, "not 201")
    assert exchange.final is not None
    require(exchange.final.get("Upload-Offset") == "4", "Upload-Offset is not 4")
    return ""


@check(
    "tus.defer-length",
    "tus",
    "Extensions / Creation Defer Length",
    "MUST",
    "HEAD echoes Upload-Defer-Length: 1 until a PATCH sets Upload-Length",
    extension="creation-defer-length",
)
def defer_length(ctx: Context) -> str:
    _need(ctx, "creation-defer-length")
    url = _create(ctx, None)
    head = _send(ctx, "HEAD", url)
    require(
        head.final is not None and head.final.get("Upload-Defer-Length") == "1",
        "HEAD lacks Upload-Defer-Length: 1",
    )
    patch = _patch(ctx, url, 0, b"abcd", {"Upload-Length": "4"})
    require(patch.status == 204, "a PATCH setting Upload-Length was refused")
    head = _send(ctx, "HEAD", url)
    require(head.final is not None and head.final.get("Upload-Length") == "4", "the length was not recorded")
    return ""


# expiration, checksum, checksum-trailer, termination -----------------------------------------


@check(
    "tus.expiration.header",
    "tus",
    "Extensions / Expiration",
    "MUST",
    "PATCH responses of an upload that will expire carry Upload-Expires (an HTTP-date)",
    extension="expiration",
)
def expiration(ctx: Context) -> str:
    _need(ctx, "expiration")
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd")
    value = exchange.field("Upload-Expires")
    if value is None:
        raise not_applicable("no Upload-Expires: this upload may not expire")
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise failed(f"Upload-Expires is not an HTTP-date: {value!r}") from None
    return ""


def _checksum(data: bytes, algorithm: str = "sha1") -> str:
    return f"{algorithm} " + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


@check(
    "tus.checksum.algorithms",
    "tus",
    "Extensions / Checksum",
    "MUST",
    "OPTIONS lists Tus-Checksum-Algorithm, and sha1 is supported",
    extension="checksum",
)
def checksum_algorithms(ctx: Context) -> str:
    _need(ctx, "checksum")
    options = _options(ctx).final
    value = (options.get("Tus-Checksum-Algorithm") or "") if options else ""
    algorithms = {item.strip() for item in value.split(",")}
    require(bool(value), "no Tus-Checksum-Algorithm")
    require("sha1" in algorithms, "sha1 is not listed")
    return value


@check(
    "tus.checksum.match",
    "tus",
    "Extensions / Checksum",
    "MUST",
    "a PATCH whose Upload-Checksum matches is applied (204)",
    extension="checksum",
)
def checksum_match(ctx: Context) -> str:
    _need(ctx, "checksum")
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd", {"Upload-Checksum": _checksum(b"abcd")})
    require(exchange.status == 204, "not 204")
    return ""


@check(
    "tus.checksum.460",
    "tus",
    "Extensions / Checksum",
    "MUST",
    "a mismatching checksum gets 460 and the chunk is discarded",
    extension="checksum",
)
def checksum_mismatch(ctx: Context) -> str:
    _need(ctx, "checksum")
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd", {"Upload-Checksum": _checksum(b"abce")})
    require(exchange.status == 460, "not 460")
    require(_offset(ctx, url) == 0, "the chunk was kept")
    return ""


@check(
    "tus.checksum.unknown-algorithm",
    "tus",
    "Extensions / Checksum",
    "MUST",
    "an unsupported checksum algorithm gets 400 and the chunk is discarded",
    extension="checksum",
)
def checksum_unknown(ctx: Context) -> str:
    _need(ctx, "checksum")
    url = _create(ctx, 8)
    exchange = _patch(ctx, url, 0, b"abcd", {"Upload-Checksum": "nosuchalgorithm AAAA"})
    require(exchange.status == 400, "not 400")
    require(_offset(ctx, url) == 0, "the chunk was kept")
    return ""


@check(
    "tus.checksum-trailer",
    "tus",
    "Extensions / Checksum / Trailer",
    "MUST",
    "Upload-Checksum sent as a trailer of a chunked PATCH is verified",
    extension="checksum-trailer",
)
def checksum_trailer(ctx: Context) -> str:
    _need(ctx, "checksum-trailer")
    url = _create(ctx, 8)
    headers = {**TUS, "Content-Type": OCTETS, "Upload-Offset": "0", "Trailer": "Upload-Checksum"}
    good = ctx.request(
        "PATCH",
        url,
        headers,
        probe.chunked([b"ab", b"cd"], {"Upload-Checksum": _checksum(b"abcd")}),
        is_chunked=True,
    )
    require(good.status == 204, "a matching trailer checksum was not accepted with 204")
    bad = ctx.request(
        "PATCH",
        url,
        {**headers, "Upload-Offset": "4"},
        probe.chunked([b"efgh"], {"Upload-Checksum": _checksum(b"efgX")}),
        is_chunked=True,
    )
    require(bad.status == 460, "a mismatching trailer checksum was not refused with 460")
    require(_offset(ctx, url) == 4, "the mismatching chunk was kept")
    return ""


@check(
    "tus.termination",
    "tus",
    "Extensions / Termination",
    "MUST",
    "DELETE answers 204; later requests get 404 or 410",
    extension="termination",
)
def termination(ctx: Context) -> str:
    _need(ctx, "termination")
    url = _create(ctx, 8)
    exchange = _send(ctx, "DELETE", url)
    require(exchange.status == 204, "DELETE is not 204")
    head = _send(ctx, "HEAD", url)
    require(head.status in (404, 410), "the upload is still there")
    return ""


# concatenation -------------------------------------------------------------------------------


def _partials(ctx: Context, pieces: list[bytes]) -> list[str]:
    urls = []
    for piece in pieces:
        url = _create(ctx, len(piece), {"Upload-Concat": "partial"})
        exchange = _patch(ctx, url, 0, piece)
        require(exchange.status == 204, "setup: a PATCH to a partial upload was refused")
        urls.append(url)
    return urls


def _path(url: str) -> str:
    return "/" + url.split("//", 1)[-1].partition("/")[2]


@check(
    "tus.concat.final",
    "tus",
    "Extensions / Concatenation",
    "MUST",
    "a final upload is the partials joined in order; its length is their sum",
    extension="concatenation",
)
def concat_final(ctx: Context) -> str:
    _need(ctx, "concatenation")
    urls = _partials(ctx, [b"abc", b"defgh"])
    final = _send(ctx, "POST", ctx.url, {"Upload-Concat": "final;" + " ".join(_path(url) for url in urls)})
    location = final.location()
    require(final.status == 201 and location is not None, "the final upload was not created (201 + Location)")
    assert location is not None
    head = _send(ctx, "HEAD", location)
    require(
        head.final is not None and head.final.get("Upload-Length") == "8", "the final length is not 3 + 5"
    )
    require(head.final.get("Upload-Offset") == "8", "the final upload is not complete")
    return ""


@check(
    "tus.concat.head-echo",
    "tus",
    "Extensions / Concatenation",
    "MUST",
    "HEAD of partial and final uploads carries Upload-Concat as it was received",
    extension="concatenation",
)
def concat_echo(ctx: Context) -> str:
    _need(ctx, "concatenation")
    urls = _partials(ctx, [b"ab", b"cd"])
    partial = _send(ctx, "HEAD", urls[0])
    require(
        partial.final is not None and (partial.final.get("Upload-Concat") or "").strip() == "partial",
        "a partial upload's HEAD lacks Upload-Concat: partial",
    )
    sent = "final;" + " ".join(urls)  # absolute URLs: what a client sends back must come back
    final = _send(ctx, "POST", ctx.url, {"Upload-Concat": sent})
    location = final.location()
    require(location is not None, "the final upload was not created")
    assert location is not None
    head = _send(ctx, "HEAD", location)
    echoed = (head.field("Upload-Concat") or "")
    require(" ".join(echoed.split()) == sent, f"Upload-Concat came back as {echoed!r}, sent {sent!r}")
    return ""


@check(
    "tus.concat.patch-final-403",
    "tus",
    "Extensions / Concatenation",
    "MUST",
    "a PATCH to a final upload gets 403",
    extension="concatenation",
)
def concat_patch_final(ctx: Context) -> str:
    _need(ctx, "concatenation")
    urls = _partials(ctx, [b"ab"])
    final = _send(ctx, "POST", ctx.url, {"Upload-Concat": "final;" + _path(urls[0])})
    location = final.location()
    require(location is not None, "the final upload was not created")
    assert location is not None
    exchange = _patch(ctx, location, 2, b"cd")
    require(exchange.status == 403, "not 403")
    return ""


@check(
    "tus.concat.unfinished",
    "tus",
    "Extensions / Concatenation",
    "MUST",
    "a final upload of unfinished partials has no Upload-Offset until they are done",
    extension="concatenation-unfinished",
)
def concat_unfinished(ctx: Context) -> str:
    _need(ctx, "concatenation-unfinished")
    url = _create(ctx, 4, {"Upload-Concat": "partial"})
    final = _send(ctx, "POST", ctx.url, {"Upload-Concat": "final;" + _path(url)})
    location = final.location()
    require(
        final.status == 201 and location is not None, "a final upload of an unfinished partial was refused"
    )
    assert location is not None
    head = _send(ctx, "HEAD", location)
    require(
        head.final is not None and not head.final.has("Upload-Offset"),
        "HEAD of the unfinished final upload carries Upload-Offset",
    )
    require(_patch(ctx, url, 0, b"abcd").status == 204, "setup: finishing the partial failed")
    offset = None
    for _ in range(20):
        head = _send(ctx, "HEAD", location)
        offset = head.field("Upload-Offset")
        if offset == "4":
            break
        time.sleep(0.25)
    require(offset == "4", "the final upload did not complete once its partial did")
    return ""


# Policies (tus is silent) --------------------------------------------------------------------


@check(
    "tus.policy.overrun",
    "tus",
    "Core Protocol / Requests / PATCH",
    "POLICY",
    "bytes past Upload-Length are refused and nothing is stored",
    policy="tus does not say how a PATCH past the length is answered; byterange-server answers 413, as tusd",
)
def overrun(ctx: Context) -> str:
    url = _create(ctx, 4)
    exchange = _patch(ctx, url, 0, b"abcdef")
    require(exchange.status is not None and 400 <= exchange.status < 500, "the overrun was accepted")
    require(_offset(ctx, url) == 0, "part of the overrunning PATCH was stored")
    require(exchange.status == 413, "refused, but not with 413")
    return ""


# Every response ------------------------------------------------------------------------------


@check(
    "tus.resumable-on-responses",
    "tus",
    "Core Protocol / Headers / Tus-Resumable",
    "MUST",
    "every response (except to OPTIONS) carries Tus-Resumable",
)
def resumable_everywhere(ctx: Context) -> str:
    url = _create(ctx, 4)
    _send(ctx, "HEAD", url)
    _patch(ctx, url, 9, b"x")  # a 409
    _send(ctx, "HEAD", ctx.url.rstrip("/") + "/" + ctx.unique())  # a 404
    seen: list[Exchange] = ctx.shared.get("tus-responses", [])
    missing = [exchange for exchange in seen if exchange.final and not exchange.final.has("Tus-Resumable")]
    ctx.evidence = [f"{len(seen)} tus responses seen in this run"]
    if missing:
        ctx.evidence += [
            f"without Tus-Resumable: {exchange.method} → {exchange.final.status_line}"  # type: ignore[union-attr]
            for exchange in missing[:8]
        ]
        raise failed(f"{len(missing)} of {len(seen)} responses lack Tus-Resumable")
    raise passed(f"all {len(seen)} responses carry it")
