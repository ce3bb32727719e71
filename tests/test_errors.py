"""One error boundary: whatever redis-py raises reaches the user as a ``ToolkitError`` subclass
with the original in ``__cause__``, a message that says what, where and why, and no password.

The refusals are real: ACL users on a private server (each engine) that lack one permission.
"""

from __future__ import annotations

import pytest
import redis
from conftest import wait_until

from redis_toolkit_nb import (
    PublishError,
    RedisOptions,
    RedisToolkit,
    SubscriptionError,
    ToolkitConnectionError,
    ToolkitError,
)

PASSWORD = "pw-Zq81-never-shown"
CHANNEL = "walk"

#: user -> ACL rules (on top of ``reset on >PASSWORD ~* &*``).
USERS = {
    "no-publish": "+@all -publish",
    "no-ping": "+@all -ping",
    "no-channels": "+@all resetchannels",
    "nothing": "-@all",
}
#: user -> the calls the server refuses (the others must work).
REFUSED = {
    "no-publish": {"publisher", "publish_many"},
    "no-ping": {"ping"},
    "no-channels": {"publisher", "publish_many", "subscribe"},
    "nothing": {"publisher", "publish_many", "ping", "subscribe"},
}


@pytest.fixture
def acl(own_server):
    admin = redis.Redis.from_url(own_server.url)
    for user, rules in USERS.items():
        admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", "~*", "&*", *rules.split()
        )
    yield own_server, admin
    admin.close()


def _url(server, user: str, password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def _check(exc: BaseException, kind: type[ToolkitError], cause: type[BaseException], port: int):
    assert type(exc) is kind, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc.__cause__, cause), repr(exc.__cause__)
    text = f"{exc} {exc!r} {exc.args}"
    assert PASSWORD not in text
    assert f"127.0.0.1:{port}" in str(exc)


@pytest.mark.parametrize("user", sorted(USERS))
def test_every_refusal_is_a_toolkit_error_with_the_original_as_cause(acl, user):
    server, admin = acl
    monitor = admin.pubsub()
    monitor.subscribe(CHANNEL)
    assert monitor.get_message(timeout=5)["type"] == "subscribe"
    refused = REFUSED[user]
    tk = RedisToolkit(url=_url(server, user))
    try:
        if "publisher" in refused:
            with pytest.raises(PublishError) as info:
                tk.publisher(CHANNEL, {"n": 1})
            _check(info.value, PublishError, redis.exceptions.NoPermissionError, server.port)
            assert "refused to publish to 'walk'" in str(info.value)
            assert info.value.published == 0
        else:
            assert tk.publisher(CHANNEL, {"n": 1}) == 1
        if "publish_many" in refused:
            with pytest.raises(PublishError) as info:
                tk.publish_many(CHANNEL, [{"n": 2}, {"n": 3}])
            _check(info.value, PublishError, redis.exceptions.NoPermissionError, server.port)
            assert info.value.published == 0
            assert "(0 published)" in str(info.value)
        else:
            assert tk.publish_many(CHANNEL, [{"n": 2}, {"n": 3}]) == 2
        if "ping" in refused:
            with pytest.raises(ToolkitError) as info:
                tk.ping()
            _check(info.value, ToolkitError, redis.exceptions.NoPermissionError, server.port)
            assert "refused to PING" in str(info.value)
        else:
            assert tk.ping() is True
    finally:
        tk.cleanup()
    # Nothing was published where the toolkit said it was refused: a sentinel from the
    # admin user arrives right after exactly what was accepted.
    admin.publish(CHANNEL, b"sentinel")
    got: list[bytes] = []

    def sentinel_seen() -> bool:
        msg = monitor.get_message(timeout=0.1)
        if msg and msg["type"] == "message":
            got.append(msg["data"])
        return bool(got) and got[-1] == b"sentinel"

    wait_until(sentinel_seen, what="the admin's sentinel")
    monitor.close()
    expected = [] if "publisher" in refused else [b'{"n":1}']
    expected += [] if "publish_many" in refused else [b'{"n":2}', b'{"n":3}']
    assert got == [*expected, b"sentinel"]


@pytest.mark.parametrize("user", ["no-channels", "nothing"])
def test_constructor_with_a_refused_subscriber_raises_a_toolkit_error(acl, user):
    server, _admin = acl
    with pytest.raises(ToolkitError) as info:
        RedisToolkit(
            url=_url(server, user),
            channels=[CHANNEL],
            message_handler=lambda channel, data: None,
            options=RedisOptions(subscribe_timeout=5),
        )
    assert isinstance(info.value, (SubscriptionError, ToolkitConnectionError))
    assert PASSWORD not in f"{info.value} {info.value!r}"


def test_constructor_with_a_refused_subscriber_keeps_the_original_as_cause(acl):
    server, _admin = acl
    with pytest.raises(SubscriptionError) as info:
        RedisToolkit(
            url=_url(server, "no-channels"),
            channels=[CHANNEL],
            message_handler=lambda channel, data: None,
            options=RedisOptions(subscribe_timeout=5),
        )
    assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)


def test_wrong_password_is_a_connection_error_with_the_cause(acl):
    server, _admin = acl
    wrong = "wrong-" + PASSWORD
    tk = RedisToolkit(url=_url(server, "no-ping", wrong))
    try:
        for call in (
            lambda: tk.publisher(CHANNEL, 1),
            lambda: tk.publish_many(CHANNEL, [1]),
            tk.ping,
        ):
            with pytest.raises(ToolkitConnectionError) as info:
                call()
            assert isinstance(info.value.__cause__, redis.AuthenticationError)
            assert "authentication failed" in str(info.value)
            assert wrong not in f"{info.value} {info.value!r}"
            assert f"127.0.0.1:{server.port}" in str(info.value)
    finally:
        tk.cleanup()


def test_unreachable_server_keeps_the_cause():
    tk = RedisToolkit(url="redis://127.0.0.1:1/0", options=RedisOptions(connect_timeout=1))
    try:
        with pytest.raises(ToolkitConnectionError, match="cannot PING at 127.0.0.1:1/0") as info:
            tk.ping()
        assert isinstance(info.value.__cause__, redis.ConnectionError)
    finally:
        tk.cleanup()


def test_invalid_url_keeps_the_cause():
    with pytest.raises(ToolkitConnectionError, match="invalid Redis URL") as info:
        RedisToolkit(url=f"bogus://user:{PASSWORD}@127.0.0.1:1/0")
    assert isinstance(info.value.__cause__, ValueError)
    assert PASSWORD not in f"{info.value} {info.value!r}"
