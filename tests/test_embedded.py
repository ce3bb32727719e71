"""The embedded default: no ``REDIS_URL`` and nothing at the default address starts the bundled
Valkey (said in one line), which works and stops once its last user process has exited; an
explicit URL never falls back. (Sharing it between processes: test_embedded_shared.py.)

The shared server on 6379 runs on this machine, so "nothing at the default address" is made
by pointing ``connection.DEFAULT_PORT`` at a free port (in-process or in a subprocess); the
registry of the embedded server is a tmp folder (``RTK_EMBEDDED_DIR``), never the user's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_until

from redis_toolkit_nb import RedisToolkit, ToolkitConnectionError, embedded
from redis_toolkit_nb import _connection as connection
from redis_toolkit_nb.embedded import _shared, bundled_binary, free_port


@pytest.fixture
def nothing_at_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No REDIS_URL, a default port nobody listens on, no default server started yet, a
    registry of this test only; any server the test starts is stopped afterwards."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RTK_EMBEDDED_DIR", str(tmp_path / "registry"))
    monkeypatch.setattr(connection, "DEFAULT_PORT", free_port())
    monkeypatch.setattr(connection, "_resolved_default", None)
    monkeypatch.setattr(_shared, "_default", None)
    yield
    embedded.stop()
    _shared._leave_users()


def test_default_starts_the_bundled_valkey_and_says_so(nothing_at_default, caplog):
    caplog.set_level(logging.INFO, logger="redis_toolkit_nb")
    got: list = []
    sub = RedisToolkit(channels=["emb"], message_handler=lambda c, d: got.append((c, d)))
    pub = RedisToolkit()

    server = _shared._default
    assert server is not None and server.running
    assert Path(server.binary).resolve() == Path(bundled_binary()).resolve()
    assert pub.url == sub.url == server.url  # both toolkits share the one default server
    lines = [r.getMessage() for r in caplog.records if "embedded" in r.getMessage()]
    assert len(lines) == 1, lines  # said once, in one line
    assert "\n" not in lines[0]
    assert "valkey-server" in lines[0] and server.url in lines[0]

    assert pub.publisher("emb", {"hello": "embedded"}) == 1
    wait_until(lambda: got == [("emb", {"hello": "embedded"})], what="a message via Valkey")
    sub.cleanup()
    pub.cleanup()
    # A later toolkit reuses the same server (no second start, no second line).
    with RedisToolkit() as again:
        assert again.url == server.url
    assert _shared._default is server
    assert embedded.status() == server  # what `python -m redis_toolkit_nb.embedded status` shows


def test_explicit_unreachable_url_is_an_error_not_a_fallback(nothing_at_default):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ToolkitConnectionError):
        RedisToolkit(url=url, channels=["x"], message_handler=print)
    with pytest.raises(ToolkitConnectionError):
        RedisToolkit(url=url).ping()
    assert _shared._default is None  # nothing was started behind the user's back


def test_unreachable_redis_url_env_is_an_error_not_a_fallback(nothing_at_default, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ToolkitConnectionError):
        RedisToolkit(channels=["x"], message_handler=print)
    assert _shared._default is None


SCRIPT = textwrap.dedent(
    """
    import time
    from redis_toolkit_nb import _connection as connection, embedded
    from redis_toolkit_nb.embedded import free_port

    connection.DEFAULT_PORT = free_port()  # "nothing at the default address"
    from redis_toolkit_nb import RedisToolkit

    got = []
    sub = RedisToolkit(channels=["emb"], message_handler=lambda c, d: got.append(d))
    RedisToolkit().publisher("emb", {"hello": "embedded"})
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    print("GOT", got)
    print("PID", embedded._shared._default.pid, flush=True)
    # exit without cleanup: the subscriber stops at exit, then the server (its last user left)
    """
)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is not running


def test_embedded_server_stopped_at_interpreter_exit(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["RTK_EMBEDDED_DIR"] = str(tmp_path / "registry")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "GOT [{'hello': 'embedded'}]" in proc.stdout
    pid = int(proc.stdout.split("PID ")[1].split()[0])
    # Its watcher stops it once the kernel has dropped the exited process's lock: just after.
    wait_until(lambda: not _alive(pid), 5, f"the embedded server (pid {pid}) to stop")
    # One line on stderr says what happened; nothing else (no warnings at exit).
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "started the embedded valkey-server" in lines[0]
    assert elapsed < 15


def test_password_protected_server_at_the_default_address_is_used_not_replaced(
    monkeypatch, make_server
):
    """A server that answers -NOAUTH is the one the user means: no embedded fallback, and a
    clear authentication error instead (the password is not known, so it cannot leak)."""
    srv = make_server("redis", password="only-the-user-knows")
    monkeypatch.setattr(connection, "DEFAULT_PORT", srv.port)
    monkeypatch.setattr(connection, "DEFAULT_URL", f"redis://127.0.0.1:{srv.port}/0")
    monkeypatch.setattr(connection, "_resolved_default", None)
    monkeypatch.setattr(_shared, "_default", None)
    assert connection.resolve_url() == f"redis://127.0.0.1:{srv.port}/0"
    assert _shared._default is None, "no embedded server may start"
    with RedisToolkit() as tk, pytest.raises(ToolkitConnectionError, match="(?i)auth"):
        tk.publisher("x", 1)
