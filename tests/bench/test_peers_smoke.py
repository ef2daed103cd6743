"""``python -m bench --peers --quick`` installs the pinned peers and runs P1–P6 against them all.

A smoke test of the peer comparison (tiny sizes, one run): the peers are installed into the
cache directory (``BYTERANGE_BENCH_PEERS_DIR``, else ``~/.cache/byterange-bench/peers``) with npm
and pip, so this test needs Node 20.19+, npm and both registries. Without them it fails, with
the installer's message; it never skips. It checks that the JSON holds every scenario for every
target with both ratios where the docs promise them, never the figures themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peersuite import SCENARIOS
from bench.peersuite import TARGETS

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_peers_quick_run_reports_every_target(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--peers", "--quick", "--json", str(out)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"python -m bench --peers --quick did not finish in 900 s:\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(f"python -m bench --peers --quick failed (exit {done.returncode}):\n"
                    f"{done.stderr[-4000:]}")
    assert "ours/best peer" in done.stdout and "ours/raw" in done.stdout
    assert "no fsync" in done.stdout  # the output says the peers do not flush

    result = json.loads(out.read_text())
    meta = result["meta"]
    assert meta["mode"] == "peers" and meta["options"]["runs"] == 1
    assert meta["versions"]["@tus/server"] == "2.4.5" and meta["versions"]["@tus/file-store"] == "2.1.1"
    assert meta["versions"]["tuspyserver"] == "4.4.3"
    assert sorted(result["scenarios"]) == sorted(SCENARIOS)

    for name, rows in result["scenarios"].items():
        assert rows, name
        for row in rows:
            assert row["min"] <= row["median"] <= row["max"] and len(row["runs"]) == 1, row
        if name == "P6":
            continue
        assert {row["target"] for row in rows} == set(TARGETS), name
        for row in rows:
            assert row["server_cpu_percent"] is not None and row["client_cpu_percent"] is not None, row
            if row["kind"] == "ours":
                peers = [other["median"] for other in rows
                         if other["metric"] == row["metric"] and other["kind"] == "peer"]
                best = max(peers) if row["higher_is_better"] else min(peers)
                assert (row["ours_over_best_peer"] is None) == (best == 0), row  # no ratio to zero
                if row["unit"] in ("MB/s", "requests/s"):
                    assert row["ours_over_raw"] is not None, row
            else:
                assert row["ours_over_best_peer"] is None and row["ours_over_raw"] is None, row

    def metrics(name: str) -> set[str]:
        return {row["metric"] for row in result["scenarios"][name]}

    for name in ("P1", "P2", "P3"):
        assert metrics(name) == {"upload", "server CPU per GiB"}, name
    assert metrics("P4") == {"64 KiB writes", "server CPU per GiB"}
    assert metrics("P5") == {"slow uploads completed", "slow aggregate", "slow uploads refused",
                             "fast HEAD p50", "fast HEAD p99"}
    # The slow clients' path works end to end (on the raw baseline; how many uploads each server
    # completes in the window on a loaded machine is a figure, not asserted).
    p5 = {row["target"]: row for row in result["scenarios"]["P5"]
          if row["metric"] == "slow uploads completed"}
    assert p5["raw"]["median"] > 0, p5
    assert {name.split(" ", 1)[1] for name in result["notes"]} == set(TARGETS)
    assert {row["target"] for row in result["scenarios"]["P6"]} == {
        "ours", "ours nofsync", "@tus/server", "tuspyserver", "raw", "raw nofsync"}
