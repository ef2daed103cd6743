"""Strict parsers and printers for the IETF Resumable Uploads header fields (sans-IO).

draft-ietf-httpbis-resumable-upload, interop versions 6 (drafts -04/-05), 7 (-06…-08), 8
(-09…-11) and 9 (the editor's copy after -12; docs/spec-notes.md#versions). Where the versions
disagree, :data:`RULES` holds each version's rules in one place. Every field is a Structured
Field (RFC 9651)::

    Upload-Draft-Interop-Version = sf-integer
    Upload-Complete              = sf-boolean
    Upload-Offset, Upload-Length = sf-integer, >= 0
    Upload-Limit                 = sf-dictionary of sf-integer >= 0; keys max-size, min-size,
                                   max-append-size, min-append-size, max-age (and, up to
                                   interop 6, expires); unknown keys are ignored

(``Want-Repr-Digest``, which the draft's clients send, is an RFC 9530 field: :mod:`.digests`.)
As in the other field modules (:mod:`._abnf`), a parser returns a typed value or raises a 4xx
:class:`~byterange_server.errors.MalformedHeaderError`; only :func:`parse_interop_version` has a
"not for us" answer (``None``): this server handles a request with a version it does not speak
as if the field were absent. That is project policy (docs/spec-notes.md#e23); the draft only
forbids answering such a request with a 104 (draft -11 Appendix B).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import http_sf

from ..errors import InconsistentLengthError
from ..errors import MalformedHeaderError
from ..errors import UploadLengthExceededError
from ._abnf import sf_parse
from .numbers import parse_sf_boolean
from .numbers import parse_sf_integer

__all__ = [
    "INTEROP_VERSIONS",
    "PROBLEM_COMPLETED_UPLOAD",
    "RULES",
    "InteropRules",
    "PARTIAL_UPLOAD",
    "PROBLEM_INCONSISTENT_LENGTH",
    "PROBLEM_MISMATCHING_OFFSET",
    "UploadLimit",
    "parse_interop_version",
    "parse_upload_complete",
    "parse_upload_limit",
    "parse_upload_number",
    "resolve_length",
    "rules_for",
]

#: The interop versions this server speaks; a request's own version is echoed back.
INTEROP_VERSIONS = (6, 7, 8, 9)
#: Body media type of an append (required from interop 6).
PARTIAL_UPLOAD = "application/partial-upload"
#: Problem types the draft registers (RFC 9457 ``type``).
_IANA = "https://iana.org/assignments/http-problem-types#"
PROBLEM_MISMATCHING_OFFSET = _IANA + "mismatching-upload-offset"
PROBLEM_INCONSISTENT_LENGTH = _IANA + "inconsistent-upload-length"
PROBLEM_COMPLETED_UPLOAD = _IANA + "completed-upload"

_LIMIT_KEYS = ("max-size", "min-size", "max-append-size", "min-append-size", "max-age", "expires")


@dataclasses.dataclass(frozen=True)
class InteropRules:
    """What one interop version's drafts say where the versions disagree."""

    version: int
    #: -04/-05: a HEAD with any of these fields is refused with 400.
    head_forbidden: tuple[str, ...] = ()
    #: -04/-05: a DELETE with any of these fields is refused with 400.
    delete_forbidden: tuple[str, ...] = ()
    #: -05 (``Upload-Limit``'s ``expires``, renamed ``max-age`` in -06): sent under both names.
    limit_expires: bool = False
    #: -06…-09: every response to a request that did not complete the upload says
    #: ``Upload-Complete: ?0``; from -10 on a SHOULD, and the editor's copy lets an invalid
    #: operation on a completed upload say ?0 too. Up to -05 the field on a response is the state.
    errors_say_incomplete: bool = True
    #: -09 on: an ``Upload-Offset``, ``Upload-Complete`` or ``Upload-Length`` that is not valid
    #: is ignored as if absent (before: a malformed field, 400).
    ignores_invalid_fields: bool = False
    #: -08 on: content past the known length rejects the request *and* marks the upload
    #: invalid, rejecting any further interaction with it.
    invalidates_on_overrun: bool = True
    #: The editor's copy: an append to a completed upload may get the final response again
    #: ("replay"); -04…-11: an append to a completed upload MUST be rejected.
    replays_completion: bool = False
    #: The editor's copy: ``GET`` is an offset retrieval too (HEAD RECOMMENDED).
    get_retrieves_offset: bool = False
    #: -10/-11: OPTIONS lists ``application/partial-upload`` in ``Accept-Patch`` (later reverted).
    options_accept_patch: bool = False


#: Each interop version's rules. Interop 7 spans -06…-08 and 8 spans -09…-11: where a rule
#: appears within the span, the version follows the later draft when that still satisfies the
#: earlier ones (invalidating an overrun upload also rejects the request, as -06 asks).
RULES: dict[int, InteropRules] = {
    6: InteropRules(
        6,
        head_forbidden=("Upload-Offset", "Upload-Complete", "Upload-Length"),
        delete_forbidden=("Upload-Offset", "Upload-Complete"),
        limit_expires=True,
        errors_say_incomplete=False,
        invalidates_on_overrun=False,
    ),
    7: InteropRules(7),
    8: InteropRules(8, ignores_invalid_fields=True, options_accept_patch=True),
    9: InteropRules(9, ignores_invalid_fields=True, replays_completion=True, get_retrieves_offset=True),
}


def rules_for(version: int | None) -> InteropRules:
    """The rules of ``version``; a request without the draft-interop field (the published
    protocol) follows the newest version's."""
    return RULES[version if version is not None else INTEROP_VERSIONS[-1]]


def parse_interop_version(value: str) -> int | None:
    """The ``Upload-Draft-Interop-Version`` of a request if this server speaks it, else None.

    None covers malformed values too. The caller then handles the request as if the field were
    absent, which is this project's policy (docs/spec-notes.md#e23): the draft says only that
    no 104 may be sent for it (draft -11 Appendix B).
    """
    try:
        version = parse_sf_integer(value.strip(" \t"), field="Upload-Draft-Interop-Version")
    except MalformedHeaderError:
        return None
    return version if version in INTEROP_VERSIONS else None


def parse_upload_complete(value: str) -> bool:
    """``Upload-Complete: ?0`` / ``?1``. :raises MalformedHeaderError: for anything else."""
    return parse_sf_boolean(value.strip(" \t"), field="Upload-Complete")


def parse_upload_number(value: str, *, field: str) -> int:
    """``Upload-Offset`` / ``Upload-Length``: a non-negative sf-integer (15 digits at most).

    The draft says a recipient *ignores* an invalid field; on a request that cannot proceed
    without it, ignoring it means refusing the request, so it is a 400 here.
    """
    return parse_sf_integer(value.strip(" \t"), field=field)


@dataclasses.dataclass(frozen=True)
class UploadLimit:
    """``Upload-Limit``: None means the limit does not exist (and is not sent)."""

    max_size: int | None = None
    min_size: int | None = None
    max_append_size: int | None = None
    min_append_size: int | None = None
    #: Seconds the upload resource has left (interop 7+ name).
    max_age: int | None = None

    def format(self, interop: int | None) -> str:
        """The field value; ``max-age`` is also sent as ``expires`` to interop 6 clients, which
        know it under that name (draft -05)."""
        members: dict[str, Any] = {}
        for key, value in (
            ("max-size", self.max_size),
            ("min-size", self.min_size),
            ("max-append-size", self.max_append_size),
            ("min-append-size", self.min_append_size),
            ("max-age", self.max_age),
        ):
            if value is not None:
                members[key] = value
        if self.max_age is not None and interop is not None and rules_for(interop).limit_expires:
            members["expires"] = self.max_age
        return str(http_sf.ser(members)) if members else ""  # SF: an empty field is not sent


def parse_upload_limit(value: str) -> UploadLimit:
    """Parse ``Upload-Limit`` (what a client reads). Unknown keys are ignored; a known key
    that is not a non-negative Integer makes the whole field malformed (the draft lets a
    recipient choose that over ignoring the field). ``expires`` counts as ``max-age``."""
    parsed = sf_parse(value.strip(" \t"), "dictionary", "Upload-Limit")
    found: dict[str, int] = {}
    for key, (item, _params) in parsed.items():
        if key not in _LIMIT_KEYS:
            continue
        if type(item) is not int or item < 0:
            raise MalformedHeaderError(
                "An Upload-Limit member is not a non-negative Integer.",
                extra={"field": "Upload-Limit", "key": key},
            )
        found[key] = item
    if "max-age" not in found and "expires" in found:
        found["max-age"] = found["expires"]
    return UploadLimit(
        max_size=found.get("max-size"),
        min_size=found.get("min-size"),
        max_append_size=found.get("max-append-size"),
        min_append_size=found.get("min-append-size"),
        max_age=found.get("max-age"),
    )



def resolve_length(
    *,
    offset: int,
    complete: bool,
    content_length: int | None,
    upload_length: int | None,
    known_length: int | None = None,
) -> int | None:
    """The upload length a creation or append request implies, checked for consistency.

    The indicators are ``Upload-Length``, ``Upload-Complete: ?1`` with a ``Content-Length``
    (length = offset + content length), and the length the upload already has. They must all
    agree, and the request's content must fit (draft -11 §4.1.3; docs/spec-notes.md#e21).
    None: still unknown.

    :raises InconsistentLengthError: (400, ``inconsistent-upload-length``) when they do not;
        :class:`UploadLengthExceededError` when the content would end past the length.
    """
    candidates = {name: value for name, value in (
        ("upload-length", upload_length),
        ("complete-content-length", offset + content_length
         if complete and content_length is not None else None),
        ("known-length", known_length),
    ) if value is not None}
    if len(set(candidates.values())) > 1:
        raise InconsistentLengthError(
            "The length indicators of this request and the upload disagree.", extra=candidates
        )
    length = next(iter(candidates.values()), None)
    if length is None:
        return None
    end = offset + (content_length or 0)
    if end > length:
        raise UploadLengthExceededError(
            "The content would end past the upload length.",
            extra={"length": length, "offset": offset, "content-length": content_length},
        )
    return length
