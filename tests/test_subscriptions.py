"""The subscription state on its own: driven with plain replies, no server, no socket."""

from __future__ import annotations

import threading

import pytest
import redis

from redis_toolkit_nb import SubscriptionError, ToolkitConnectionError
from redis_toolkit_nb._subscriptions import CHANNEL, PATTERN, ReplyError, Subscriptions


@pytest.fixture
def subs():
    woken: list[int] = []
    s = Subscriptions("unit", 1.0, ["s3cret"], wake=lambda: woken.append(1))
    s.woken = woken  # type: ignore[attr-defined]
    return s


def test_wanted_before_the_link_is_sent_on_open_and_connected_waits(subs):
    subs.request("sub", CHANNEL, [b"a", b"b"])
    subs.request("sub", PATTERN, [b"p:*"])
    assert subs.take() == [] and not subs.connected  # nothing sent without a link
    subs.opened()
    assert subs.link_up and not subs.connected  # up, but not yet confirmed
    commands = subs.take()
    assert commands == [
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*2\r\n$10\r\nPSUBSCRIBE\r\n$3\r\np:*\r\n",
    ]
    subs.on_replies([[b"subscribe", b"a", 1], [b"subscribe", b"b", 2]])
    assert not subs.connected  # the pattern is still due
    subs.on_replies([[b"psubscribe", b"p:*", 3]])
    assert subs.connected
    assert subs.confirmed_names(CHANNEL) == ["a", "b"]
    assert not subs.awaiting


def test_lost_clears_confirmed_and_reopen_restores(subs):
    subs.request("sub", CHANNEL, [b"a"])
    subs.opened()
    subs.take()
    subs.on_replies([[b"subscribe", b"a", 1]])
    assert subs.connected
    subs.lost()
    assert not subs.connected and subs.confirmed_names(CHANNEL) == []
    assert subs.names() == ["a"]  # still wanted
    subs.opened()
    assert subs.take() == [b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"]
    assert not subs.connected
    subs.on_replies([[b"subscribe", b"a", 1]])
    assert subs.connected


def test_request_while_up_queues_a_command_and_wakes_the_reader(subs):
    subs.opened()
    subs.request("sub", CHANNEL, [b"x"])
    assert subs.woken == [1] and subs.has_commands and subs.awaiting
    subs.take()
    assert subs.awaiting  # sent, reply due
    subs.on_replies([[b"subscribe", b"x", 1]])
    assert not subs.awaiting


def test_pong_is_not_awaited_and_settles(subs):
    subs.opened()
    subs.ping()
    assert not subs.awaiting  # a PING never forces parsing ahead
    subs.on_replies([b"PONG"])
    subs.ping()
    subs.on_replies([[b"pong", b""]])  # RESP2 PONG while subscribed
    assert subs.connected


def test_a_multi_name_refusal_is_retried_name_by_name(subs):
    subs.opened()
    subs.request("sub", CHANNEL, [b"ok", b"secret"])
    subs.take()
    subs.on_replies(
        [ReplyError("NOPERM this user has no permissions to access one of the channels s3cret")]
    )
    assert subs.take() == [
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nok\r\n",
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nsecret\r\n",
    ]
    subs.on_replies([[b"subscribe", b"ok", 1], ReplyError("NOPERM no permissions")])
    assert subs.refused == {b"secret": "NOPERM no permissions"}
    assert "secret" in subs.last_error and "s3cret" not in subs.last_error
    with pytest.raises(SubscriptionError, match="ok subscribed nonetheless") as info:
        subs.wait([(CHANNEL, b"ok"), (CHANNEL, b"secret")], subscribed=True, timeout=1)
    assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)
    assert subs.names() == ["ok"]  # only the refused name is given up


def test_restore_refusal_lets_connected_turn_true(subs):
    """A refusal while restoring settles the restore: connected, with the name refused."""
    subs.request("sub", CHANNEL, [b"gone"])
    subs.opened()
    subs.take()
    subs.on_replies([ReplyError("NOPERM revoked")])
    assert subs.connected and subs.refused_waiting()
    subs.retry_refused()
    assert subs.take() == [b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\ngone\r\n"]


def test_wait_returns_when_confirmed_from_another_thread(subs):
    subs.opened()
    subs.request("sub", CHANNEL, [b"t"])
    subs.take()
    timer = threading.Timer(0.05, subs.on_replies, [[[b"subscribe", b"t", 1]]])
    timer.start()
    subs.wait([(CHANNEL, b"t")], subscribed=True, timeout=5)
    assert subs.confirmed_names(CHANNEL) == ["t"]


def test_wait_timeout_undoes_the_subscription(subs):
    subs.opened()
    subs.request("sub", CHANNEL, [b"slow"])
    subs.take()
    with pytest.raises(SubscriptionError, match="did not confirm subscribing slow within 0.05 s"):
        subs.wait([(CHANNEL, b"slow")], subscribed=True, timeout=0.05, backlog=lambda: 1234)
    assert subs.names() == []
    assert subs.take() == [b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$4\r\nslow\r\n"]


def test_first_connect_failure_keeps_its_cause(subs):
    subs.request("sub", CHANNEL, [b"a"])
    cause = redis.ConnectionError("Connection refused")
    subs.set_error("cannot connect: Connection refused", cause)
    with pytest.raises(ToolkitConnectionError, match="subscriber unit") as info:
        subs.wait([(CHANNEL, b"a")], subscribed=True, timeout=1, first=True)
    assert info.value.__cause__ is cause


def test_unsubscribe_confirmation(subs):
    subs.opened()
    subs.request("sub", PATTERN, [b"q:*"])
    subs.take()
    subs.on_replies([[b"psubscribe", b"q:*", 1]])
    subs.request("unsub", PATTERN, [b"q:*"])
    subs.take()
    subs.on_replies([[b"punsubscribe", b"q:*", 0]])
    subs.wait([(PATTERN, b"q:*")], subscribed=False, timeout=1)
    assert subs.confirmed_names(PATTERN) == [] and subs.names() == []


def test_a_reply_that_queues_a_command_wakes_the_reader(subs):
    """Replies may be parsed on the dispatcher's thread (it pulls what it delivers): a reply
    that queues a command must wake the reader, or the command waits for the next bytes."""
    subs.opened()
    subs.request("sub", CHANNEL, [b"ok", b"secret"])
    subs.take()
    woken = len(subs.woken)
    subs.on_replies([ReplyError("NOPERM no permissions")])  # retried name by name
    assert subs.has_commands
    assert len(subs.woken) == woken + 1
