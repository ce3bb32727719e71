"""The watcher of the shared embedded server: it runs the server while any user process lives.

Run as a script, by path, with ``python -I -S`` (standard library only: it must stay small and
never import the toolkit or redis-py)::

    python -I -S _watcher.py STATE_DIR BINARY PORT

It starts the server as its child, prints the server's pid on stdout, then waits for two things:

- the server to exit (a ``stop`` command, a crash): it then removes the registry entry, if it
  still names this server, and exits;
- every user process to be gone: each one holds a shared ``flock`` on ``users.lock`` for its
  lifetime, which the kernel drops however the process ends (SIGKILL included), so an exclusive
  ``flock`` is granted exactly when no user is left. The watcher then stops the server.

While it lives it holds ``watcher.PORT.lock`` exclusively: a registry entry whose watcher lock
is free is stale. On Linux the server also gets ``PR_SET_PDEATHSIG``, so a killed watcher takes its
server down with it instead of leaving it running unwatched.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

TERM_GRACE = 5.0


def _die_with_parent() -> None:
    """In the server's child, before exec: SIGTERM when the watcher dies (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the server has not exited after a grace period."""
    if proc.poll() is None:
        proc.terminate()
    deadline = time.monotonic() + TERM_GRACE
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()


def _forget(state_dir: str, pid: int, own_lock: int, lock_path: str) -> None:
    """Remove the registry entry if it still names this server, and this watcher's lock file
    (under the start lock, so a process starting a new server never sees half of a change)."""
    import json

    with open(os.path.join(state_dir, "start.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(lock_path) and os.stat(lock_path).st_ino == os.fstat(own_lock).st_ino:
            os.unlink(lock_path)  # not a newer watcher's lock for the same port
        path = os.path.join(state_dir, "server.json")
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            return
        if entry.get("pid") == pid:
            os.unlink(path)


def main(argv: list[str]) -> int:
    state_dir, binary, port = argv[1], argv[2], argv[3]
    lock_path = os.path.join(state_dir, f"watcher.{port}.lock")
    watcher_lock = open(lock_path, "a")  # held for life
    deadline = time.monotonic() + 2.0
    while True:  # a status probe may hold it for an instant; a previous watcher longer
        try:
            fcntl.flock(watcher_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                print(f"watcher lock busy: port {port} in use by another watcher", file=sys.stderr)
                return 3
            time.sleep(0.01)
    log = os.path.join(state_dir, "server.log")
    open(log, "w").close()  # this server's log only
    args = [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no", "--dir", state_dir, "--logfile", log]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # single-threaded here: safe
    )
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    print(proc.pid, flush=True)
    sys.stdout.close()

    users = open(os.path.join(state_dir, "users.lock"), "a")  # held for life

    def stop_when_unused() -> None:
        fcntl.flock(users, fcntl.LOCK_EX)  # granted once no user process holds it shared
        _stop(proc)

    threading.Thread(target=stop_when_unused, daemon=True).start()
    proc.wait()
    _forget(state_dir, proc.pid, watcher_lock.fileno(), lock_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
