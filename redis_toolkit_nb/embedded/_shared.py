"""The shared embedded server: one per user and network namespace, found through a registry.

The registry is a private folder (mode 0700): ``$RTK_EMBEDDED_DIR``, else
``$XDG_RUNTIME_DIR/redis_toolkit_nb``, else ``<tempdir>/rtk-<uid>``, with one sub-folder per
network namespace (``net-<inode>``: a server in another namespace cannot be reached from here).
It holds:

- ``server.json``: where the server listens, its pid, who started it;
- ``start.lock``: taken exclusively to look up or start the server, so two processes racing to
  start it end with exactly one;
- ``users.lock``: every process that uses the server holds a shared ``flock`` on it for its
  lifetime (the kernel drops it however the process ends, SIGKILL included);
- ``watcher.PORT.lock``: held by the watcher process (``_watcher.py``), which runs the server and
  stops it once it can lock ``users.lock`` exclusively, that is once no user process is left.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..exceptions import EmbeddedServerError

try:
    import fcntl
except ImportError:  # Windows: no flock; the shared default then needs REDIS_URL
    fcntl = None  # type: ignore[assignment]
from ._server import START_TIMEOUT, RedisServer, _ping, find_server_binary, free_port

logger = logging.getLogger("redis_toolkit_nb")

ENV_DIR = "RTK_EMBEDDED_DIR"
WATCHER = str(Path(__file__).with_name("_watcher.py"))


@dataclass(frozen=True)
class SharedServer:
    """The shared embedded server as its registry entry describes it."""

    host: str
    port: int
    pid: int
    watcher_pid: int
    started_by: int
    binary: str
    started_at: float
    state_dir: str

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the server process exists (a cheap check: no connection is made)."""
        return _pid_alive(self.pid)

    def users(self) -> list[int]:
        """Pids of the processes that hold the users lock (read from ``/proc/locks``; empty
        where it does not exist)."""
        return _lock_holders(Path(self.state_dir) / "users.lock")


def registry_dir() -> Path:
    """The per-user registry folder of this network namespace (not created here)."""
    override = os.environ.get(ENV_DIR)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        root = Path(override)
    elif runtime and os.path.isdir(runtime):
        root = Path(runtime) / "redis_toolkit_nb"
    else:
        root = Path(tempfile.gettempdir()) / f"rtk-{os.getuid()}"
    try:
        namespace = f"net-{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        namespace = "net-default"
    return root / namespace


def _private(path: Path) -> Path:
    """Create ``path`` (and its parent) as this user's 0700 folders; refuse one that another
    user owns or a symlink (a shared tempdir must not let anyone else plant a registry)."""
    for folder in (path.parent, path):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise EmbeddedServerError(
                f"{folder} is not a folder of this user: refusing it as the embedded server's "
                f"registry (set {ENV_DIR} to another folder)"
            )
    os.chmod(path, 0o700)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"  # a zombie is not running


def _lock_holders(path: Path) -> list[int]:
    try:
        inode = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK ADVISORY READ 1234 00:2a:5678 0 EOF"; waiters have "->" after the number.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            pids.append(int(fields[4]))
    return sorted(set(pids))


def _watcher_alive(state_dir: Path, port: int) -> bool:
    """True while the watcher of the server on ``port`` lives (it holds its lock for life)."""
    fd = os.open(state_dir / f"watcher.{port}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read(state_dir: Path) -> SharedServer | None:
    try:
        with open(state_dir / "server.json", encoding="utf-8") as fh:
            return SharedServer(**{**json.load(fh), "state_dir": str(state_dir)})
    except (OSError, ValueError, TypeError):
        return None


def _write(entry: SharedServer) -> None:
    path = Path(entry.state_dir) / "server.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({k: v for k, v in asdict(entry).items() if k != "state_dir"}, fh)
    os.replace(tmp, path)  # readers see the old entry or the new one, never half of one


def _live(state_dir: Path) -> SharedServer | None:
    """The registered server if its watcher lives and it answers PING; a stale entry (dead
    server, dead watcher, a machine restarted since) is removed."""
    entry = _read(state_dir)
    if entry is None:
        return None
    if _watcher_alive(state_dir, entry.port) and _ping(entry.host, entry.port):
        return entry
    (state_dir / "server.json").unlink(missing_ok=True)
    (state_dir / f"watcher.{entry.port}.lock").unlink(missing_ok=True)
    return None


def _start(state_dir: Path, binary: str, timeout: float = START_TIMEOUT) -> SharedServer:
    """Start the watcher (which starts the server) and register the server once it answers."""
    tail = ""
    for _ in range(3):  # another program may take the free port before the server binds it
        port = free_port()
        with open(state_dir / "watcher.log", "wb") as errors:
            watcher = subprocess.Popen(
                [
                    sys.executable or "python3",
                    "-I",
                    "-S",
                    WATCHER,
                    str(state_dir),
                    binary,
                    str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,  # a Ctrl-C in this terminal must not stop it
            )
        assert watcher.stdout is not None
        line = watcher.stdout.readline().strip()  # the server's pid, or "" if it failed
        watcher.stdout.close()
        deadline = time.monotonic() + timeout
        while line and watcher.poll() is None and time.monotonic() < deadline:
            if _ping("127.0.0.1", port):
                entry = SharedServer(
                    "127.0.0.1", port, int(line), watcher.pid, os.getpid(), binary, time.time(),
                    str(state_dir),
                )  # fmt: skip
                _write(entry)
                _watchers.append(watcher)  # reaped by subprocess later; no ResourceWarning
                return entry
            time.sleep(0.02)
        if watcher.poll() is None:
            watcher.terminate()  # it stops its server
        watcher.wait()
        tail = RedisServer._log_tail(str(state_dir / "server.log"))
        if watcher.returncode == 3:
            tail = RedisServer._log_tail(str(state_dir / "watcher.log"))
        if "in use" not in tail:
            break
    raise EmbeddedServerError(f"{Path(binary).name} did not start on 127.0.0.1: {tail}")


_watchers: list[subprocess.Popen[bytes]] = []
_users: dict[str, int] = {}
_default: SharedServer | None = None
_default_lock = threading.Lock()


def _join_users(state_dir: Path) -> None:
    """Hold a shared lock on ``users.lock`` until this process ends (once per process and
    folder). Taken before the start lock: it waits while a watcher stops an unused server."""
    path = state_dir / "users.lock"
    fd = _users.get(str(path))
    if fd is not None:
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return
        except OSError:
            pass
        os.close(fd)  # the folder was removed and made anew: join the new lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _users[str(path)] = fd


def _leave_users() -> None:
    """Drop this process's shared locks (tests only: a real process keeps them for life)."""
    for fd in _users.values():
        os.close(fd)
    _users.clear()


def default_server(reason: str = "no Redis server was found") -> SharedServer:
    """The shared embedded server: attached to if one runs for this user, else started.

    This process then counts as one of its users until it exits; the server stops once no
    user process is left. ``reason`` opens the one line that says where the server is.
    """
    global _default
    with _default_lock:
        if _default is not None and _default.running:
            return _default
        if fcntl is None:
            raise EmbeddedServerError(
                f"{reason}, and the shared embedded server needs POSIX file locks: set "
                "REDIS_URL to your server"
            )
        state_dir = _private(registry_dir())
        _join_users(state_dir)
        with _locked(state_dir / "start.lock"):
            entry = _live(state_dir)
            if entry is None:
                try:
                    binary = find_server_binary()
                except EmbeddedServerError as exc:
                    raise EmbeddedServerError(f"{reason}, and {exc}") from None
                entry = _start(state_dir, binary)
                how = "started the embedded %s at %s (shared; it stops when no process uses it)"
                args: tuple[object, ...] = (Path(entry.binary).name, entry.url)
            else:
                how = "using the embedded %s at %s (started by pid %d)"
                args = (Path(entry.binary).name, entry.url, entry.started_by)
        logger.warning("redis_toolkit_nb: %s; " + how, reason, *args)
        _default = entry
        return entry


def status() -> SharedServer | None:
    """The shared embedded server of this user, or None when none runs."""
    state_dir = registry_dir()
    entry = _read(state_dir) if state_dir.is_dir() else None
    if entry is None or not _watcher_alive(state_dir, entry.port):
        return None
    if not _ping(entry.host, entry.port):
        return None
    return entry


def stop(timeout: float = 10.0) -> SharedServer | None:
    """Stop the shared embedded server now (processes still using it lose their connection;
    their next ``RedisToolkit()`` starts a new one). Returns what was stopped, or None."""
    state_dir = registry_dir()
    if not state_dir.is_dir():
        return None
    with _locked(state_dir / "start.lock"):
        entry = _read(state_dir)
        if entry is None:
            return None
        # Only a live watcher vouches that the pid is still the server's (its child).
        if _watcher_alive(state_dir, entry.port) and _pid_alive(entry.pid):
            os.kill(entry.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(entry.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pid_alive(entry.pid):
                os.kill(entry.pid, signal.SIGKILL)
        (state_dir / "server.json").unlink(missing_ok=True)
        return entry
