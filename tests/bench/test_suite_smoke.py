"""``python -m bench --quick`` runs every scenario against real gunicorn and the raw baseline.

A smoke test of the benchmark suite (tiny sizes, one run): it checks that the JSON holds every
scenario with the figures the docs promise (ratios against raw for S1, S3 and S6), never the
figures themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_quick_run_reports_every_scenario(database: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--db", database, "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratio" in done.stdout.splitlines()[0]
    result = json.loads(out.read_text())
    assert result["meta"]["databases"] == [database]
    assert result["meta"]["options"]["runs"] == 1
    scenarios = result["scenarios"]
    assert sorted(scenarios) == ["S1", "S2", "S3", "S4", "S5", "S6"]
    for name, rows in scenarios.items():
        assert rows, name
        for row in rows:
            assert row["min"] <= row["median"] <= row["max"], row
            assert len(row["runs"]) == 1 and row["runs"][0] > 0, row
            assert row["client_cpu_percent"] is not None, row

    def targets(name: str) -> dict[str, dict]:
        return {(row["target"], row["metric"]): row for row in scenarios[name]}

    for name in ("S1", "S2", "S3"):
        rows = targets(name)
        assert {target for target, _ in rows} == {"raw", database}, rows
        assert all(row["ratio"] is not None for (target, _), row in rows.items() if target != "raw")
    assert {metric for _, metric in targets("S4")} == {
        "HEAD p50, 1 extent", "HEAD p99, 1 extent", "HEAD p50, 500 extents", "HEAD p99, 500 extents"}
    assert (database, "peak RSS per worker (max)") in targets("S5")
    s6 = targets("S6")
    assert s6[(database, "GET whole")]["ratio"] is not None
    assert s6[(database, "64 KiB Range GETs")]["unit"] == "requests/s"


def test_quick_run_on_s3_reports_ours_against_direct_and_assembly(tmp_path: Path) -> None:
    # SQLite only: the database does not change what this checks (the S3 rows and their ratios).
    out = tmp_path / "bench-s3.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--storage", "s3", "--db", "sqlite",
         "--scenarios", "S1,S2", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scenarios = json.loads(out.read_text())["scenarios"]
    assert sorted(scenarios) == ["S1", "S2"]
    for name in ("S1", "S2"):
        rows = {(row["target"], row["metric"]): row for row in scenarios[name]}
        assert set(rows) == {("direct", "upload"), ("sqlite", "upload"), ("sqlite", "assembly")}, rows
        assert rows[("direct", "upload")]["median"] > 0
        assert rows[("sqlite", "upload")]["ratio"] is not None  # ours / direct
        assembly = rows[("sqlite", "assembly")]
        assert assembly["unit"] == "s/GiB" and assembly["median"] > 0
