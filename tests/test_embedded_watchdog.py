"""An embedded server does not outlive what it serves, even when a process is SIGKILLed: a
private ``RedisServer(watch_parent=True)`` its owner, the shared default its watcher (and its
last user: test_embedded_shared.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import wait_until

SCRIPT = """
import sys, time
from redis_toolkit_nb.embedded import RedisServer
server = RedisServer(sys.argv[1] if len(sys.argv) > 1 else None, watch_parent=True).start()
print(server.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; read its state.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_server_stops_when_its_owner_is_sigkilled():
    owner = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        assert _alive(pid), "the server should run while its owner lives"
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert owner.returncode == -signal.SIGKILL  # the fault happened: no atexit ran
        wait_until(lambda: not _alive(pid), 10, "the orphaned server to stop")
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.stdout.close()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def test_default_server_is_watched_by_a_process_of_its_own(monkeypatch, tmp_path):
    """The shared default is not tied to the process that started it (others may use it): a
    watcher in a session of its own runs it, and a killed watcher takes its server along
    (no server left running unwatched); the next user then starts a new one."""
    from redis_toolkit_nb import embedded
    from redis_toolkit_nb.embedded import _shared

    monkeypatch.setenv("RTK_EMBEDDED_DIR", str(tmp_path / "registry"))
    monkeypatch.setattr(_shared, "_default", None)
    try:
        server = embedded.default_server()
        assert _alive(server.watcher_pid) and _parent(server.pid) == server.watcher_pid
        assert os.getsid(server.watcher_pid) != os.getsid(0), "a Ctrl-C here must not reach it"
        os.kill(server.watcher_pid, signal.SIGKILL)
        wait_until(lambda: not _alive(server.pid), 10, "the server of the killed watcher to stop")
        again = embedded.default_server()  # the stale entry is replaced
        assert again.pid != server.pid and _alive(again.pid)
        assert embedded.status() == again
    finally:
        embedded.stop()
        _shared._leave_users()
        monkeypatch.setattr(_shared, "_default", None)
