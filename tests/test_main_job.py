"""The README's main-job command starts JupyterLab as written, on this machine as the setup
leaves it (CI runs as root: without ``--allow-root`` JupyterLab refuses to start)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from redis_toolkit_nb.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


def _main_job_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The main job", 1)[1]
    line = re.search(r"^(\.venv/bin/jupyter lab[^\n#]*)", section, re.M)
    assert line, "the README's main job has no `.venv/bin/jupyter lab ...` command"
    return shlex.split(line.group(1))


@pytest.mark.slow
def test_the_readme_main_job_command_serves_the_notebooks(tmp_path: Path) -> None:
    command = _main_job_command()
    jupyter = Path(sys.executable).with_name("jupyter")
    port, token = free_port(), "rtk-main-job"
    args = [str(jupyter), *command[1:]]
    args += ["--no-browser", f"--port={port}", f"--ServerApp.token={token}"]
    args += [f"--ServerApp.runtime_dir={tmp_path}", "--LabApp.news_url=None"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"
        deadline = time.monotonic() + 60
        listing = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    listing = reply.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        if listing is None:
            proc.kill()
            out = proc.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"`{shlex.join(command)}` did not serve the notebooks:\n{out[-2000:]}")
        assert '"quickstart.ipynb"' in listing
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
