"""The embedded server does not outlive a process that is killed without running atexit."""

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


def test_default_server_watches_its_owner(monkeypatch):
    from redis_toolkit_nb import embedded

    monkeypatch.setattr(embedded, "_default", None)
    server = embedded.default_server()
    try:
        assert server.watch_parent and server._watchdog is not None
        assert server._watchdog.poll() is None
    finally:
        server.cleanup()
        monkeypatch.setattr(embedded, "_default", None)
    assert server._watchdog is None and not server.running
