"""Checks of draft-ietf-httpbis-resumable-upload, run once per interop version.

Every request carries ``Upload-Draft-Interop-Version: N`` and is judged by the drafts of that
interop version (6 = -04/-05, 7 = -06…-08, 8 = -09…-11, 9 = the editor's copy after -12):
where the versions disagree, a check lists only the versions whose text has the rule.
Sections are the drafts' headings (their numbers move between drafts); the first check of
each version finds out whether the server speaks it at all, and if not the rest of that
version is ``not supported``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

from . import probe
from .catalogue import IETF_VERSIONS
from .catalogue import Context
from .catalogue import check
from .catalogue import failed
from .catalogue import not_applicable
from .catalogue import passed
from .catalogue import require
from .catalogue import unsupported
from .probe import Exchange

PARTIAL = "application/partial-upload"
PROBLEM = "https://iana.org/assignments/http-problem-types#"
ALL = IETF_VERSIONS


def _headers(ctx: Context, **fields: str) -> dict[str, str]:
    headers = {"Upload-Draft-Interop-Version": str(ctx.version)}
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    return headers


def _complete(value: bool) -> str:
    return "?1" if value else "?0"


def _create(
    ctx: Context, *, complete: bool = False, body: bytes = b"", length: int | None = None, **fields: str
) -> tuple[Exchange, str]:
    headers = _headers(ctx, Upload_Complete=_complete(complete), **fields)
    if length is not None:
        headers["Upload-Length"] = str(length)
    exchange = ctx.request("POST", ctx.url, headers, body)
    location = exchange.location()
    if location is None:
        for interim in exchange.interim:
            if interim.status == 104 and interim.has("Location"):
                location = ctx.resolve(interim.get("Location") or "")
    if location is None or exchange.status is None or exchange.status >= 300:
        raise failed(
            "setup: creation gave no upload resource "
            f"({exchange.final.status_line if exchange.final else exchange.error})"
        )
    return exchange, location


def _append(
    ctx: Context, url: str, offset: int, data: bytes, *, complete: bool = False, **fields: str
) -> Exchange:
    headers = _headers(
        ctx, Content_Type=PARTIAL, Upload_Offset=str(offset), Upload_Complete=_complete(complete), **fields
    )
    return ctx.request("PATCH", url, headers, data)


def _head(ctx: Context, url: str) -> Exchange:
    return ctx.request("HEAD", url, _headers(ctx))


def _state(exchange: Exchange) -> tuple[int | None, str | None]:
    """(Upload-Offset, Upload-Complete) of a response."""
    if exchange.final is None:
        return None, None
    offset = exchange.final.get("Upload-Offset")
    return (int(offset) if offset and offset.isdigit() else None), exchange.final.get("Upload-Complete")


def _limits(value: str | None) -> dict[str, str]:
    found = {}
    for member in (value or "").split(","):
        key, _, item = member.strip().partition("=")
        if key:
            found[key.strip()] = item.strip()
    return found


def _upload(ctx: Context, data: bytes = b"", length: int | None = None) -> str:
    """A new incomplete upload holding ``data``."""
    _, url = _create(ctx, body=data, length=length)
    return url


# Which versions the server speaks -------------------------------------------------------------


@check(
    "ietf.interop.spoken",
    "ietf",
    "Draft interop",
    "MAY",
    "the server speaks this interop version: creation yields an upload resource",
    versions=ALL,
)
def spoken(ctx: Context) -> str:
    headers = _headers(ctx, Upload_Complete="?0", Upload_Length="8")
    exchange = ctx.request("POST", ctx.url, headers, b"ab")
    location = exchange.location() or next(
        (i.get("Location") for i in exchange.interim if i.status == 104 and i.has("Location")), None
    )
    works = location is not None and exchange.status is not None and exchange.status < 300
    reason = exchange.final.status_line if exchange.final else (exchange.error or "no response")
    ctx.shared[("ietf-spoken", ctx.version)] = (works, f"a creation POST answered {reason}")
    if not works:
        raise unsupported(f"a creation POST answered {reason}")
    return f"interop {ctx.version} spoken"


# Upload creation ----------------------------------------------------------------------------


@check(
    "ietf.creation.location",
    "ietf",
    "Upload Creation / Server Behavior",
    "MUST",
    "a processed Upload-Complete: ?0 creation answers 2xx with Location (and Upload-Limit if limits exist)",
    versions=ALL,
)
def creation_location(ctx: Context) -> str:
    exchange = ctx.request("POST", ctx.url, _headers(ctx, Upload_Complete="?0", Upload_Length="8"), b"abcd")
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    require(exchange.location() is not None, "no Location")
    return ""


@check(
    "ietf.creation.201",
    "ietf",
    "Upload Creation / Server Behavior",
    "SHOULD",
    "an Upload-Complete: ?0 creation answers 201 (RECOMMENDED)",
    versions=ALL,
)
def creation_201(ctx: Context) -> str:
    exchange, _ = _create(ctx, body=b"abcd", length=8)
    require(exchange.status == 201, "not 201")
    return ""


@check(
    "ietf.creation.104",
    "ietf",
    "Upload Creation / Server Behavior",
    "SHOULD",
    "the upload resource is announced early by a 104 (Upload Resumption Supported) with Location",
    versions=ALL,
)
def creation_104(ctx: Context) -> str:
    exchange, _ = _create(ctx, body=b"abcd", length=8)
    found = [i for i in exchange.interim if i.status == 104 and i.has("Location")]
    require(bool(found), "no 104 with Location before the final response")
    return ""


def _creation_104(ctx: Context) -> tuple[Exchange, probe.Response]:
    exchange, _ = _create(ctx, body=b"abcd", length=8)
    found = [i for i in exchange.interim if i.status == 104 and i.has("Location")]
    if not found:
        raise not_applicable("no 104 was sent")
    return exchange, found[0]


@check(
    "ietf.creation.104-same-location",
    "ietf",
    "Upload Creation / Server Behavior",
    "MUST",
    "the 104 and the final response of one request carry an identical Location",
    versions=ALL,
)
def creation_same_location(ctx: Context) -> str:
    exchange, interim = _creation_104(ctx)
    final = exchange.field("Location")
    require(final == interim.get("Location"), f"104 Location {interim.get('Location')!r}, final {final!r}")
    return ""


@check(
    "ietf.creation.104-echoes-version",
    "ietf",
    "Draft interop",
    "MUST",
    "a 104 carries the request's Upload-Draft-Interop-Version",
    versions=ALL,
)
def creation_104_version(ctx: Context) -> str:
    _, interim = _creation_104(ctx)
    require(
        interim.get("Upload-Draft-Interop-Version") == str(ctx.version), "the 104 does not echo the version"
    )
    return ""


@check(
    "ietf.creation.104-limits",
    "ietf",
    "Upload Creation / Server Behavior",
    "MUST",
    "a 104 announcing the upload carries Upload-Limit when limits exist",
    versions=ALL,
)
def creation_104_limits(ctx: Context) -> str:
    exchange, interim = _creation_104(ctx)
    if exchange.final is None or not exchange.final.has("Upload-Limit"):
        raise not_applicable("the final response announces no limits")
    require(interim.has("Upload-Limit"), "limits exist but the 104 lacks Upload-Limit")
    return ""


@check(
    "ietf.creation.no-104-unknown-version",
    "ietf",
    "Draft interop",
    "MUST",
    "no 104 is sent for a request whose interop version is unsupported",
    versions=ALL,
)
def no_104_unknown(ctx: Context) -> str:
    headers = {"Upload-Draft-Interop-Version": "999", "Upload-Complete": "?0", "Upload-Length": "8"}
    exchange = ctx.request("POST", ctx.url, headers, b"abcd")
    require(not any(i.status == 104 for i in exchange.interim), "a 104 answered interop version 999")
    return ""


@check(
    "ietf.creation.complete",
    "ietf",
    "Upload Creation / Server Behavior",
    "MUST",
    "an Upload-Complete: ?1 creation whose content is processed completes the upload",
    versions=ALL,
)
def creation_complete(ctx: Context) -> str:
    exchange = ctx.request("POST", ctx.url, _headers(ctx, Upload_Complete="?1"), b"abcdefgh")
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    location = exchange.location() or next(
        (
            ctx.resolve(i.get("Location") or "")
            for i in exchange.interim
            if i.status == 104 and i.has("Location")
        ),
        None,
    )
    if location is None:
        raise passed("2xx; no upload resource was announced to inspect")
    offset, complete = _state(_head(ctx, location))
    require(complete == "?1", "the upload resource is not complete")
    require(offset == 8, "the offset is not the 8 bytes sent")
    return ""


@check(
    "ietf.creation.records-length",
    "ietf",
    "Upload Creation / Server Behavior",
    "MUST",
    "the length given by Upload-Length at creation is recorded (offset retrieval reports it)",
    versions=ALL,
)
def creation_records_length(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=10)
    exchange = _head(ctx, url)
    require(
        exchange.final is not None and exchange.final.get("Upload-Length") == "10", "Upload-Length is not 10"
    )
    return ""


@check(
    "ietf.length.inconsistent",
    "ietf",
    "State / Length",
    "MUST",
    "Upload-Length and Upload-Complete: ?1 with Content-Length must match: a mismatch is refused",
    versions=ALL,
)
def length_inconsistent(ctx: Context) -> str:
    exchange = ctx.request("POST", ctx.url, _headers(ctx, Upload_Complete="?1", Upload_Length="20"), b"abcd")
    require(
        exchange.status is not None and 400 <= exchange.status < 500, "the inconsistent lengths were accepted"
    )
    body = exchange.final.body if exchange.final else b""
    return "inconsistent-upload-length problem" if b"inconsistent-upload-length" in body else "4xx"


@check(
    "ietf.field.invalid-length-ignored",
    "ietf",
    "State / Length",
    "MUST",
    "an Upload-Length that is not a non-negative sf-integer is ignored (not an error)",
    versions=(8, 9),
)
def invalid_length_ignored(ctx: Context) -> str:
    exchange = ctx.request("POST", ctx.url, _headers(ctx, Upload_Complete="?0", Upload_Length="1.5"), b"ab")
    require(
        exchange.status is not None and exchange.status < 300 and exchange.location() is not None,
        "an invalid Upload-Length was not ignored: creation failed",
    )
    return ""


# Offset retrieval ---------------------------------------------------------------------------


@check(
    "ietf.head.state",
    "ietf",
    "Offset Retrieval / Server Behavior",
    "MUST",
    "HEAD carries Upload-Offset, Upload-Complete and the supplied Upload-Length",
    versions=ALL,
)
def head_state(ctx: Context) -> str:
    url = _upload(ctx, b"abcd", length=8)
    exchange = _head(ctx, url)
    require(exchange.status is not None and 200 <= exchange.status < 300, "HEAD did not succeed")
    offset, complete = _state(exchange)
    require(offset == 4, "Upload-Offset is not 4")
    require(complete == "?0", "Upload-Complete is not ?0")
    require(
        exchange.final is not None and exchange.final.get("Upload-Length") == "8", "Upload-Length is not 8"
    )
    return ""


@check(
    "ietf.head.limit",
    "ietf",
    "Offset Retrieval / Server Behavior",
    "MUST",
    "HEAD indicates the limits in Upload-Limit",
    versions=ALL,
)
def head_limit(ctx: Context) -> str:
    exchange = _head(ctx, _upload(ctx, b"ab", length=8))
    require(exchange.has("Upload-Limit"), "no Upload-Limit")
    return ""


@check(
    "ietf.head.no-store",
    "ietf",
    "Offset Retrieval / Server Behavior",
    "SHOULD",
    "HEAD carries Cache-Control: no-store",
    versions=ALL,
)
def head_no_store(ctx: Context) -> str:
    exchange = _head(ctx, _upload(ctx, b"ab", length=8))
    value = (exchange.field("Cache-Control") or "")
    require("no-store" in value.lower(), "no Cache-Control: no-store")
    return ""


@check(
    "ietf.get.state",
    "ietf",
    "Offset Retrieval / Server Behavior",
    "MUST",
    "a successful GET of the upload carries Upload-Offset, Upload-Complete, Upload-Length, Upload-Limit",
    versions=(9,),
)
def get_state(ctx: Context) -> str:
    url = _upload(ctx, b"abcd", length=8)
    exchange = ctx.request("GET", url, _headers(ctx))
    if exchange.status is None or not 200 <= exchange.status < 300:
        raise not_applicable("GET of an incomplete upload resource is not successful")
    assert exchange.final is not None
    missing = [
        name
        for name in ("Upload-Offset", "Upload-Complete", "Upload-Length", "Upload-Limit")
        if not exchange.final.has(name)
    ]
    require(not missing, f"missing {', '.join(missing)}")
    return ""


@check(
    "ietf.v6.head-delete-fields",
    "ietf",
    "Offset Retrieval; Upload Cancellation (-05)",
    "MUST",
    "HEAD with Upload-Offset/-Complete/-Length and DELETE with Upload-Offset/-Complete get 400",
    versions=(6,),
)
def v6_forbidden_fields(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=8)
    head = ctx.request("HEAD", url, _headers(ctx, Upload_Offset="2", Upload_Complete="?0", Upload_Length="8"))
    delete = ctx.request("DELETE", url, _headers(ctx, Upload_Offset="2", Upload_Complete="?0"))
    require(head.status == 400, "HEAD with upload fields was not refused with 400")
    require(delete.status == 400, "DELETE with upload fields was not refused with 400")
    require(_head(ctx, url).status in (200, 204), "the refused DELETE deleted the upload")
    return ""


# Upload append ------------------------------------------------------------------------------


@check(
    "ietf.append.applied",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "an Upload-Complete: ?0 append at the offset gets 2xx (with Upload-Complete: ?0 from interop 7)",
    versions=ALL,
)
def append_applied(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=8)
    exchange = _append(ctx, url, 2, b"cd")
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    if (ctx.version or 0) >= 7:
        require(_state(exchange)[1] == "?0", "the response lacks Upload-Complete: ?0")
    offset, _ = _state(_head(ctx, url))
    require(offset == 4, "the offset did not advance to 4")
    return ""


@check(
    "ietf.append.409",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "an append at the wrong offset gets 409 with the correct Upload-Offset, and appends nothing",
    versions=ALL,
)
def append_409(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=8)
    exchange = _append(ctx, url, 5, b"cd")
    require(exchange.status == 409, "not 409")
    require(_state(exchange)[0] == 2, "the 409 does not carry the correct Upload-Offset (2)")
    require(_state(_head(ctx, url))[0] == 2, "the upload changed")
    return ""


@check(
    "ietf.append.409-problem",
    "ietf",
    "Problem Types / Mismatching Offset",
    "SHOULD",
    "a mismatching-upload-offset problem carries expected-offset and provided-offset",
    versions=ALL,
)
def append_409_problem(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=8)
    exchange = _append(ctx, url, 5, b"cd")
    try:
        problem = json.loads(exchange.final.body) if exchange.final else {}
    except ValueError:
        problem = {}
    if not isinstance(problem, dict) or problem.get("type") != PROBLEM + "mismatching-upload-offset":
        raise not_applicable("the 409 does not use the mismatching-upload-offset problem type")
    expected, provided = problem.get("expected-offset"), problem.get("provided-offset")
    require(expected == 2 and provided == 5, f"expected-offset={expected!r}, provided-offset={provided!r}")
    return ""


@check(
    "ietf.append.complete",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "an Upload-Complete: ?1 append completes the upload (and says Upload-Complete: ?1 from interop 7)",
    versions=ALL,
)
def append_complete(ctx: Context) -> str:
    url = _upload(ctx, b"abcd", length=8)
    exchange = _append(ctx, url, 4, b"efgh", complete=True)
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    if (ctx.version or 0) >= 7:
        require(_state(exchange)[1] == "?1", "the response lacks Upload-Complete: ?1")
    require(_state(_head(ctx, url)) == (8, "?1"), "HEAD does not show a complete upload of 8 bytes")
    return ""


@check(
    "ietf.append.empty-complete",
    "ietf",
    "Upload Append / Client Behavior",
    "MUST",
    "an empty Upload-Complete: ?1 append completes an upload whose bytes were all sent",
    versions=ALL,
)
def append_empty_complete(ctx: Context) -> str:
    url = _upload(ctx, b"abcd")
    exchange = _append(ctx, url, 4, b"", complete=True)
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    require(_state(_head(ctx, url))[1] == "?1", "the upload is not complete")
    return ""


@check(
    "ietf.append.chunked-complete",
    "ietf",
    "Upload Append; RFC 9112 §7.1",
    "MUST",
    "a completing append with a chunked body (no Content-Length) completes the upload",
    versions=ALL,
)
def append_chunked(ctx: Context) -> str:
    url = _upload(ctx, b"abcd")
    headers = _headers(ctx, Content_Type=PARTIAL, Upload_Offset="4", Upload_Complete="?1")
    exchange = ctx.request("PATCH", url, headers, probe.chunked([b"ef", b"gh"]), is_chunked=True)
    require(exchange.status is not None and 200 <= exchange.status < 300, "not 2xx")
    head = _head(ctx, url)
    require(_state(head) == (8, "?1"), "HEAD does not show a complete upload of 8 bytes")
    require(
        head.final is not None and head.final.get("Upload-Length") == "8", "the length 8 was not recorded"
    )
    return ""


def _completed(ctx: Context) -> str:
    url = _upload(ctx, b"abcd")
    exchange = _append(ctx, url, 4, b"", complete=True)
    require(exchange.status is not None and exchange.status < 300, "setup: completing the upload failed")
    return url


@check(
    "ietf.append.after-complete",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "a non-empty append to a completed upload is refused and modifies nothing",
    versions=ALL,
)
def append_after_complete(ctx: Context) -> str:
    url = _completed(ctx)
    exchange = _append(ctx, url, 4, b"more")
    require(exchange.status is not None and 400 <= exchange.status < 500, "not refused with a 4xx")
    require(_state(_head(ctx, url))[0] == 4, "the upload changed")
    return ""


@check(
    "ietf.append.after-complete-empty",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "an empty append to a completed upload is refused (the server MUST reject it)",
    versions=(6, 7, 8),
)
def append_after_complete_empty(ctx: Context) -> str:
    url = _completed(ctx)
    exchange = _append(ctx, url, 4, b"", complete=True)
    require(exchange.status is not None and 400 <= exchange.status < 500, "not refused with a 4xx")
    return ""


@check(
    "ietf.append.after-complete-replay",
    "ietf",
    "Upload Append / Server Behavior",
    "MAY",
    "an empty completing append to a completed upload may replay the final response",
    versions=(9,),
)
def append_replay(ctx: Context) -> str:
    url = _completed(ctx)
    exchange = _append(ctx, url, 4, b"", complete=True)
    if exchange.status is not None and 400 <= exchange.status < 500:
        raise unsupported("refused rather than replayed (also allowed)")
    require(
        exchange.status is not None and exchange.status < 300 and _state(exchange)[1] == "?1",
        "neither a replay (2xx with Upload-Complete: ?1) nor a refusal",
    )
    return ""


@check(
    "ietf.response.complete-false",
    "ietf",
    "Upload Append / Server Behavior (-06…-09)",
    "MUST",
    "every response to an append that did not complete the upload carries Upload-Complete: ?0",
    versions=(7, 8),
)
def complete_false_everywhere(ctx: Context) -> str:
    # The rule is in the append section ("any response, successful or not"): probed with an
    # append to an upload that does not exist and one to a completed upload.
    missing = _append(ctx, ctx.url.rstrip("/") + "/" + ctx.unique(), 0, b"x")
    url = _completed(ctx)
    after = _append(ctx, url, 4, b"more")
    bad = [
        f"{e.method} → {e.final.status_line} with Upload-Complete {_state(e)[1]!r}"
        for e in (missing, after)
        if e.final is not None and _state(e)[1] != "?0"
    ]
    require(not bad, "; ".join(bad))
    return "interop 8 spans -09…-11; the rule is -09's" if ctx.version == 8 else ""


@check(
    "ietf.length.exceeded",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "content past the known length is refused",
    versions=ALL,
)
def length_exceeded(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=4)
    exchange = _append(ctx, url, 2, b"cdef")
    require(exchange.status is not None and 400 <= exchange.status < 500, "the overrun was accepted")
    offset, _ = _state(_head(ctx, url))
    require(offset is None or offset <= 4, "bytes past the length were stored")
    return ""


@check(
    "ietf.length.exceeded-invalidates",
    "ietf",
    "Upload Append / Server Behavior (-08 on)",
    "MUST",
    "content past the known length marks the upload invalid: further interaction is refused",
    versions=(7, 8, 9),
)
def length_exceeded_invalid(ctx: Context) -> str:
    url = _upload(ctx, b"ab", length=4)
    exchange = _append(ctx, url, 2, b"cdef")
    require(exchange.status is not None and 400 <= exchange.status < 500, "the overrun was accepted")
    later = _append(ctx, url, 2, b"cd", complete=True)
    require(later.status is not None and later.status >= 400, "the upload still accepts appends")
    return "interop 7 spans -06…-08; the rule is -08's"


@check(
    "ietf.append.content-digest",
    "ietf",
    "Integrity Digests / Content Digests",
    "SHOULD",
    "an append whose Content-Digest does not match is not appended",
    versions=ALL,
)
def content_digest(ctx: Context) -> str:
    url = _upload(ctx, b"ab")
    wrong = base64.b64encode(hashlib.sha256(b"zz").digest()).decode()
    exchange = _append(ctx, url, 2, b"cd", Content_Digest=f"sha-256=:{wrong}:")
    offset, _ = _state(_head(ctx, url))
    require(offset == 2, f"the mismatching content was appended ({exchange.status})")
    return f"answered {exchange.status}"


# Interruption and concurrency ---------------------------------------------------------------


def _stalled_append(
    ctx: Context,
    url: str,
    offset: int,
    sent: int,
    total: int,
    complete: bool = False,
    keep_alive: bool = False,
) -> probe.Open:
    headers = _headers(
        ctx, Content_Type=PARTIAL, Upload_Offset=str(offset), Upload_Complete=_complete(complete)
    )
    stalled = ctx.open("PATCH", url, headers, content_length=total, keep_alive=keep_alive)
    stalled.send(b"s" * sent)
    time.sleep(0.5)
    ctx.note(
        f"PATCH {url.rsplit('/', 1)[-1]} Content-Length {total}: {sent} bytes sent, then stalled"
        + (" (keep-alive)" if keep_alive else "")
    )
    return stalled


def _settled_offset(ctx: Context, url: str, seconds: float = 5.0) -> int | None:
    """The offset once an interrupted request had time to end on the server."""
    end = time.monotonic() + seconds
    offset = _state(_head(ctx, url))[0]
    while time.monotonic() < end:
        time.sleep(0.5)
        again = _state(_head(ctx, url))[0]
        if again == offset and again:
            break
        offset = again
    return offset


@check(
    "ietf.interrupted.keeps-prefix",
    "ietf",
    "Upload Append / Server Behavior",
    "SHOULD",
    "an interrupted append keeps as much of its content as possible",
    versions=ALL,
)
def interrupted_prefix(ctx: Context) -> str:
    url = _upload(ctx)
    stalled = _stalled_append(ctx, url, 0, 128 * 1024, 256 * 1024)
    stalled.abort()
    offset = _settled_offset(ctx, url)
    require(offset is not None and offset > 0, "nothing of the interrupted content was kept")
    require(offset <= 128 * 1024, "more was kept than was sent")
    return f"{offset} of {128 * 1024} bytes kept"


@check(
    "ietf.interrupted.not-complete",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "an interrupted Upload-Complete: ?1 append does not complete the upload",
    versions=ALL,
)
def interrupted_not_complete(ctx: Context) -> str:
    url = _upload(ctx)
    stalled = _stalled_append(ctx, url, 0, 64 * 1024, 128 * 1024, complete=True)
    stalled.abort()
    time.sleep(1.0)
    _, complete = _state(_head(ctx, url))
    require(complete == "?0", f"Upload-Complete is {complete!r} after an interrupted completing append")
    return ""


@check(
    "ietf.concurrency.offset-accepted",
    "ietf",
    "Concurrency",
    "MUST",
    "an offset reported while an append is in flight is accepted next (the stale one must not commit later)",
    versions=ALL,
)
def offset_accepted(ctx: Context) -> str:
    url = _upload(ctx)
    stalled = _stalled_append(ctx, url, 0, 0, 64 * 1024)
    return _reported_offset_accepted(ctx, url, stalled)


@check(
    "ietf.concurrency.offset-accepted-creation",
    "ietf",
    "Concurrency",
    "MUST",
    "an offset reported while a creation's content is in flight is accepted by the next append",
    versions=ALL,
)
def offset_accepted_creation(ctx: Context) -> str:
    headers = _headers(ctx, Upload_Complete="?0", Upload_Length=str(64 * 1024))
    stalled = ctx.open("POST", ctx.url, headers, content_length=64 * 1024)
    stalled.poll(2.0)
    ctx.note(
        "POST Content-Length 65536: headers sent, content stalled; interim: "
        + (", ".join(i.status_line for i in stalled.interim) or "none")
    )
    location = next(
        (i.get("Location") for i in stalled.interim if i.status == 104 and i.has("Location")), None
    )
    if location is None:
        stalled.abort()
        raise not_applicable("no 104 announced the upload resource while its creation was in flight")
    return _reported_offset_accepted(ctx, ctx.resolve(location), stalled)


def _reported_offset_accepted(ctx: Context, url: str, stalled: probe.Open) -> str:
    offset, _ = _state(_head(ctx, url))
    require(offset is not None, "HEAD gave no offset")
    assert offset is not None
    stalled.send(b"s" * 1000)
    time.sleep(0.3)
    stalled.abort()
    ctx.note("the stale request then sent 1000 bytes and its connection closed")
    time.sleep(1.5)
    exchange = _append(ctx, url, offset, b"n" * 100)
    require(
        exchange.status is not None and 200 <= exchange.status < 300,
        f"the reported offset {offset} was refused",
    )
    return f"offset {offset} accepted"


def _ends_stale(ctx: Context, method: str, *, connection: bool) -> tuple[probe.Open, Exchange, bool]:
    url = _upload(ctx)
    stalled = _stalled_append(ctx, url, 0, 0, 256 * 1024, keep_alive=True)
    exchange = ctx.request(method, url, _headers(ctx))
    ended = stalled.connection_closed(5.0, answer_counts=not connection)
    answered = f"was answered {stalled.final.status_line}" if stalled.final is not None else "got no answer"
    closed = "its connection closed" if stalled.eof else "its connection was still open 5 s later"
    ctx.note(f"the stale append {answered}; {closed}")
    stalled.abort()
    return stalled, exchange, ended


@check(
    "ietf.concurrency.new-request-ends-stale",
    "ietf",
    "Concurrency",
    "SHOULD",
    "a new HEAD while an append is in flight ends the previous append first (RECOMMENDED)",
    versions=ALL,
)
def new_request_ends_stale(ctx: Context) -> str:
    _, _, ended = _ends_stale(ctx, "HEAD", connection=False)
    require(ended, "the stale append was not ended")
    return ""


# Cancellation -------------------------------------------------------------------------------


@check(
    "ietf.delete.204",
    "ietf",
    "Upload Cancellation / Server Behavior (-04…-08)",
    "MUST",
    "DELETE of an upload resource answers 204",
    versions=(6, 7),
)
def delete_204(ctx: Context) -> str:
    exchange = ctx.request("DELETE", _upload(ctx, b"ab"), _headers(ctx))
    require(exchange.status == 204, "not 204")
    return ""


@check(
    "ietf.delete.deactivates",
    "ietf",
    "Upload Cancellation / Server Behavior",
    "SHOULD",
    "DELETE deactivates the upload: later requests fail",
    versions=ALL,
)
def delete_deactivates(ctx: Context) -> str:
    url = _upload(ctx, b"ab")
    exchange = ctx.request("DELETE", url, _headers(ctx))
    require(exchange.status is not None and 200 <= exchange.status < 300, "DELETE did not succeed")
    head = _head(ctx, url)
    require(head.status is not None and head.status >= 400, "the upload is still there")
    return ""


@check(
    "ietf.delete.ends-inflight",
    "ietf",
    "Upload Cancellation / Server Behavior",
    "SHOULD",
    "DELETE terminates in-flight requests to the upload by closing their connections",
    versions=ALL,
)
def delete_ends_inflight(ctx: Context) -> str:
    _, exchange, ended = _ends_stale(ctx, "DELETE", connection=True)
    require(ended, "the in-flight append's connection stayed open")
    return ""


# 104 during appends; 100-continue ---------------------------------------------------------------


def _progress(ctx: Context) -> list[probe.Response]:
    url = _upload(ctx)
    size = 4 * 1024 * 1024
    headers = _headers(ctx, Content_Type=PARTIAL, Upload_Offset="0", Upload_Complete="?0")
    stream = ctx.open("PATCH", url, headers, content_length=size)
    piece = b"p" * (256 * 1024)
    for _ in range(size // len(piece)):
        stream.send(piece)
        stream.poll(0.05)
    exchange = ctx.record(stream.finish())
    return [i for i in exchange.interim if i.status == 104 and i.has("Upload-Offset")]


@check(
    "ietf.append.progress-104",
    "ietf",
    "Upload Append / Server Behavior (-09 on)",
    "SHOULD",
    "during an append, 104 interim responses report the offset in Upload-Offset",
    versions=(8, 9),
)
def progress_104(ctx: Context) -> str:
    found = _progress(ctx)
    require(bool(found), "no 104 with Upload-Offset during a 4 MiB append")
    return f"{len(found)} progress 104s"


@check(
    "ietf.append.progress-104-optional",
    "ietf",
    "Upload Creation / Server Behavior",
    "MAY",
    "104 interim responses may report the offset in Upload-Offset as progress",
    versions=(6, 7),
)
def progress_104_may(ctx: Context) -> str:
    found = _progress(ctx)
    if not found:
        raise unsupported("no progress 104s")
    return f"{len(found)} progress 104s"


@check(
    "ietf.append.progress-no-location",
    "ietf",
    "Upload Append / Server Behavior",
    "MUST",
    "a 104 sent during an append carries no Location",
    versions=ALL,
)
def progress_no_location(ctx: Context) -> str:
    url = _upload(ctx)
    exchange = _append(ctx, url, 0, b"q" * (1024 * 1024))
    interim = [i for i in exchange.interim if i.status == 104]
    if not interim:
        raise not_applicable("no 104 during the append")
    require(not any(i.has("Location") for i in interim), "a 104 of an append carries Location")
    return ""


@check(
    "ietf.creation.100-continue",
    "ietf",
    "Status Code 104 (-10 on)",
    "MUST",
    "a request with Expect: 100-continue still gets 100 (Continue), 104 or not",
    versions=(8, 9),
)
def continue_100(ctx: Context) -> str:
    headers = _headers(ctx, Upload_Complete="?0", Upload_Length="8", Expect="100-continue")
    stream = ctx.open("POST", ctx.url, headers, content_length=4)
    stream.poll(2.0)
    if stream.final is not None:
        ctx.record(stream.finish())
        raise not_applicable(f"answered {stream.final.status} before the content")
    stream.send(b"abcd")
    exchange = ctx.record(stream.finish())
    require(any(i.status == 100 for i in exchange.interim), "no 100 (Continue)")
    return ""


# Limits and discovery ----------------------------------------------------------------------


@check(
    "ietf.limit.413",
    "ietf",
    "State / Limits",
    "MUST",
    "a 413 caused by the upload limits carries Upload-Limit",
    versions=(8, 9),
)
def limit_413(ctx: Context) -> str:
    exchange = _head(ctx, _upload(ctx, b"ab"))
    limits = _limits(exchange.field("Upload-Limit"))
    if not limits.get("max-size", "").isdigit():
        raise not_applicable("no max-size announced")
    too_big = int(limits["max-size"]) + 1
    exchange = ctx.request("POST", ctx.url, _headers(ctx, Upload_Complete="?0", Upload_Length=str(too_big)))
    if exchange.status != 413:
        raise not_applicable(f"a length over max-size answered {exchange.status}, not 413")
    require(exchange.has("Upload-Limit"), "the 413 lacks Upload-Limit")
    return ""


@check(
    "ietf.options.accept-patch",
    "ietf",
    "State / Limits (-10, -11)",
    "MUST",
    "OPTIONS of a resource that creates uploads lists application/partial-upload in Accept-Patch",
    versions=(8,),
)
def options_accept_patch(ctx: Context) -> str:
    exchange = ctx.request("OPTIONS", ctx.url, _headers(ctx))
    value = (exchange.field("Accept-Patch") or "")
    require(PARTIAL in value, "Accept-Patch lacks application/partial-upload")
    return "interop 8 spans -09…-11; the rule is -10's and -11's"


@check(  # the same probe: a MUST from interop 9, a SHOULD in -09…-11 (interop 8)
    "ietf.options.limit",
    "ietf",
    "State / Limits",
    "MUST",
    "OPTIONS of a resource that creates uploads carries Upload-Limit",
    versions=(9,),
)
@check(
    "ietf.options.limit-should",
    "ietf",
    "State / Limits (-09…-11)",
    "SHOULD",
    "OPTIONS of a resource that creates uploads carries Upload-Limit",
    versions=(8,),
)
def options_limit(ctx: Context) -> str:
    exchange = ctx.request("OPTIONS", ctx.url, _headers(ctx))
    require(exchange.has("Upload-Limit"), "no Upload-Limit")
    return ""
