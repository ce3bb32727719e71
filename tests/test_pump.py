"""The byte pump on its own: plain bytes in, replies out; no server, no socket."""

from __future__ import annotations

import time

import hiredis
import pytest

from redis_toolkit_nb._pump import FEED, BytePump
from redis_toolkit_nb._subscriptions import ReplyError


def message(channel: bytes, payload: bytes, resp3: bool = False) -> bytes:
    head = b">3\r\n" if resp3 else b"*3\r\n"
    parts = [b"message", channel, payload]
    return head + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def confirm(kind: bytes, name: bytes, count: int) -> bytes:
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n" % (len(kind), kind, len(name), name, count)


FOREVER = float("inf")


@pytest.mark.parametrize("resp3", [False, True])
def test_messages_and_control_replies_come_out_in_order(resp3):
    pump = BytePump()
    stream = (
        confirm(b"subscribe", b"a", 1)
        + message(b"a", b"1", resp3)
        + b"+PONG\r\n"
        + message(b"a", b"2", resp3)
        + b"-NOPERM no permissions\r\n"
    )
    pump.add(123.0, stream)
    msgs, others, t = pump.parse(FOREVER, 100)
    assert [m[2] for m in msgs] == [b"1", b"2"]
    assert msgs[0].__class__ is (hiredis.PushNotification if resp3 else list)
    assert others[0] == [b"subscribe", b"a", 1]
    assert others[1] == b"PONG"
    assert isinstance(others[2], ReplyError)
    assert t == 123.0
    assert pump.size == 0 and not pump.waiting


def test_limit_leaves_the_rest_parsed_in_order():
    pump = BytePump()
    pump.add(1.0, b"".join(message(b"c", b"%d" % i) for i in range(10)))
    first, _, _ = pump.parse(FOREVER, 3)
    assert [m[2] for m in first] == [b"0", b"1", b"2"]
    assert pump.waiting
    rest, _, _ = pump.parse(FOREVER, 100)
    assert [m[2] for m in rest] == [b"%d" % i for i in range(3, 10)]


def test_a_reply_split_across_reads_completes():
    pump = BytePump()
    data = message(b"ch", b"x" * 1000)
    pump.add(1.0, data[:500])
    assert pump.parse(FOREVER, 10) == ([], [], 1.0)
    assert pump.waiting  # half a reply is held
    pump.add(2.0, data[500:])
    msgs, _, t = pump.parse(FOREVER, 10)
    assert msgs == [[b"message", b"ch", b"x" * 1000]] and t == 2.0


def test_large_backlog_is_fed_in_slices():
    pump = BytePump()
    one = message(b"c", b"y" * 100)
    blob = one * (3 * FEED // len(one) + 7)
    pump.add(1.0, blob)
    assert pump.size == len(blob)
    msgs, _, _ = pump.parse(FOREVER, 10)
    assert len(msgs) == 10
    assert 0 < pump.size <= len(blob)  # not everything was fed to find ten replies


def test_until_bounds_the_work():
    pump = BytePump()
    pump.add(1.0, message(b"c", b"z") * 50_000)
    msgs, _, _ = pump.parse(time.monotonic() - 1, 10**9)  # already past: some, not all
    assert 0 < len(msgs) < 50_000


def test_truncated_reply_is_discarded_and_reported():
    """A link that ends mid-reply: the parser would hold the partial reply forever
    (``has_data()`` stays True); discard_partial drops it and says so."""
    pump = BytePump()
    data = message(b"ch", b"complete") + message(b"ch", b"q" * 5000)[:2000]
    pump.add(1.0, data)
    msgs, _, _ = pump.parse(FOREVER, 100)
    assert [m[2] for m in msgs] == [b"complete"]
    assert pump.parse(FOREVER, 100) == ([], [], 1.0)  # nothing more ever completes
    assert pump.waiting
    assert pump.discard_partial() is True
    assert not pump.waiting and pump.size == 0
    assert pump.discard_partial() is False  # nothing left: nothing reported


def test_discard_with_nothing_partial_reports_nothing():
    pump = BytePump()
    pump.add(1.0, message(b"ch", b"whole"))
    pump.parse(FOREVER, 100)
    assert pump.discard_partial() is False
