"""Helpers for the real-browser tests: Chromium through Playwright, JupyterLab and Voila servers.

Everything here drives real processes: Debian's ``/usr/bin/chromium`` (Playwright's own browser
download does not work on this machine, so ``playwright install`` is never used), a JupyterLab or
Voila server started from this interpreter on a free loopback port with a token and its own
HOME / runtime / settings directories, and a real kernel that talks to a private Redis server.

Conventions the tests rely on (found the hard way, see issue 5):

- the toolbar's kernel indicator says idle before a kernel exists; the status bar text
  ``"| Idle"`` only appears once the kernel really answered;
- Run All goes through the Run menu item ``runmenu:run-all``, as a person would click it;
- widget output is selected under ``.jp-OutputArea-output`` (a bare ``.widget-label`` also
  matches labels inside other widgets, such as a slider's description);
- kernels outlive the page, so every server is stopped (sessions deleted first) at the end;
- Lab autosaves, so the browser always opens a *copy* of a notebook;
- Voila pages ask a CDN for fonts: every request that leaves loopback is aborted and counted.

Set ``RTK_UPDATE_SCREENSHOTS=1`` to also write the README's screenshot(s) under ``docs/``;
screenshots for inspection always go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from redis_toolkit_nb.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS = ROOT / "docs"

CHROMIUM = os.environ.get("RTK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 900}

# What a widget shows when its front end is broken: the placeholder that never resolves, and
# the messages ipywidgets prints when a model cannot be found or a view cannot be created.
WIDGET_FAILURES = (
    "Loading widget...",
    "Error displaying widget",
    "model not found",
    "Failed to load model class",
    "Could not create a view",
)
# A Python error in a cell, as JupyterLab renders it (IPython traceback or a UsageError).
CELL_ERROR = re.compile(r"Traceback \(most recent call last\)|^\s*UsageError:", re.MULTILINE)


def update_screenshots() -> bool:
    """True when the run was asked to refresh the README's screenshots under docs/."""
    return os.environ.get("RTK_UPDATE_SCREENSHOTS", "").lower() in {"1", "true", "yes"}


def chromium_or_skip() -> str:
    """The Chromium binary, or a loud skip that says why the browser tests did not run.

    ``.ci/run`` installs Debian's chromium when it is missing, so a skip only happens where it
    truly could not be installed. ``RTK_REQUIRE_BROWSER=1`` turns that skip into a failure.
    """
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (
        f"BROWSER TESTS NOT RUN: no Chromium at {CHROMIUM}. Install it with "
        "`apt-get install -y chromium` (.ci/run does so when it can); Playwright's own "
        "browser download (`playwright install`) does not work here and is never used."
    )
    if os.environ.get("RTK_REQUIRE_BROWSER", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pytest.skip raises; this keeps type checkers calm


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Notebooks on disk
# --------------------------------------------------------------------------------------------


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write a minimal nbformat 4 notebook of code cells, with a kernelspec (Lab asks nothing)."""
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
    }
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def require_notebook(relative: str) -> Path:
    """The project's notebook at ``relative`` (from the repository root), or a clear failure."""
    path = ROOT / relative
    if not path.is_file():
        pytest.fail(
            f"{relative} is missing: this browser test opens it and checks the DOM contract "
            "(.rtk-panel / .rtk-counters 'received N' / .rtk-table / .rtk-log / .rtk-dashboard). "
            "It is written by the teaching-notebooks work of issue 5."
        )
    return path


def code_cells(path: Path) -> list[str]:
    """The source of every code cell of a notebook, in order."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            out.append("".join(src) if isinstance(src, list) else src)
    return out


@dataclass
class SubscribeCell:
    """One ``%%rtk_subscribe`` cell: its index among code cells and what it subscribes to."""

    index: int
    names: list[str]
    options: dict[str, str] = field(default_factory=dict)

    def channel_to_publish(self, suffix: str = "browser") -> str:
        """A concrete channel that this subscription receives (a pattern gets a matching name)."""
        name = self.names[0]
        if not any(ch in name for ch in "*?["):
            return name
        concrete = re.sub(r"\[([^\]]+)\]", lambda m: m.group(1).lstrip("^!")[0], name)
        concrete = concrete.replace("*", suffix).replace("?", "x")
        assert fnmatch.fnmatchcase(concrete, name), (concrete, name)
        return concrete


def subscribe_cells(path: Path) -> list[SubscribeCell]:
    """Parse the ``%%rtk_subscribe`` lines of a notebook (channel names are read, not guessed)."""
    found = []
    for index, source in enumerate(code_cells(path)):
        first = source.lstrip().splitlines()[0] if source.strip() else ""
        if not first.startswith("%%rtk_subscribe"):
            continue
        tokens = shlex.split(first)[1:]
        names: list[str] = []
        options: dict[str, str] = {}
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok.startswith("--"):
                key, sep, value = tok[2:].partition("=")
                if not sep and i + 1 < len(tokens):
                    value = tokens[i + 1]
                    i += 1
                options[key] = value
            else:
                names.append(tok)
            i += 1
        if names:
            found.append(SubscribeCell(index, names, options))
    return found


# --------------------------------------------------------------------------------------------
# Servers: JupyterLab and Voila, each in its own sandbox of directories
# --------------------------------------------------------------------------------------------


#: JupyterLab's dark theme, as a user setting (``NotebookServer(settings=DARK_THEME)``).
DARK_THEME = {
    "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {"theme": "JupyterLab Dark"}
}


def _user_settings(settings_dir: Path, extra: dict[str, dict[str, Any]] | None = None) -> None:
    """Lab settings that keep the page deterministic: no news/update toasts over the screenshot,
    and every cell in the DOM (windowing would leave off-screen outputs unrendered); ``extra``
    adds more (file under the settings dir -> its content), e.g. ``DARK_THEME``."""
    files: dict[str, Any] = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        **(extra or {}),
    }
    for rel, content in files.items():
        target = settings_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content), encoding="utf-8")


class NotebookServer:
    """A JupyterLab (``kind="lab"``) or Voila (``kind="voila"``) server owned by one test.

    ``root`` is the directory it serves (put copies of notebooks there); ``env`` is added to the
    sandboxed environment the server and its kernels get (``REDIS_URL`` goes here);
    ``settings`` adds Lab user settings (``DARK_THEME``).
    """

    def __init__(
        self,
        kind: str,
        root: Path,
        sandbox: Path,
        env: dict[str, str] | None = None,
        notebook: str | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if kind not in {"lab", "voila"}:
            raise ValueError(kind)
        self.kind = kind
        self.root = root
        self.sandbox = sandbox
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.notebook = notebook
        self.extra_env = dict(env or {})
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = sandbox / f"{kind}-server.log"
        self.started_in: float | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        home = self.sandbox / "home"
        dirs = {
            "HOME": home,
            "JUPYTER_RUNTIME_DIR": self.sandbox / "runtime",
            "JUPYTER_CONFIG_DIR": self.sandbox / "config",
            "JUPYTER_DATA_DIR": self.sandbox / "data",
            "JUPYTERLAB_SETTINGS_DIR": self.sandbox / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.sandbox / "lab-workspaces",
            "IPYTHONDIR": self.sandbox / "ipython",
            "MPLCONFIGDIR": self.sandbox / "mpl",
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        _user_settings(dirs["JUPYTERLAB_SETTINGS_DIR"], self.settings)
        # Start from this process's environment minus anything that would point the server or
        # its kernels somewhere else (an ambient REDIS_URL, a user's Jupyter paths).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTER", "REDIS_URL", "IPYTHON", "JPY_"))
        }
        env.update({k: str(v) for k, v in dirs.items()})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def _command(self) -> list[str]:
        if self.kind == "lab":
            return [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.news_url=None",
                # CI runs as root; the server refuses to start as root without this.
                "--ServerApp.allow_root=True",
            ]
        assert self.notebook, "Voila serves one notebook"
        return [
            sys.executable,
            "-m",
            "voila",
            str(self.root / self.notebook),
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={self.port}",
            "--Voila.port_retries=0",
            f"--token={self.token}",
            "--show_tracebacks=True",
        ]

    def start(self, timeout: float = 60.0) -> NotebookServer:
        t0 = time.monotonic()
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # A process group of its own: stop() can then reach the kernels it spawned too.
        self.proc = subprocess.Popen(
            self._command(),
            cwd=self.root,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._log = log

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"{self.kind} server exited at start:\n{self.log_tail()}")
            if self.kind == "voila":
                # GET / would already execute the notebook: a listening port is enough.
                return _port_open(self.port)
            try:
                self.api("GET", "/api/status")
                return True
            except (OSError, urllib.error.URLError):
                return False

        try:
            poll(ready, timeout, f"the {self.kind} server on port {self.port}", interval=0.1)
        except BaseException:
            self.stop()  # a server that never answered must not outlive the test
            raise
        self.started_in = time.monotonic() - t0
        return self

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Jupyter REST API with the token; JSON in and out."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def url(self, path: str = "") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Delete every session (kernels outlive pages), then stop the server and its group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.kind == "lab" and proc.poll() is None:
            with contextlib.suppress(Exception):
                for session in self.api("GET", "/api/sessions"):
                    self.api("DELETE", f"/api/sessions/{session['id']}")
        if proc.poll() is None:
            # SIGTERM lets the server shut its kernels down cleanly.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Anything of the group still alive (a kernel that ignored SIGTERM) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._log.close()

    def __enter__(self) -> NotebookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def copy_notebook(source: Path, root: Path, name: str | None = None) -> str:
    """Copy a notebook into the served directory (Lab autosaves: never open the original)."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / (name or source.name)
    shutil.copyfile(source, target)
    return target.name


# --------------------------------------------------------------------------------------------
# Chromium through Playwright
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless Chromium (Debian's build) driven by Playwright's bundled driver."""
    binary = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What the page said on the side: console errors, uncaught exceptions, blocked requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def new_page(browser: Any, *, offline: bool = True) -> tuple[Any, Any, PageLog]:
    """A fresh context and page; with ``offline`` every request off loopback is aborted (and
    recorded): the machine has no network, and Voila's CDN font links would otherwise hang."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    log = PageLog()
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    if offline:

        def route(r: Any) -> None:
            url = r.request.url
            host = re.sub(r"^[a-z]+://([^/:]+).*$", r"\1", url)
            if url.startswith(("data:", "blob:")) or host in {"127.0.0.1", "localhost"}:
                r.continue_()
            else:
                log.blocked.append(url)
                r.abort()

        page.route("**/*", route)
    return context, page, log


def output_text(locator: Any) -> str:
    """All text under a locator, rendered or not (textContent, not innerText)."""
    return str(locator.evaluate("el => el.textContent || ''"))


def assert_widgets_healthy(root: Any, scope: str = ".jp-OutputArea-output") -> None:
    """No widget placeholder left, no missing model, no view error in any ``scope`` element
    under ``root`` (a page, or a locator such as one cell)."""
    texts = root.locator(scope).evaluate_all("els => els.map(e => e.textContent || '')")
    joined = "\n".join(texts)
    bad = [marker for marker in WIDGET_FAILURES if marker in joined]
    assert not bad, f"widget front end failed ({bad}):\n{joined[-2000:]}"


# Lab renders tracebacks and UsageErrors as stderr outputs; a widget's own log (a panel showing
# a handler's traceback on purpose) is widget output and is not mistaken for a failed cell.
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def cell_errors(root: Any) -> list[str]:
    """The text of every cell error (traceback or UsageError) under ``root``."""
    texts = root.locator(STDERR_OUTPUT).evaluate_all("els => els.map(e => e.textContent || '')")
    return [t for t in texts if CELL_ERROR.search(t)]


def assert_no_cell_errors(root: Any) -> None:
    """No cell under ``root`` (a page or a locator) ended in a traceback or a UsageError."""
    errors = cell_errors(root)
    assert not errors, "a cell failed:\n" + "\n---\n".join(t[-1500:] for t in errors)


# --------------------------------------------------------------------------------------------
# JupyterLab interactions
# --------------------------------------------------------------------------------------------


def open_in_lab(page: Any, server: NotebookServer, name: str, timeout: float = 60.0) -> None:
    """Open ``name`` in Lab and wait for its kernel: the status bar's ``| Idle``."""
    page.goto(server.url(f"lab/tree/{name}"), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
    # A notebook without kernelspec metadata gets a "Select Kernel" dialog: take the default.
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + timeout
    status = page.locator(".jp-StatusBar-Widget", has_text="| Idle")
    while time.monotonic() < deadline:
        if dialog.count():
            dialog.first.click()
        if status.count():
            return
        page.wait_for_timeout(100)
    bar = page.locator(".jp-StatusBar-panel")
    pytest.fail(
        f"the kernel of {name} never became idle in {timeout:g} s; status bar: "
        f"{output_text(bar.first) if bar.count() else '?'}"
        f"\nserver log:\n{server.log_tail()}"
    )


def run_all(page: Any) -> None:
    """Run > Run All Cells, clicked through the menu bar (command ``runmenu:run-all``)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()


def wait_all_executed(page: Any, timeout: float = 90.0) -> None:
    """Wait until every code cell has an execution count and the kernel is idle again."""

    stalled_since: list[float] = []

    def done() -> bool:
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").evaluate_all(
            "els => els.map(e => (e.textContent || '').trim())"
        )
        if not prompts:
            return False
        finished = all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        idle = page.locator(".jp-StatusBar-Widget", has_text="| Idle").count() > 0
        # Run All stops at the first error and leaves the rest unexecuted: say which error,
        # instead of waiting for cells that will never run. The state must hold for a while,
        # since an error's output can show before the last prompts are updated.
        if idle and not finished and cell_errors(page):
            stalled_since.append(time.monotonic())
            if stalled_since[-1] - stalled_since[0] > 2.0:
                pytest.fail("Run All stopped on a cell error:\n" + cell_errors(page)[0][-2000:])
        else:
            stalled_since.clear()
        return finished and idle

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
            pytest.fail(f"Run All did not finish in {timeout:g} s; prompts: {prompts}")
        page.wait_for_timeout(100)


def cell(page: Any, index: int) -> Any:
    """The ``index``-th code cell of the open notebook."""
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


def received_count(text: str) -> int | None:
    """The N of "received N" in a panel's counters (thousands separators allowed)."""
    match = re.search(r"received\D{0,3}?([\d,_ ]*\d)", text, re.IGNORECASE)
    if not match:
        return None
    return int(re.sub(r"\D", "", match.group(1)))


def save_screenshot(
    target: Any, name: str, readme_name: str | None = None, *, page: Any = None
) -> Path:
    """Save a PNG to tests/artifacts/ (and docs/ when asked to).

    ``target`` is a page, or an element together with its ``page``: the element is scrolled to
    the top of its scroller and the visible part of it is shot, from its top edge down to the
    bottom of the scroller (a live panel can be taller than the window, and an element
    screenshot of a scrolled, windowed notebook comes out clipped or blank).
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if page is None:
        target.screenshot(path=str(path))
    else:
        clip = target.evaluate(
            """el => {
                el.scrollIntoView({block: 'start'});
                let scroller = el.parentElement;
                while (scroller && scroller !== document.body) {
                    const style = getComputedStyle(scroller);
                    if (/(auto|scroll)/.test(style.overflowY)) break;
                    scroller = scroller.parentElement;
                }
                const box = el.getBoundingClientRect();
                const bottom = scroller ? scroller.getBoundingClientRect().bottom
                                        : window.innerHeight;
                return {x: box.left, y: box.top, width: box.width,
                        height: Math.min(box.bottom, bottom) - box.top};
            }"""
        )
        page.wait_for_timeout(200)  # let the scroll settle before the shot
        page.screenshot(path=str(path), clip=clip)
    if readme_name and update_screenshots():
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / readme_name)
    return path
