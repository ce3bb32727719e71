"""No password in any repr, str, error message or log line, with a password-protected server."""

from __future__ import annotations

import logging

import pytest
import redis
from conftest import ENGINES, wait_until

from redis_toolkit_nb import (
    RedisOptions,
    RedisServer,
    RedisToolkit,
    SubscriptionError,
    ToolkitConnectionError,
)

PASSWORD = "Sup3r-S3cret-pw"
WRONG = "Wr0ng-S3cret-pw"


@pytest.fixture(params=sorted(ENGINES))
def locked_server(request: pytest.FixtureRequest):
    binary = ENGINES[request.param]()
    if not binary:
        pytest.fail(f"the {request.param} server binary is missing")
    with RedisServer(binary, password=PASSWORD) as srv:
        yield srv


def _clean(text: str) -> None:
    assert PASSWORD not in text, text
    assert WRONG not in text, text


def test_no_password_anywhere(locked_server, caplog):
    caplog.set_level(logging.DEBUG, logger="redis_toolkit_nb")
    url = locked_server.url
    assert PASSWORD in url  # the test is real: the URL carries the password
    opts = RedisOptions(is_logger_info=True, subscriber_retry_delay=0.2, log_level="DEBUG")

    def failing(channel, data):
        raise ValueError(f"handler failed on {data!r}")

    sub = RedisToolkit(url=url, channels=["sec", "sec:*"], message_handler=failing, options=opts)
    pub = RedisToolkit(url=url, options=opts)
    for obj in (sub, pub, sub.subscriber, locked_server, sub.client):
        _clean(repr(obj))
        _clean(str(obj))
    assert "***" in sub.url and PASSWORD not in sub.url
    _clean(repr(sub.stats))

    # Log lines on a handler error, a reconnect and a refused subscription.
    pub.publisher("sec", "boom")
    wait_until(lambda: sub.stats.handler_errors == 1, what="the handler error")
    admin = redis.Redis.from_url(url)
    assert admin.client_kill_filter(_type="pubsub") >= 1
    wait_until(lambda: sub.stats.reconnects == 1, what="the reconnect")
    admin.execute_command(
        "ACL", "SETUSER", "bob", "on", f">{PASSWORD}", "~*", "+@all", "resetchannels"
    )
    bob_url = f"redis://bob:{PASSWORD}@{locked_server.host}:{locked_server.port}/0"
    with pytest.raises(SubscriptionError) as refused:
        RedisToolkit(url=bob_url, channels=["sec"], message_handler=print, options=opts)
    _clean(str(refused.value))
    _clean(repr(refused.value))
    bob = RedisToolkit(url=bob_url)
    _clean(repr(bob))
    assert "bob:***@" in bob.url
    bob.cleanup()
    admin.close()
    _clean(sub.stats.last_error or "")
    sub.cleanup()
    pub.cleanup()
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for record in caplog.records:
        _clean(record.getMessage())
    _clean(caplog.text)


def test_wrong_password_errors_are_masked(locked_server, caplog):
    url = f"redis://:{WRONG}@{locked_server.host}:{locked_server.port}/0"
    with pytest.raises(ToolkitConnectionError) as info:
        RedisToolkit(url=url, channels=["x"], message_handler=print)
    _clean(str(info.value))
    _clean(repr(info.value))
    toolkit = RedisToolkit(url=url)
    _clean(repr(toolkit))
    with pytest.raises(ToolkitConnectionError) as info:
        toolkit.publisher("x", 1)
    _clean(str(info.value))
    with pytest.raises(ToolkitConnectionError) as info:
        toolkit.ping()
    _clean(str(info.value))
    with pytest.raises(ToolkitConnectionError) as info:
        toolkit.publish_many("x", [1, 2])
    _clean(str(info.value))
    # No password at all against a protected server: a clear error too.
    bare = f"redis://{locked_server.host}:{locked_server.port}/0"
    with pytest.raises(ToolkitConnectionError, match="(?i)auth"):
        RedisToolkit(url=bare, channels=["x"], message_handler=print)
    _clean(caplog.text)


def test_password_in_query_string_is_masked(locked_server):
    url = f"redis://{locked_server.host}:{locked_server.port}/0?password={PASSWORD}"
    with RedisToolkit(url=url) as toolkit:
        assert toolkit.ping()
        _clean(repr(toolkit))
        _clean(toolkit.url)
