"""Fuzz targets: every sans-IO decoder and header parser, with valid seeds and invariants.

A target takes a tuple of arguments (each ``str`` or ``bytes``), calls one or more parsers and
checks what it got back. It may let through only the exceptions the parsers document (usually a
4xx :class:`~byterange_server.errors.ByterangeError`); anything else escaping it is a finding,
and so is a failed invariant (:class:`InvariantViolation`).

``covers`` names the public entry points a target exercises (``module:name`` or
``module:Class.method``); :data:`EXEMPT` names the public callables that are not parsers
(printers, constants' helpers) and says why. ``tests/test_fuzz_script.py`` checks that every
public function and method of the scanned modules is in one or the other, so a new parser cannot
be added without a fuzz target.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Callable
from collections.abc import Iterable

from byterange_server import units
from byterange_server.auth import signing
from byterange_server.client import remote
from byterange_server.client.errors import ProtocolError as ClientProtocolError
from byterange_server.errors import ByterangeError
from byterange_server.protocol import binary
from byterange_server.protocol import chunked
from byterange_server.protocol import cors
from byterange_server.protocol import digests
from byterange_server.protocol import ietf
from byterange_server.protocol import media
from byterange_server.protocol import message
from byterange_server.protocol import multipart
from byterange_server.protocol import numbers
from byterange_server.protocol import params
from byterange_server.protocol import parts
from byterange_server.protocol import ranges
from byterange_server.protocol import raw
from byterange_server.protocol import tus
from byterange_server.protocol import validators
from byterange_server.protocol.events import NEED_DATA
from byterange_server.protocol.events import EndOfPatch
from byterange_server.protocol.events import PartData
from byterange_server.protocol.events import PartEnd
from byterange_server.protocol.events import PartStart
from byterange_server.runtime import forwarded

Args = tuple  # of str / bytes


class InvariantViolation(AssertionError):
    """A parser returned without error but broke a promise (round trip, contract, split)."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise InvariantViolation(message)


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    run: Callable[..., None]
    seeds: tuple[Args, ...]
    covers: tuple[str, ...]
    #: Exceptions the parsers document; a ByterangeError must also be a 4xx.
    allowed: tuple[type[BaseException], ...] = (ByterangeError,)


TARGETS: dict[str, Target] = {}


def target(
    name: str,
    seeds: Iterable[Args | str | bytes],
    covers: Iterable[str],
    allowed: tuple[type[BaseException], ...] = (ByterangeError,),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(func: Callable[..., None]) -> Callable[..., None]:
        normalized = tuple(seed if isinstance(seed, tuple) else (seed,) for seed in seeds)
        TARGETS[name] = Target(name, func, normalized, tuple(covers), allowed)
        return func

    return register


P = "byterange_server.protocol"
T = "byterange_server.protocol.tus"
I = "byterange_server.protocol.ietf"  # noqa: E741


def _header_safe(value: str) -> bool:
    """What may go into a response header: latin-1, no CR / LF / NUL."""
    return all(c <= "\xff" and c not in "\r\n\x00" for c in value)


# -- streaming decoders -----------------------------------------------------------------------


def _decode(make: Callable[[], object], chunks: list[bytes]) -> tuple[object, ...]:
    """Drive a decoder over ``chunks`` then end of input; check the event contract.

    Returns what must not depend on the split: parts (fields, joined data), which ended, whether
    EndOfPatch came, and the error type.
    """
    decoder = make()
    decoded: list[list[object]] = []
    open_part = False
    error: type[BaseException] | None = None
    complete = False

    def drain() -> bool:
        nonlocal open_part, error, complete
        while True:
            try:
                event = decoder.next_event()  # type: ignore[attr-defined]
            except ByterangeError as exc:
                check(400 <= exc.status < 500, f"decoder raised a {exc.status}: {exc!r}")
                error = type(exc)
                try:
                    decoder.next_event()  # type: ignore[attr-defined]
                except ByterangeError as again:
                    check(type(again) is type(exc), "decoder changed its error")
                else:
                    raise InvariantViolation("decoder left its error state") from None
                return True
            if event is NEED_DATA:
                return False
            kind = type(event)
            if kind is PartStart:
                check(not open_part, "PartStart inside a part")
                fields = event.header.fields
                check(not fields or event.header == parts.PartHeader.from_fields(fields), "header misread")
                for field_name, value in event.header.fields:
                    check(field_name == field_name.lower(), "field name not lower-cased")
                    check(value == value.strip(" \t"), "field value not OWS-stripped")
                decoded.append([event.header.fields, [], False])
                open_part = True
            elif kind is PartData:
                check(open_part, "PartData outside a part")
                check(type(event.data) is memoryview and len(event.data) > 0, "bad PartData")
                decoded[-1][1].append(bytes(event.data))  # type: ignore[union-attr]
            elif kind is PartEnd:
                check(open_part, "PartEnd outside a part")
                decoded[-1][2] = True
                open_part = False
            else:
                check(kind is EndOfPatch, f"unknown event {event!r}")
                check(not open_part and decoded, "EndOfPatch inside a part or with no part")
                check(type(decoder.next_event()) is EndOfPatch, "EndOfPatch not repeated")  # type: ignore[attr-defined]
                complete = True
                return True

    done = False
    for chunk in chunks:
        if chunk:
            decoder.receive_data(chunk)  # type: ignore[attr-defined]
            if drain():
                done = True
                break
    if not done:
        decoder.receive_data(b"")  # type: ignore[attr-defined]
        check(drain(), "decoder asked for data after the end of input")
    frozen = tuple((fields, b"".join(data), ended) for fields, data, ended in decoded)  # type: ignore[arg-type]
    return frozen, complete, error


def _three_ways(make: Callable[[], object], data: bytes) -> None:
    """Whole, byte by byte and in random splits: one outcome (h11's t_body_reader idea)."""
    expected = _decode(make, [data])
    if len(data) <= 4096:
        check(
            _decode(make, [data[i : i + 1] for i in range(len(data))]) == expected,
            "byte-by-byte decoding differs from whole",
        )
    rnd = random.Random(zlib.crc32(data))
    for _ in range(2):
        cuts = sorted({rnd.randint(1, max(1, len(data) - 1)) for _ in range(rnd.randint(1, 8))})
        bounds = [0, *[c for c in cuts if 0 < c < len(data)], len(data)]
        chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        check(_decode(make, chunks) == expected, f"decoding split at {cuts} differs from whole")


def _limit(data: bytes) -> int:
    """A per-input header cap (the default, or a tiny one to reach the limit paths)."""
    return (8192, 64, 9)[zlib.crc32(data) % 3]


MESSAGE_SEEDS = (
    b"Content-Range: bytes 2-5/12\r\n\r\nwxyz",
    b"Content-Offset: 600;complete-length=1000\r\nContent-Type: text/plain\r\n\r\nhello",
    b"Content-Range: bytes */12\r\n\r\n",
    b"\r\nabc",
    b"A: 1\r\nB:\t2 \r\n\r\n\r\n--x\r\n",
)


@target(
    "message/byterange",
    MESSAGE_SEEDS,
    [
        "byterange_server.protocol.message:MessageDecoder",
        "byterange_server.protocol.message:parse_field_line",
    ],
)
def fuzz_message(data: bytes) -> None:
    _three_ways(lambda: message.MessageDecoder(max_header_bytes=_limit(data)), data)


MULTIPART_SEEDS = (
    (
        b"--SEP\r\nContent-Range: bytes 0-3/8\r\n\r\nabcd\r\n--SEP\r\nContent-Range: bytes 4-7/8\r\n\r\n"
        b"efgh\r\n--SEP--\r\n",
        "SEP",
    ),
    (b"preamble\r\n--a b\r\nContent-Offset: 3\r\n\r\n\r\n--a b--", "a b"),
    (b"--q\r\n\r\n\r\n--q  \t\r\nX: y\r\n\r\n--q--epilogue", "q"),
    (b"--" + b"7" * 70 + b"\r\nContent-Range: bytes 0-0/1\r\n\r\nZ\r\n--" + b"7" * 70 + b"--", "7" * 70),
)


@target(
    "multipart/byteranges",
    MULTIPART_SEEDS,
    [
        "byterange_server.protocol.multipart:MultipartDecoder",
        "byterange_server.protocol.multipart:validate_boundary",
    ],
)
def fuzz_multipart(data: bytes, boundary: str) -> None:
    try:
        multipart.validate_boundary(boundary)
    except ByterangeError:
        boundary = "SEP"
    limit = _limit(data)
    _three_ways(lambda: multipart.MultipartDecoder(boundary, max_header_bytes=limit, max_parts=5), data)


BINARY_SEEDS = (
    binary.encode_known_length({"Content-Range": "bytes 0-3/8"}, b"abcd")
    + binary.encode_known_length({"Content-Range": "bytes 4-7/8"}, b"efgh"),
    binary.encode_indeterminate_head({"Content-Offset": "4"})
    + binary.encode_indeterminate_chunk(b"ab")
    + binary.encode_indeterminate_chunk(b"cd")
    + binary.encode_indeterminate_end(),
    binary.encode_known_length({}, b""),
    bytes([0x40, 0x08, 0x80, 0, 0, 0]) + b"\x00",  # non-minimal varints
)


@target(
    "application/byteranges",
    BINARY_SEEDS,
    [
        "byterange_server.protocol.binary:BinaryDecoder",
        "byterange_server.protocol.binary:decode_varint",
    ],
)
def fuzz_binary(data: bytes) -> None:
    _three_ways(lambda: binary.BinaryDecoder(max_header_bytes=_limit(data), max_parts=5), data)
    for pos in range(min(len(data), 16)):
        decoded = binary.decode_varint(data, pos)
        if decoded is not None:
            value, end = decoded
            check(0 <= value <= binary.MAX_VARINT and pos < end <= len(data), "bad varint decode")


@target(
    "raw PUT body",
    [(b"0123", "bytes 0-3/4", "4"), (b"", "bytes */10", "0"), (b"xy", "bytes 5-6/*", "")],
    [
        "byterange_server.protocol.raw:RawDecoder",
        f"{P}.parts:PartHeader.from_request_headers",
        f"{P}.parts:PartHeader.from_range",
        f"{P}.parts:PartHeader.whole",
    ],
)
def fuzz_raw(data: bytes, content_range: str, content_length: str) -> None:
    # Content-Length as the HTTP layer parsed it (Werkzeug: digits only, else no length).
    length = _opt_int(content_length)
    if length is not None:
        # A PUT without Content-Range writes the whole representation.
        whole = parts.PartHeader.whole(length)
        check(whole.expected_size() == length == whole.length, "a whole PUT misread")
    # What a WSGI server hands over: the field value without surrounding OWS.
    header = parts.PartHeader.from_request_headers(content_range.strip(" \t"), length)
    size = header.expected_size()
    check(size is not None and size >= 0, "a partial PUT must have a known size")
    typed = parts.PartHeader.from_range(ranges.ContentRange.parse(content_range.strip(" \t")), length)
    check((typed.start, typed.stop, typed.length) == (header.start, header.stop, header.length),
          "the typed part differs from the parsed one")
    _three_ways(lambda: raw.RawDecoder(header), data)


CHUNKED_SEEDS = (
    b'5\r\nhello\r\n6;ext=1;q="a b"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT',
    b"000A\r\n0123456789\r\n00\r\n\r\n",
    b"3\r\nabc\r\n0x5\r\nabcde\r\n",
    b"2\r\nab\r\n0\r\nbad\rtrailer\r\n\r\n",
)


@target("chunked body", CHUNKED_SEEDS, ["byterange_server.protocol.chunked:ChunkedDecoder.feed"], allowed=())
def fuzz_chunked(data: bytes) -> None:
    limit = _limit(data)

    def decode(chunks: list[bytes]) -> tuple[object, ...]:
        decoder = chunked.ChunkedDecoder(max_line=limit, max_trailer=limit)
        out = b"".join(decoder.feed(chunk) for chunk in chunks)
        check(not (decoder.done and decoder.error), "done and failed at once")
        check(decoder.done or not (decoder.trailers or decoder.rest), "trailers or rest before the end")
        return out, type(decoder.error), decoder.done, decoder.trailers, decoder.rest

    expected = decode([data])
    check(len(expected[0]) <= len(data), "more data out than in")
    if len(data) <= 4096:
        check(decode([data[i : i + 1] for i in range(len(data))]) == expected, "byte by byte differs")
    rnd = random.Random(zlib.crc32(data))
    cuts = sorted({rnd.randint(1, max(1, len(data) - 1)) for _ in range(rnd.randint(1, 8))})
    bounds = [0, *[c for c in cuts if 0 < c < len(data)], len(data)]
    check(decode([data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]) == expected,
          f"split at {cuts} differs")


@target(
    "Content-Type → decoder",
    [
        "message/byterange",
        "multipart/byteranges; boundary=SEP",
        'multipart/byteranges;boundary="a b"',
        "application/byteranges",
        "application/offset+octet-stream",
        'text/plain; charset=utf-8; a="\\""',
        "application/partial-upload",
    ],
    ["byterange_server.protocol.media:parse_media_type", "byterange_server.protocol.media:decoder_for"],
)
def fuzz_media(value: str) -> None:
    media_type, params = media.parse_media_type(value)
    check(media_type == media_type.lower() and "/" in media_type, "media type not normalized")
    try:
        decoder = media.decoder_for(value)
    except ByterangeError as exc:
        check(400 <= exc.status < 500, f"decoder_for raised a {exc.status}")
        return
    check(media_type in media.PATCH_MEDIA_TYPES, f"a decoder for {media_type}")
    decoder.receive_data(b"")
    try:
        decoder.next_event()
    except ByterangeError:
        pass


# -- header fields ------------------------------------------------------------------------------


@target(
    "numbers",
    ["0", "123456789012345", "00042", "?1", "42;a=b", "-5"],
    [
        f"{P}.numbers:parse_int",
        f"{P}.numbers:check_int",
        f"{P}.numbers:parse_sf_integer",
        f"{P}.numbers:parse_sf_boolean",
    ],
)
def fuzz_numbers(value: str) -> None:
    for parse in (numbers.parse_int, numbers.parse_sf_integer):
        try:
            n = parse(value)
        except ByterangeError:
            continue
        check(type(n) is int and 0 <= n < 10**15, f"{parse.__name__} returned {n!r}")
    if value.isascii() and value.isdigit() and len(value) <= 40:
        # The number as the HTTP layer would have parsed it: the same 15-digit limit.
        n = int(value)
        try:
            numbers.check_int(n)
        except ByterangeError:
            check(n >= 10**15, f"check_int refused {n}")
        else:
            check(n < 10**15, f"check_int let {n} through")
    try:
        flag = numbers.parse_sf_boolean(value)
    except ByterangeError:
        return
    check(type(flag) is bool, "parse_sf_boolean returned a non-bool")


@target(
    "Content-Range",
    ["bytes 2-5/12", "bytes 0-11/*", "bytes */1000", "BYTES 0-0/1", "items 1-2/3"],
    [
        f"{P}.ranges:ContentRange.parse",
    ],
)
def fuzz_content_range(value: str) -> None:
    parsed = ranges.ContentRange.parse(value)
    check(ranges.ContentRange.parse(parsed.format()) == parsed, "Content-Range round trip")


@target(
    "Content-Offset",
    ["600", "600;complete-length=1000", "0;unit=bytes", "5;unit=items", "7;x=?1"],
    [
        f"{P}.ranges:ContentOffset.parse",
    ],
)
def fuzz_content_offset(value: str) -> None:
    parsed = ranges.ContentOffset.parse(value)
    check(ranges.ContentOffset.parse(parsed.format()) == parsed, "Content-Offset round trip")


@target(
    "part fields",
    [
        "Content-Range: bytes 2-5/12\nContent-Length: 4",
        "Content-Offset: 600\nContent-Length: 5",
        "Content-Offset: 600;complete-length=1000\nContent-Type: text/plain",
        "Content-Range: bytes */12\nContent-Length: 0",
    ],
    [
        f"{P}.parts:PartHeader.from_fields",
        f"{P}.parts:PartHeader.get_all",
        f"{P}.parts:PartHeader.expected_size",
    ],
)
def fuzz_part_fields(block: str) -> None:
    fields = []
    for line in block.split("\n"):
        name, _, value = line.partition(":")
        fields.append((name.strip().lower(), value.strip(" \t")))
    header = parts.PartHeader.from_fields(tuple(fields))
    size = header.expected_size()
    check(size is None or size >= 0, "negative expected size")
    header.get_all("content-type")


@target(
    "Range",
    [
        "bytes=0-99,200-,-500",
        "bytes=0-0",
        "bytes=-0",
        "Bytes=1-2,,3-4",
        "items=1-2",
        "bytes=" + ",".join(f"{i}-{i + 5}" for i in range(0, 600, 3)),
    ],
    [
        f"{P}.ranges:parse_range",
        f"{P}.ranges:resolve_ranges",
        f"{P}.ranges:should_reject_ranges",
    ],
    allowed=(),
)
def fuzz_range(value: str) -> None:
    specs = ranges.parse_range(value)
    if specs is None:
        return
    check(specs, "parse_range returned an empty list")
    check(ranges.parse_range(ranges.format_range(specs)) == specs, "Range round trip")
    for size in (0, 1, 10, 1000, 2**40):
        resolved = ranges.resolve_ranges(specs, size)
        check(all(0 <= a < b <= size for a, b in resolved), f"resolved range outside 0..{size}")
        ranges.should_reject_ranges(resolved)


@target(
    "Committed-Ranges",
    ["bytes=0-1048575,3145728-4194303", "none", "NONE", "bytes=5-5", "bits=1-2"],
    [
        f"{P}.ranges:parse_committed_ranges",
    ],
)
def fuzz_committed_ranges(value: str) -> None:
    extents = ranges.parse_committed_ranges(value)
    check(all(0 <= a < b for a, b in extents), "empty extent")
    check(ranges.parse_committed_ranges(ranges.format_ranges(extents)) == extents, "round trip")


@target(
    "Link",
    [
        '</files/x/committed-ranges>; rel="committed-ranges"',
        '<a>;rel=next, <b>; rel="x y";t="\\""',
        "<>",
        ", <a>",
    ],
    [f"{P}.params:parse_links", f"{P}.params:find_link"],
)
def fuzz_links(value: str) -> None:
    links = params.parse_links(value)
    for link_target, link_params in links:
        check(isinstance(link_target, str) and isinstance(link_params, dict), "bad link")
    params.find_link(value, "committed-ranges")
    params.find_link(value, "next")


@target(
    "entity tags",
    ['"abc"', 'W/"x", "y"', "*", '"a,b", W/""', '"\x80\xff"'],
    [
        f"{P}.validators:parse_etag_list",
        f"{P}.validators:ETag.parse",
        f"{P}.validators:strong_match",
        f"{P}.validators:weak_match",
    ],
)
def fuzz_etags(value: str) -> None:
    for field_name in ("If-Match", "If-None-Match"):
        tags = validators.parse_etag_list(value, field=field_name)
        if tags == "*":
            continue
        for tag in tags:
            check(validators.ETag.parse(tag.format()) == tag, "ETag round trip")
            check(validators.weak_match(tag, tag) and validators.strong_match(tag, tag) != tag.weak, "match")
    try:
        validators.ETag.parse(value)
    except ByterangeError:
        pass


@target(
    "If-Range",
    [
        '"abc"',
        'W/"abc"',
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Mon, 31 Feb 2021 25:61:61 GMT",
    ],
    [f"{P}.validators:parse_if_range"],
    allowed=(),
)
def fuzz_if_range(value: str) -> None:
    result = validators.parse_if_range(value)
    check(
        result is validators.IGNORE_RANGE or isinstance(result, validators.ETag) or result.tzinfo is not None,
        "If-Range gave a naive date",
    )
    if not isinstance(result, (validators.ETag, validators.IfRange)):
        again = validators.parse_if_range(validators.format_http_date(result))
        check(again == result, "HTTP-date round trip")


@target(
    "Prefer",
    [
        "transaction=atomic",
        'respond-async, wait=10;a="b", return=minimal',
        "Transaction=ATOMIC",
        "a=",
        'x=""',
    ],
    [f"{P}.params:parse_prefer", f"{P}.params:transaction_preference"],
)
def fuzz_prefer(value: str) -> None:
    parsed = params.parse_prefer(value)
    check(all(name == name.lower() for name in parsed), "preference name not lower-cased")
    check(params.transaction_preference(parsed) in ("persist", "atomic"), "bad transaction")
    params.parse_prefer([value, value])


DIGEST_SEEDS = (
    "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
    "sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:, "
    "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:;p=1",
    "md5=:AAAA:, unixsum=:AA==:",
)


@target("digest fields", DIGEST_SEEDS, [f"{P}.digests:parse_digest_field", f"{P}.digests:pick_digest"])
def fuzz_digest(value: str) -> None:
    parsed = digests.parse_digest_field(value, field="Repr-Digest")
    picked = digests.pick_digest(parsed)
    if picked is not None:
        again = digests.parse_digest_field(digests.format_digest(*picked))
        check(again == {picked[0]: picked[1]}, "digest round trip")


@target(
    "Content-Disposition",
    [
        'attachment; filename="report.pdf"',
        "inline; filename*=UTF-8''%E2%82%AC%20rates.txt; filename=x",
        'attachment; filename="a\\"b"',
        "attachment; filename*=iso-8859-1'en'%A3",
        "form-data",
        'attachment; filename="\xc3\xa9t\xc3\xa9.txt"',
    ],
    [f"{P}.params:parse_content_disposition_filename"],
)
def fuzz_content_disposition(value: str) -> None:
    filename = params.parse_content_disposition_filename(value)
    if filename is None:
        return
    again = params.parse_content_disposition_filename(params.format_content_disposition(filename))
    check(again == filename, f"Content-Disposition round trip: {filename!r} -> {again!r}")


# -- tus ----------------------------------------------------------------------------------------


@target(
    "tus fields",
    [("1.0.0", "1", "partial"), (" 1.0.0\t", "1", "final;/files/a /files/b"), ("0.2.2", "0", "final;")],
    [
        f"{T}:check_tus_resumable",
        f"{T}:parse_defer_length",
        f"{T}:parse_upload_concat",
    ],
)
def fuzz_tus_fields(version: str, defer: str, concat: str) -> None:
    for call in (lambda: tus.check_tus_resumable(version), lambda: tus.parse_defer_length(defer)):
        try:
            call()
        except ByterangeError as exc:
            check(400 <= exc.status < 500, f"a {exc.status}")
    parsed = tus.parse_upload_concat(concat)
    check(tus.parse_upload_concat(tus.format_upload_concat(parsed)) == parsed, "Upload-Concat round trip")


@target(
    "Upload-Metadata",
    ["filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", "k ", "", "a YQ==, b YmM=,c YmNk"],
    [f"{T}:parse_upload_metadata"],
)
def fuzz_upload_metadata(value: str) -> None:
    pairs = tus.parse_upload_metadata(value)
    check(tus.parse_upload_metadata(tus.format_metadata(pairs)) == pairs, "Upload-Metadata round trip")


@target(
    "Upload-Checksum",
    [
        "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
        "md5 1B2M2Y8AsgTpgAmY7PhCfg==",
        "crc32 AAAAAA==",
        "sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ],
    [f"{T}:parse_upload_checksum"],
)
def fuzz_upload_checksum(value: str) -> None:
    algorithm, digest = tus.parse_upload_checksum(value)
    check(algorithm in digests.CHECKSUM_ALGORITHMS and len(digest) >= 16, "bad checksum")


# -- IETF resumable uploads -----------------------------------------------------------------------


@target(
    "IETF fields",
    [("8", "?1", "42"), ("6", "?0", "0"), ("9;x", "?1;a=1", "123456789012345")],
    [
        f"{I}:parse_interop_version",
        f"{I}:parse_upload_complete",
        f"{I}:parse_upload_number",
    ],
)
def fuzz_ietf_fields(version: str, complete: str, number: str) -> None:
    check(ietf.parse_interop_version(version) in (None, *ietf.INTEROP_VERSIONS), "unknown version")
    try:
        ietf.parse_upload_complete(complete)
    except ByterangeError as exc:
        check(400 <= exc.status < 500, f"a {exc.status}")
    n = ietf.parse_upload_number(number, field="Upload-Offset")
    check(type(n) is int and n >= 0, "negative Upload-Offset")


@target(
    "Upload-Limit",
    ["max-size=1000000, min-size=1, max-age=3600", "expires=5, foo=?1", "max-size=-1"],
    [f"{I}:parse_upload_limit"],
)
def fuzz_upload_limit(value: str) -> None:
    limit = ietf.parse_upload_limit(value)
    formatted = limit.format(8)
    if formatted:
        check(ietf.parse_upload_limit(formatted) == limit, "Upload-Limit round trip")


@target("Want-Digest", ["sha-256=10, sha-512=3", "md5=0", "sha-256=11"], [f"{P}.digests:parse_want_digest"])
def fuzz_want_digest(value: str) -> None:
    weights = digests.parse_want_digest(value, field="Want-Content-Digest")
    check(all(0 <= w <= 10 for w in weights.values()), "weight out of range")


def _opt_int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


@target(
    "IETF length resolution",
    [("0", "1", "10", "10", ""), ("5", "0", "3", "", "100"), ("5", "1", "3", "7", "8")],
    [f"{I}:resolve_length"],
)
def fuzz_resolve_length(
    offset: str, complete: str, content_length: str, upload_length: str, known: str
) -> None:
    result = ietf.resolve_length(
        offset=_opt_int(offset) or 0,
        complete=complete == "1",
        content_length=_opt_int(content_length),
        upload_length=_opt_int(upload_length),
        known_length=_opt_int(known),
    )
    check(result is None or result >= 0, "negative length")


# -- CORS, Forwarded, signed URLs, sizes --------------------------------------------------------

_POLICIES = (
    cors.CorsPolicy(origins=("https://app.example", "http://localhost:5173")),
    cors.CorsPolicy(origins=("*",)),
    cors.CorsPolicy(origins=("https://app.example",), allow_credentials=True),
)


@target(
    "CORS request headers",
    [
        ("https://app.example", "PATCH", "content-type,tus-resumable,upload-offset"),
        ("http://localhost:5173", "POST", "Upload-Complete, Upload-Draft-Interop-Version"),
        ("null", "PUT", ""),
        ("https://evil.example", "DELETE", "x-custom"),
    ],
    [
        "byterange_server.protocol.cors:CorsPolicy.preflight",
        "byterange_server.protocol.cors:CorsPolicy.actual",
        "byterange_server.protocol.cors:CorsPolicy.is_preflight",
        "byterange_server.protocol.cors:merge_vary",
    ],
    allowed=(),
)
def fuzz_cors(origin: str, method: str, asked: str) -> None:
    for policy in _POLICIES:
        policy.is_preflight("OPTIONS", origin, method)
        for granted in (policy.preflight(origin, method, asked), policy.actual(origin)):
            for name, value in (granted or {}).items():
                check(_header_safe(value), f"CORS would send an unsafe {name}: {value!r}")
            allow_origin = (granted or {}).get("Access-Control-Allow-Origin")
            if allow_origin is not None:
                check(
                    allow_origin == "*" or allow_origin in policy.origins, f"CORS allowed {allow_origin!r}"
                )
    vary = cors.merge_vary(asked, [origin, "Origin"])
    check(vary.lower().count("origin") >= 1, "merge_vary lost Origin")


@target(
    "CORS origin setting",
    ["https://app.example, http://localhost:5173", "*", "https://a.example b"],
    ["byterange_server.protocol.cors:CorsPolicy.from_setting"],
    allowed=(ValueError,),
)
def fuzz_cors_setting(value: str) -> None:
    cors.CorsPolicy.from_setting(value)


@target(
    "Forwarded",
    [
        'for=192.0.2.60;proto=https;host="up.example", for=10.0.0.1',
        'for="[2001:db8::1]:4711";proto=http',
        "for=unknown, for=_hidden;host=a.example:8080",
    ],
    [
        "byterange_server.runtime.forwarded:parse_forwarded",
        "byterange_server.runtime.forwarded:ForwardedMiddleware",
    ],
)
def fuzz_forwarded(value: str) -> None:
    elements = forwarded.parse_forwarded([value, value])
    check(all(element for element in elements), "empty Forwarded element")
    seen: dict[str, object] = {}

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        seen.update(environ)
        return []

    for hops in (1, 2):
        environ = {
            "HTTP_FORWARDED": value,
            "wsgi.url_scheme": "http",
            "HTTP_HOST": "server",
            "REMOTE_ADDR": "::1",
        }
        forwarded.ForwardedMiddleware(app, hops)(environ, None)
        check(seen["wsgi.url_scheme"] in ("http", "https"), "Forwarded set a strange scheme")
        check(
            _header_safe(str(seen["HTTP_HOST"])) and " " not in str(seen["HTTP_HOST"]),
            "Forwarded host unsafe",
        )


_SECRET = b"0123456789abcdef0123456789abcdef"
_SIGNED = signing.sign(
    signing.Grant("k1", frozenset({"PATCH", "HEAD"}), "/files/abc", 2_000_000_000, 10**9), _SECRET
)


@target(
    "signed-URL query",
    [
        tuple(_SIGNED[name] for name in signing.PARAMS) + ("PATCH", "/files/abc"),
        tuple(_SIGNED[name] for name in signing.PARAMS) + ("GET", "/files/other"),
    ],
    ["byterange_server.auth.signing:verify"],
)
def fuzz_signing(
    key: str, methods: str, expires: str, max_size: str, nonce: str, sig: str, method: str, path: str
) -> None:
    # What Werkzeug hands the caller: request.path and request.args are valid Unicode (it
    # decodes UTF-8 with "replace"), and request.path always starts with "/".
    key, methods, expires, max_size, nonce, sig, method, path = (
        value.encode("utf-8", "replace").decode("utf-8")
        for value in (key, methods, expires, max_size, nonce, sig, method, path)
    )
    query = dict(zip(signing.PARAMS, (key, methods, expires, max_size, nonce, sig), strict=True))
    path = "/" + path.lstrip("/")
    grant = signing.verify(query, method=method, path=path, keys={"k1": _SECRET}, now=1_900_000_000)
    check(signing.sign(grant, _SECRET) == query, "a query that is not canonical verified")


@target(
    "sizes",
    ["8MiB", "10GB", "1536 kib", "0", "12x"],
    ["byterange_server.units:parse_size"],
    allowed=(ValueError,),
)
def fuzz_sizes(value: str) -> None:
    check(units.parse_size(value) >= 0, "negative size")


# -- the client's reading of responses ----------------------------------------------------------

_STATE_FIELDS = (
    "Upload-Length",
    "Upload-Offset",
    "Upload-Complete",
    "Committed-Ranges",
    "Link",
    "ETag",
    "Repr-Digest",
    "Content-Length",
)


@target(
    "client: response state",
    [
        (
            "10000",
            "600",
            "?0",
            "bytes=0-599,4000-4999",
            '</files/x/committed-ranges>; rel="committed-ranges"',
            '"abc"',
            DIGEST_SEEDS[0],
            "0",
            "max-size=1099511627776, max-parts=10000",
        ),
        ("", "", "?1", "none", "", 'W/"x"', "", "12", "max-parts=?1, a=(1 2)"),
    ],
    [
        "byterange_server.client.remote:RemoteState.from_headers",
        "byterange_server.client.remote:parse_limits",
    ],
    allowed=(ClientProtocolError,),
)
def fuzz_client_state(*values: str) -> None:
    """What a (hostile) server's response does to the client: a ProtocolError at worst."""
    fields = {name: value for name, value in zip(_STATE_FIELDS, values[:-1], strict=True) if value}
    limits = remote.parse_limits(values[-1])
    check(all(type(v) is int for v in limits.values()), "a limit that is not an int")
    state = remote.RemoteState.from_headers("http://127.0.0.1/files/x", 200, fields, head=True)
    check(state.committed is None or all(a < b for a, b in state.committed), "empty committed extent")


# -- what is not a parser ----------------------------------------------------------------------

#: Public callables of the scanned modules that parse nothing a client sends, and why.
EXEMPT: dict[str, str] = {
    "byterange_server.protocol.media:Decoder": "typing Protocol, no code",
    "byterange_server.protocol.multipart:make_boundary": "random boundary for the encoder",
    "byterange_server.protocol.multipart:MultipartEncoder": "encoder",
    f"{P}.ranges:ContentRange.unsatisfied": "constructor of a printer",
    "byterange_server.protocol.ietf:UploadLimit": "value object (printed, parsed by parse_upload_limit)",
    "byterange_server.protocol.ietf:rules_for": "lookup by a version parse_interop_version already parsed",
    "byterange_server.auth.signing:Grant": "value object built by the backend or by verify",
    "byterange_server.auth.signing:Grant.allows": "membership test on a verified grant",
    "byterange_server.auth.signing:Grant.canonical": "printer of a verified grant",
    "byterange_server.auth.signing:sign": "printer (the backend's side)",
    "byterange_server.auth.signing:new_nonce": "random nonce for the printer",
    "byterange_server.auth.signing:signed_url": "printer (the backend's side)",
    "byterange_server.protocol.cors:CorsPolicy": "built from settings (see CorsPolicy.from_setting)",
}
#: Name prefixes of printers: they take our own typed values, not client input.
PRINTER_PREFIXES = ("format", "encode", "ser")

#: The modules scanned for parsers (every module of protocol/ is added by the test).
SCANNED_MODULES = (
    "byterange_server.client.remote",
    "byterange_server.protocol.cors",
    "byterange_server.runtime.forwarded",
    "byterange_server.auth.signing",
    "byterange_server.units",
)
