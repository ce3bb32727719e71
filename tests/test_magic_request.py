"""``%rtk_request CHANNEL PAYLOAD [--timeout S]`` in a real IPython shell, on private servers."""

from __future__ import annotations

import time

import pytest
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb import RedisToolkit


@pytest.fixture
def responder(server, stop_new_subscribers):
    tk = RedisToolkit(url=server.url)

    def answer(data):
        if data == "fail":
            raise LookupError("no such thing")
        return {"echo": data}

    tk.serve("mg:svc", answer)
    deaf = RedisToolkit(tk.client, channels=["mg:deaf"], message_handler=lambda c, d: None)
    yield tk
    deaf.subscriber.stop()
    tk.cleanup()


def test_rtk_request_returns_the_reply(shell, responder):  # noqa: F811
    assert run(shell, '%rtk_request mg:svc {"a": 1}') == {"echo": {"a": 1}}
    shell.user_ns["x_n"] = 7
    # The payload is evaluated in the notebook's namespace (no {var} expansion by IPython).
    assert run(shell, "%rtk_request mg:svc {'n': x_n} --timeout 2") == {"echo": {"n": 7}}
    assert run(shell, "%rtk_request mg:svc plain words") == {"echo": "plain words"}


def test_rtk_request_errors_are_usage_errors(shell, responder):  # noqa: F811
    started = time.monotonic()
    with pytest.raises(UsageError, match="no reply .* within 0.3 s"):
        run(shell, "%rtk_request mg:deaf 1 --timeout 0.3")
    assert time.monotonic() - started < 3
    with pytest.raises(UsageError, match="LookupError: no such thing"):
        run(shell, '%rtk_request mg:svc "fail"')
    with pytest.raises(UsageError, match="usage: %rtk_request"):
        run(shell, "%rtk_request mg:svc")
    with pytest.raises(UsageError, match="usage: %rtk_request"):
        run(shell, "%rtk_request mg:svc 1 --timeout 0")
