"""The tests the docs name exist: docs/security.md and docs/spec-notes.md cite a test for every
claim, and a test that moves or is renamed must take its citations along."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CITED = re.compile(r"(tests/[\w/]+\.py)(?:::([\w:]+))?")
BARE = re.compile(r"`(test_\w+)(?:\[[^\]`]*\])?`")
DEFINED = re.compile(r"^\s*(?:async\s+)?def\s+(test_\w+)|^class\s+(Test\w+)", re.M)


def _defined() -> set[str]:
    names = set()
    for path in (REPO / "tests").rglob("*.py"):
        names |= {a or b for a, b in DEFINED.findall(path.read_text(encoding="utf-8"))}
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_test_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = []
    for path, name in CITED.findall(text):
        target = REPO / path
        if not target.exists():
            missing.append(path)
        elif name and not all(part in target.read_text(encoding="utf-8") for part in name.split("::")):
            missing.append(f"{path}::{name}")
    defined = _defined()
    missing += [name for name in BARE.findall(text) if name not in defined]
    assert missing == []
