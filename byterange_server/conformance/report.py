"""Results as a table for people and as JSON for programs (and for docs/conformance.md)."""

from __future__ import annotations

import datetime
import json
import textwrap
from collections.abc import Iterable
from typing import Any

from .catalogue import LEVELS
from .catalogue import OUTCOMES
from .catalogue import Result

__all__ = ["counts", "group_of", "summary", "table", "to_json"]

SCHEMA = 1
EVIDENCE_LINES = 8
MARKS = {"pass": "PASS", "fail": "FAIL", "not supported": "N/S", "not applicable": "N/A", "error": "ERROR"}


def group_of(protocol: str, version: int | None) -> str:
    """``byterange``, ``tus``, ``ietf@8``: how results are counted."""
    return f"{protocol}@{version}" if version is not None else protocol


def counts(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """{group: {level: {outcome: n}}} over results in their JSON form."""
    found: dict[str, dict[str, dict[str, int]]] = {}
    for result in results:
        by_level = found.setdefault(group_of(result["protocol"], result["version"]), {})
        by_outcome = by_level.setdefault(result["level"], dict.fromkeys(OUTCOMES, 0))
        by_outcome[result["outcome"]] += 1
    return found


def to_json(url: str, results: list[Result], **meta: Any) -> dict[str, Any]:
    items = [result.to_json() for result in results]
    return {
        "schema": SCHEMA,
        "target": url,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **meta,
        "counts": counts(items),
        "results": items,
    }


def summary(document: dict[str, Any]) -> list[str]:
    """One line per protocol (and interop version): pass/fail of each level."""
    lines = []
    for group, by_level in document["counts"].items():
        parts = []
        for level in LEVELS:
            if level in by_level:
                found = by_level[level]
                extra = ", ".join(
                    f"{n} {outcome}" for outcome, n in found.items() if n and outcome not in ("pass", "fail")
                )
                parts.append(
                    f"{level} {found['pass']} pass / {found['fail']} fail" + (f" ({extra})" if extra else "")
                )
        lines.append(f"{group:<14} " + "; ".join(parts))
    return lines


def table(document: dict[str, Any], *, verbose: bool = False, width: int = 110) -> str:
    """The results, one row per check; the evidence under every row that did not pass."""
    lines = [f"Conformance of {document['target']}", ""]
    for result in document["results"]:
        mark = MARKS[result["outcome"]]
        level = result["level"]
        lines.append(f"{mark:<6} {level:<6} {result['key']:<46} {result['text']}"[: width + 60])
        if result["outcome"] != "pass" or verbose:
            detail = []
            if result["note"]:
                detail.append(result["note"].splitlines()[0])
            if result["policy"]:
                detail.append(f"policy, not a requirement: {result['policy']}")
            detail.append(f"{result['spec']}, {result['section']}")
            evidence = result["evidence"]
            detail += (
                evidence
                if verbose or len(evidence) <= EVIDENCE_LINES
                else [
                    *evidence[: EVIDENCE_LINES - 1],
                    f"… {len(evidence) - EVIDENCE_LINES + 1} more exchanges in the JSON",
                    evidence[-1],
                ]
            )
            for line in detail:
                lines += textwrap.wrap(line, width, initial_indent="       ", subsequent_indent="         ")
    lines += ["", "Summary (POLICY rows are this project's choices, not requirements):"]
    lines += ["  " + line for line in summary(document)]
    return "\n".join(lines)


def dump(document: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
