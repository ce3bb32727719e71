"""``python -m benchmarks.cluster --quick`` runs end to end on a real 3-master cluster and
prints its three rows, everything delivered (the figures themselves stay out of the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_cluster_benchmark_prints_every_row():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "msg/s" in line]
    assert len(rows) == 3, proc.stdout
    assert all("| 100.0% |" in row for row in rows), proc.stdout
    assert "load average (1 min) at start" in proc.stdout
    assert "toolkit / redis-py ClusterPubSub (sharded)" in proc.stdout
