"""What the suites share in their reports: percentiles, number formats, the machine, profiles."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from .server import REPO_ROOT


def percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summarize_profile(paths: list[Path], top: int = 15) -> dict[str, Any]:
    """Where request time goes, from py-spy's collapsed stacks (idle samples included).

    Only samples of threads inside a request (``Flask.wsgi_app`` on the stack) count, so idle
    workers waiting for connections do not dilute the shares. ``self``: the innermost Python
    function (a blocking call such as ``fdatasync`` shows as the function that made it);
    ``inclusive``: every function on the stack. Both in % of request samples.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if "wsgi_app (" not in stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame(frame) for frame in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}
    return {
        "samples": total,
        "self": [(name, round(count / total * 100, 1)) for name, count in own.most_common(top)],
        "inclusive": [(name, round(count / total * 100, 1)) for name, count in inclusive.most_common()
                      if not name.startswith(_PLUMBING)][:top],
    }


# Frames every request goes through: they tell nothing about where the time goes.
_PLUMBING = ("Flask.", "MethodOverride.", "ForwardedMiddleware.", "_worker (", "_WorkItem.",
             "Thread.", "ThreadWorker.", "Worker.", "Arbiter.", "run (", "<module>", "_bootstrap",
             "_run_code", "_run_module", "WSGIApplication.", "BaseApplication.", "Application.",
             "_DispatchingApp", "handle (", "handle_request")


def _frame(frame: str) -> str:
    """``pwrite (byterange_server/storage/local.py:107)`` → ``pwrite (storage/local.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "byterange_server/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        memory = int(meminfo.readline().split()[1]) // 1024
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_mib": memory, "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit, "load_average": os.getloadavg()}


def num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}%"


def write_results(path: Path | None, suite: Any, meta: dict[str, Any], scenarios: list[str],
                  profiles: dict[str, Any], *, finished: bool = False,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run so far as JSON (rewritten after every scenario, so an interrupted run keeps what it
    measured): the machine, each scenario's rows with their ratios, the profiles."""
    suite.ratios()
    rows = [row.summary() for row in suite.rows.values()]
    meta = dict(meta, load_average_end=os.getloadavg())
    if finished:
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    done = [name for name in scenarios if any(row["scenario"] == name for row in rows)]
    result: dict[str, Any] = {
        "meta": meta,
        "scenarios": {name: [row for row in rows if row["scenario"] == name] for name in done},
        **(extra or {}),
    }
    if profiles:
        result["profiles"] = profiles
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_profiles(profiles: dict[str, Any]) -> None:
    for name, summary in profiles.items():
        print(f"\nprofile {name} ({summary.get('samples', 0)} samples): inclusive "
              + ", ".join(f"{frame} {share}%" for frame, share in summary["inclusive"][:10]))


def print_aligned(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, a rule under the header."""
    lines = [header, *lines]
    widths = [max(len(line[index]) for line in lines) for index in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
