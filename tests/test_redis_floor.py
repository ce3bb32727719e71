"""The lowest redis-py that pyproject.toml allows really runs the core.

pyproject.toml declares ``redis>=X.Y.Z``. This installs exactly that version into a cache
directory (once per version: beside the running venv, else in the temp dir), puts it first on
``PYTHONPATH`` of a pytest subprocess that runs the core's test files against redis-server,
and checks that the floor is what the subprocess imported (conftest prints redis-py's version
in the report header) and that every test passed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The core's test files: the guide's examples, faults, codec, throughput and publish_many,
# lifecycle, options, TLS, secrets, the embedded server. Valkey is left out (-k): the engine
# does not change what redis-py is asked to do, and it halves the time.
CORE_TESTS = [
    "tests/test_guide_examples.py",
    "tests/test_faults.py",
    "tests/test_codec.py",
    "tests/test_throughput.py",
    "tests/test_lifecycle.py",
    "tests/test_options.py",
    "tests/test_tls.py",
    "tests/test_secrets.py",
    "tests/test_embedded.py",
    "tests/test_embedded_watchdog.py",
]


def declared_floor() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"redis>=([0-9][0-9.]*)"', text)
    assert found, "pyproject.toml declares no redis>= floor"
    return found.group(1)


def cache_dir(version: str) -> Path:
    # Inside the venv when there is one (CI makes a fresh one per run, so it pays the install
    # once per run); a system Python gets the temp dir instead.
    base = Path(sys.prefix) if sys.prefix != sys.base_prefix else Path(tempfile.gettempdir())
    return base / f"rtk-floor-redis-{version}"


def install(version: str) -> Path:
    """redis-py ``version`` in a directory of its own, installed once and then reused."""
    target = cache_dir(version)
    if (target / "redis" / "__init__.py").exists():
        return target
    # Install next to it and rename: an interrupted install never looks like a cached one.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(partial),
            f"redis=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"cannot install redis=={version} to test the declared floor:\n{proc.stderr}")
    try:
        partial.rename(target)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return target


@pytest.mark.slow
def test_core_tests_pass_on_the_lowest_declared_redis_py():
    version = declared_floor()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), (
        f"declare the floor as X.Y.Z (it is {version!r}): the exact release that is tested"
    )
    target = install(version)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(target), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *CORE_TESTS, "-k", "not valkey"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    imported = re.search(r"^redis-py (\S+) from (.+)$", out, re.MULTILINE)
    assert imported, f"the report header names no redis-py version:\n{out[-3000:]}"
    assert imported.group(1) == version, f"redis-py {imported.group(1)} was imported, not {version}"
    assert Path(imported.group(2)).resolve().is_relative_to(target.resolve()), imported.group(0)
    summary = "\n".join(
        dict.fromkeys(ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR")))
    )
    assert proc.returncode == 0, (
        f"core tests failed on redis-py {version}:\n{summary}\n\n{out[-4000:]}"
    )
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 100, out[-3000:]
