"""The benchmark harnesses run end to end (``--quick``: small sizes, one round) and print every
row of their tables: ``benchmarks.run``, ``benchmarks.reqreply`` and ``benchmarks.cluster``;
``benchmarks.tracking`` on a small burst.
The full runs, and their figures, stay out of the test suite."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CEILING = "raw socket + hiredis batch loop, one thread (the practical Python ceiling)"
# valkey-glide is in the bench extra but optional: without it its rows say so.
GLIDE = importlib.util.find_spec("glide_sync") is not None

# (measurement, contender) of every row the report must hold.
ROWS = [
    ("ingest, channel", "redis_toolkit_nb"),
    ("ingest, channel", CEILING),
    ("ingest, channel", "redis-py get_message + orjson.loads"),
    ("ingest, channel", "redis-toolkit 0.4.0"),
    ("ingest, pattern", "redis_toolkit_nb"),
    ("ingest, pattern", CEILING),
    ("ingest, pattern", "redis-py get_message + orjson.loads"),
    ("burst of 102,400", "redis_toolkit_nb, default options"),
    (
        "burst of 102,400",
        "redis_toolkit_nb, max_backlog_bytes=0 (the 10,000 queue alone; drop_oldest)",
    ),
    ("burst of 102,400", CEILING),
    ("burst of 102,400", "redis-py get_message + orjson.loads"),
    ("burst of 102,400", "redis-toolkit 0.4.0"),
    ("bulk publish", "publish_many(), 20,000 dicts"),
    ("bulk publish", "redis-py pipeline(transaction=False), 1,000 per batch, orjson"),
    ("bulk publish", "redis-benchmark -c 1 -P 64 PUBLISH, no subscriber (server ceiling)"),
    ("one at a time", "publisher()"),
    ("one at a time", "redis-py publish(orjson.dumps(v))"),
    ("one at a time", "redis-toolkit 0.4.0 publisher()"),
    ("latency at 10,000 msg/s", "redis_toolkit_nb"),
    ("latency at 10,000 msg/s", "redis-py get_message + orjson.loads"),
    ("memory", "buffer_size=100,000, 400,000 messages pushed"),
]


def quick(module: str, *args: str) -> str:
    """Run ``python -m benchmarks.<module> --quick ARGS``: see ``harness``."""
    return harness(module, "--quick", *args)


def harness(module: str, *args: str) -> str:
    """Run ``python -m benchmarks.<module> ARGS`` (no inherited REDIS_URL: each harness
    starts its own servers); assert it succeeded; return what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_quick_benchmark_prints_every_row(tmp_path):
    report = tmp_path / "report.md"
    out = quick("run", "--markdown", str(report))
    for label in ("Date:", "Command:", "Machine:", "CPU", "Python", "redis-py", "hiredis"):
        assert label in out
    assert re.search(r"server redis-server \d+\.\d+", out)
    rows = {}
    glide = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7:
            rows[(cells[0], cells[1])] = cells
            if cells[1].startswith("valkey-glide-sync"):
                glide[cells[0]] = cells
    # glide has a row in each subscriber section: measured when installed, else saying so.
    assert set(glide) == {"ingest, channel", "ingest, pattern", "burst of 102,400"}, out
    for cells in glide.values():
        if GLIDE:
            assert re.search(r"\d+k? msg/s", cells[2]) and "%" in cells[3], cells
        else:
            assert cells[2].startswith("not installed"), cells
    for key in ROWS:
        assert key in rows, f"row {key} missing from:\n{out}"
        cells = rows[key]
        assert re.search(r"\d", cells[2]), f"row {key} has no figure: {cells}"
    # Every subscriber row says how much it got; the toolkit's target rows carry a verdict.
    for key in ROWS:
        if key[0].startswith(("ingest", "burst", "latency")):
            assert re.search(r"\d", rows[key][3]), f"row {key} has no delivery figure"
    # Every subscriber row of a section is compared with the ceiling of the same run.
    for key in ROWS:
        if key[0].startswith(("ingest", "burst")):
            assert re.search(r"\d\.\d\dx ceiling", rows[key][5]), f"row {key}: {rows[key][5]}"
            assert re.search(r"peak RSS \d+ MB", rows[key][2]), f"row {key}: {rows[key][2]}"
    verdicts = [rows[k][6] for k in ROWS if rows[k][6] and rows[k][6] != "reported"]
    assert len(verdicts) == 6
    parts = [p for v in verdicts for p in v.split("; ")]
    assert all(p.endswith(("PASS", "MISS")) for p in parts), verdicts
    assert sum("ceiling" in p for p in parts) == 2, verdicts  # ingest, channel and the burst
    # The smoke run's sizes fit every buffer: the toolkit loses nothing and is never cut off.
    burst = rows[("burst of 102,400", "redis_toolkit_nb, default options")]
    assert burst[3].startswith("102,400 of 102,400") and burst[4] == "0"
    assert report.read_text().startswith("# Benchmark results")


@pytest.mark.slow
def test_quick_reqreply_benchmark_prints_every_row():
    out = quick("reqreply")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "req/s" in line]
    assert len(rows) == 2, out
    bursts = [line for line in out.splitlines() if line.startswith("| burst of 102,400")]
    assert len(bursts) == 2 and all("| 100.0% |" in line for line in bursts), out
    assert "async listen() target" in out


@pytest.mark.slow
def test_quick_cluster_benchmark_prints_every_row():
    """On a real 3-master cluster: three rows, everything delivered."""
    out = quick("cluster")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "msg/s" in line]
    assert len(rows) == 3, out
    assert all("| 100.0% |" in row for row in rows), out
    assert "load average (1 min) at start" in out
    assert "toolkit / redis-py ClusterPubSub (sharded)" in out


def test_the_tracking_benchmark_runs():
    """``benchmarks/tracking.py`` end to end on a small burst: every message delivered, the
    ratio printed, the captured-rows timings printed (its own assertions check the counts)."""
    out = harness("tracking", "-n", "20000", "--rounds", "1")
    assert "worst delivered 100.0%" in out, out
    assert "on/off" in out and "captured 19,999 rows: schema_of" in out
