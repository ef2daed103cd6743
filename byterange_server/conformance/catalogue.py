"""The catalogue: every check as data (spec, section, level, the requirement in a few words)
plus the function that probes it, and the runner that turns them into results.

A check judges by the text it cites, not by what byterange-server does: where the texts
leave a choice open and this project made one, the check's level is ``POLICY`` and its
``policy`` note says so; policy checks are reported but never counted as conformance.

Outcomes: ``pass``, ``fail``, ``not supported`` (an optional feature or protocol version the
server does not offer: a tus extension it does not advertise, an interop version it does not
speak), ``not applicable`` (the requirement's condition never arises on this server, e.g. a
413 rule on a server without limits) and ``error`` (the checker itself failed: a bug to report,
never a verdict on the server).
"""

from __future__ import annotations

import dataclasses
import time
import traceback
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin

from . import probe
from .probe import Exchange

__all__ = [
    "CATALOGUE",
    "LEVELS",
    "OUTCOMES",
    "PROTOCOLS",
    "IETF_VERSIONS",
    "Check",
    "Context",
    "Result",
    "Verdict",
    "check",
    "run_one",
]

PASS = "pass"
FAIL = "fail"
UNSUPPORTED = "not supported"
NA = "not applicable"
ERROR = "error"
OUTCOMES = (PASS, FAIL, UNSUPPORTED, NA, ERROR)
LEVELS = ("MUST", "SHOULD", "MAY", "POLICY")
PROTOCOLS = ("byterange", "ietf", "tus")
#: Interop versions of draft-ietf-httpbis-resumable-upload: 6 = -04/-05, 7 = -06…-08,
#: 8 = -09…-11, 9 = the editor's copy after -12.
IETF_VERSIONS = (6, 7, 8, 9)
IETF_DRAFTS = {6: "-04/-05", 7: "-06…-08", 8: "-09…-11", 9: "editor's copy after -12"}

SPECS = {
    "byterange": "draft-ietf-httpapi-patch-byterange-03",
    "ietf": "draft-ietf-httpbis-resumable-upload",
    "tus": "tus 1.0.0",
}

#: Header fields worth showing as evidence (the rest — Date, Server, … — is noise).
EVIDENCE_FIELDS = (
    "location",
    "upload-",
    "tus-",
    "content-type",
    "content-range",
    "accept-patch",
    "cache-control",
    "preference-applied",
    "allow",
    "retry-after",
    "committed-ranges",
)


class Verdict(Exception):
    """Raised by a check (through the helpers below) to end with an outcome."""

    def __init__(self, outcome: str, note: str) -> None:
        super().__init__(note)
        self.outcome = outcome
        self.note = note


def passed(note: str = "") -> Verdict:
    return Verdict(PASS, note)


def failed(note: str) -> Verdict:
    return Verdict(FAIL, note)


def unsupported(note: str) -> Verdict:
    return Verdict(UNSUPPORTED, note)


def not_applicable(note: str) -> Verdict:
    return Verdict(NA, note)


def require(condition: bool, note: str) -> None:
    """Fail the check with ``note`` unless ``condition``."""
    if not condition:
        raise failed(note)


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    protocol: str
    spec: str
    section: str
    level: str
    text: str
    run: Callable[[Context], str | None]
    #: IETF interop versions the requirement applies to (empty for the other protocols).
    versions: tuple[int, ...] = ()
    #: For level POLICY: what the texts leave open and what this project chose.
    policy: str | None = None
    #: tus: the extension (a Tus-Extension token) the check needs.
    extension: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "spec": self.spec,
            "section": self.section,
            "level": self.level,
            "text": self.text,
            "versions": list(self.versions),
            "policy": self.policy,
            "extension": self.extension,
        }


@dataclasses.dataclass
class Result:
    check: Check
    version: int | None
    outcome: str
    note: str
    evidence: list[str]
    seconds: float

    @property
    def key(self) -> str:
        """The check's id, with ``@N`` for an IETF interop version."""
        return f"{self.check.id}@{self.version}" if self.version is not None else self.check.id

    def to_json(self) -> dict[str, Any]:
        data = self.check.describe()
        data.update(
            {
                "key": self.key,
                "version": self.version,
                "outcome": self.outcome,
                "note": self.note,
                "evidence": self.evidence,
                "seconds": round(self.seconds, 3),
            }
        )
        return data


CATALOGUE: list[Check] = []


def check(
    id: str,
    protocol: str,
    section: str,
    level: str,
    text: str,
    *,
    spec: str | None = None,
    versions: Iterable[int] = (),
    policy: str | None = None,
    extension: str | None = None,
) -> Callable[[Callable[[Context], str | None]], Callable[[Context], str | None]]:
    """Register the decorated function as a check (a function returning a note passes)."""
    assert protocol in PROTOCOLS and level in LEVELS, (protocol, level)
    assert (level == "POLICY") == (policy is not None), id
    assert all(existing.id != id for existing in CATALOGUE), f"duplicate check id {id}"

    def register(func: Callable[[Context], str | None]) -> Callable[[Context], str | None]:
        CATALOGUE.append(
            Check(
                id,
                protocol,
                spec or SPECS[protocol],
                section,
                level,
                text,
                func,
                tuple(versions),
                policy,
                extension,
            )
        )
        return func

    return register


def summarise(exchange: Exchange) -> str:
    """``PATCH /files/x → 104, 204 No Content; Upload-Offset: 5`` — one line of evidence."""

    def fields(response: probe.Response) -> str:
        shown = [
            f"{name}: {value}" for name, value in response.headers if name.lower().startswith(EVIDENCE_FIELDS)
        ]
        return "; ".join(shown)

    path = exchange.url.split("//", 1)[-1].partition("/")[2]
    parts = [f"{exchange.method} /{path} →"]
    for interim in exchange.interim:
        shown = fields(interim)
        parts.append(f"[{interim.status_line}{'; ' + shown if shown else ''}]")
    if exchange.final is not None:
        shown = fields(exchange.final)
        parts.append(f"{exchange.final.status_line}{'; ' + shown if shown else ''}")
    else:
        parts.append(f"no response ({exchange.error or 'connection closed'})")
    return " ".join(parts)


class Context:
    """What a check sees: the server's URL, the protocol version, and recorded requests."""

    def __init__(self, url: str, *, timeout: float = probe.DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/") if url.endswith("/") and url.count("/") > 3 else url
        self.timeout = timeout
        self.version: int | None = None
        self.evidence: list[str] = []
        #: Shared between checks of one run (discovery answers, tus responses seen).
        self.shared: dict[str, Any] = {}

    def note(self, line: str) -> None:
        self.evidence.append(line)

    def resolve(self, location: str) -> str:
        return (
            urljoin(self.url + ("/" if not self.url.endswith("/") else ""), location)
            if not location.startswith(("http://", "https://", "/"))
            else urljoin(self.url, location)
        )

    def request(
        self,
        method: str,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        is_chunked: bool = False,
        record: bool = True,
    ) -> Exchange:
        exchange = probe.request(
            method, url or self.url, headers, body, is_chunked=is_chunked, timeout=self.timeout
        )
        if record:
            self.evidence.append(summarise(exchange))
        self.shared.setdefault("exchanges", []).append(exchange)
        return exchange

    def open(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        content_length: int | None,
        is_chunked: bool = False,
        keep_alive: bool = False,
    ) -> probe.Open:
        return probe.open_request(
            method,
            url,
            headers,
            content_length=content_length,
            is_chunked=is_chunked,
            timeout=self.timeout,
            keep_alive=keep_alive,
        )

    def record(self, exchange: Exchange) -> Exchange:
        self.evidence.append(summarise(exchange))
        self.shared.setdefault("exchanges", []).append(exchange)
        return exchange

    def unique(self) -> str:
        return uuid.uuid4().hex


def run_one(check: Check, context: Context, version: int | None) -> Result:
    context.version = version
    context.evidence = []
    started = time.monotonic()
    try:
        note = check.run(context) or ""
        outcome = PASS
    except Verdict as verdict:
        outcome, note = verdict.outcome, verdict.note
    except probe.ProbeError as exc:
        outcome, note = FAIL, f"the server's answer is not HTTP/1.1: {exc}"
    except Exception as exc:  # a bug of the checker, not a verdict on the server
        outcome = ERROR
        note = f"checker error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return Result(check, version, outcome, note, list(context.evidence), time.monotonic() - started)
