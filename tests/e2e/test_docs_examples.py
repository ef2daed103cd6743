"""Every ``sh`` block of README.md and docs/ that runs ``curl`` runs here, against gunicorn.

Docs that are not run drift: a variable never set, a file never created, a header renamed.
Each page's blocks run in order in one bash (``set -eu``), in an empty directory,
against a fresh server with authentication off (``http://127.0.0.1:8080`` becomes the test
server's address, ``.venv/bin/`` this interpreter's). A block fails the page when

- it exits non-zero (an unset variable, a failing pipe, a ``grep`` that matches nothing);
- one of its requests gets a 4xx or 5xx that neither the block, nor the paragraph before it,
  nor the output shown after it mentions (an example that shows an error says which one);
- the ``http`` output shown right after it has a status its requests never got, or a header
  line the server did not send (ids, dates and other values that vary aside).

A block the page cannot run here (another host, credentials) is preceded by
``<!-- not run: why -->``; the test counts those, so that none is skipped silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from byterange_server.db import migrate

from .conftest import REPO_ROOT
from .conftest import GunicornServer
from .conftest import running

PAGES = ["README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: [^>]+ -->\n*$")
MARKER = "/__example__/"
OUTPUT_MARK = "@@example "
#: Fields whose values differ from run to run; the rest of a shown response must be what was sent.
VARYING = ("Date", "Server", "Connection", "X-Request-Id", "Upload-Expires", "Retry-After", "Last-Modified")


@dataclasses.dataclass
class Block:
    line: int
    text: str
    #: The block, the paragraph just before it and the output shown right after it: where an
    #: example that shows an error names its status.
    context: str
    #: The final statuses the ``http`` output shown right after it carries (1xx are not logged).
    shown: set[int]
    #: The header lines (and JSON bodies) of that ``http`` output.
    shown_fields: list[str] = dataclasses.field(default_factory=list)


def blocks_of(page: str) -> tuple[list[Block], int]:
    """The page's runnable curl blocks, and how many curl blocks it marks as not run."""
    source = (REPO_ROOT / page).read_text()
    fences = list(FENCE.finditer(source))
    found, not_run = [], 0
    for index, fence in enumerate(fences):
        language, text = fence.groups()
        if language != "sh" or "curl" not in text:
            continue
        before = source[: fence.start()]
        if NOT_RUN.search(before):
            not_run += 1
            continue
        paragraph = before.rstrip().rsplit("\n\n", 1)[-1]
        output, shown = "", set()
        following = fences[index + 1] if index + 1 < len(fences) else None
        if (
            following is not None
            and following.group(1) != "sh"
            and not source[fence.end() : following.start()].strip()
        ):
            output = following.group(2)
            if following.group(1) == "http":
                statuses = re.findall(r"^HTTP/1\.1 (\d{3})", output, re.M)
                shown = {int(status) for status in statuses if not status.startswith("1")}
        block = Block(before.count("\n") + 2, text, "\n".join((paragraph, text, output)), shown)
        if shown:
            block.shown_fields = re.findall(r"^(?:[A-Za-z][A-Za-z0-9-]*: .*|\{.*\})$", output, re.M)
        found.append(block)
    return found, not_run


RUNNABLE = [page for page in PAGES if blocks_of(page)[0]]


def script_for(blocks: list[Block], server: GunicornServer) -> str:
    bin_dir = f"{Path(sys.executable).parent}/"
    parts = ["set -eu"]  # no pipefail: `tail | head` ends tail with SIGPIPE, as in any shell
    for number, block in enumerate(blocks):
        # The mark on a line of its own, even after output that did not end its line.
        parts.append(f"echo {number} > .block; printf '\\n{OUTPUT_MARK}{number}\\n'")
        parts.append(f"curl -s -o /dev/null {server.base}{MARKER}{number}")
        parts.append(block.text.replace("http://127.0.0.1:8080", server.base).replace(".venv/bin/", bin_dir))
    return "\n".join(parts) + "\n"


def outputs_by_block(stdout: str) -> dict[int, str]:
    pieces = re.split(rf"^{OUTPUT_MARK}(\d+)\n", stdout, flags=re.M)
    return {
        int(number): text.replace("\r", "") for number, text in zip(pieces[1::2], pieces[2::2], strict=True)
    }


def field_pattern(line: str, server: GunicornServer) -> re.Pattern[str]:
    """A shown header line as a pattern: ``{id}`` and ``{boundary}`` stand for any, the port for
    the test's."""
    text = re.escape(line.replace("http://127.0.0.1:8080", server.base))
    for placeholder in ("{id}", "{boundary}"):
        text = text.replace(re.escape(placeholder), "[A-Za-z0-9_.-]+")
    # A lifetime counts down between the requests of a page (Upload-Limit's max-age, in seconds).
    text = re.sub(r"max\\-age=\d+", lambda _: r"max\-age=\d+", text)
    return re.compile(f"^{text}$", re.M | re.I)


def statuses_by_block(log: Path) -> dict[int, list[tuple[str, str, int]]]:
    """The request log's (method, path, status), grouped by the marker request before them."""
    grouped: dict[int, list[tuple[str, str, int]]] = {}
    current = -1
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("logger") != "byterange_server.access":
            continue
        if entry["path"].startswith(MARKER):
            current = int(entry["path"][len(MARKER) :])
            continue
        grouped.setdefault(current, []).append((entry["method"], entry["path"], entry["status"]))
    return grouped


def test_the_pages_mark_what_they_do_not_run() -> None:
    marked = {page: blocks_of(page)[1] for page in PAGES}
    # Only what cannot run against a local server with authentication off is left out.
    assert {page: count for page, count in marked.items() if count} == {
        "docs/quickstart.md": 1,
        "docs/security.md": 1,
    }


@pytest.mark.parametrize("page", RUNNABLE)
def test_the_page_runs_as_written(page: str, tmp_path: Path) -> None:
    blocks, _ = blocks_of(page)
    database_url = f"sqlite:///{tmp_path / 'docs.sqlite3'}"
    migrate.upgrade(database_url)
    server = GunicornServer(
        database_url, tmp_path / "server", workers=1, extra_env={"BYTERANGE_REQUEST_LOG": "true"}
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    with running(server):
        shell = subprocess.Popen(
            ["bash", "-c", script_for(blocks, server)],
            cwd=workdir,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: whatever a block leaves running goes
        )
        try:
            stdout, stderr = shell.communicate(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
        done = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    grouped = statuses_by_block(server.log_path)
    outputs = outputs_by_block(done.stdout)
    ran = int((workdir / ".block").read_text())
    where = f"{page}, block at line {blocks[ran].line}"
    assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    assert ran == len(blocks) - 1 and max(grouped) == ran
    problems = []
    for number, block in enumerate(blocks):
        answers = grouped.get(number, [])
        problems += [
            f"{page}:{block.line}: {method} {path} got {status}, which the example does not mention"
            for method, path, status in answers
            if status >= 400 and str(status) not in block.context
        ]
        printed = outputs.get(number, "")
        problems += [
            f"{page}:{block.line}: the page shows {line!r}; the server sent:\n{printed[-1500:]}"
            for line in block.shown_fields
            if line.split(":", 1)[0] not in VARYING and not field_pattern(line, server).search(printed)
        ]
        if not block.shown <= {status for _, _, status in answers}:
            problems.append(f"{page}:{block.line}: the page shows {block.shown}, the requests got {answers}")
    assert not problems, "\n".join(problems)
