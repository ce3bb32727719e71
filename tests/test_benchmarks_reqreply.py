"""``python -m benchmarks.reqreply --quick`` runs end to end and prints its four rows (the
figures themselves stay out of the test suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_reqreply_benchmark_prints_every_row():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.reqreply", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "req/s" in line]
    assert len(rows) == 2, proc.stdout
    bursts = [line for line in proc.stdout.splitlines() if line.startswith("| burst of 102,400")]
    assert len(bursts) == 2 and all("| 100.0% |" in line for line in bursts), proc.stdout
    assert "async listen() target" in proc.stdout
