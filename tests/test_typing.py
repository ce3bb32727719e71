"""The package type-checks (mypy, configured in pyproject.toml) and ships its hints
(``py.typed``), so users' type checkers see them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis_toolkit_nb

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", "/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout


def test_the_package_ships_py_typed() -> None:
    assert (Path(redis_toolkit_nb.__file__).parent / "py.typed").is_file()
