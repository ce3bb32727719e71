"""Trust under faults at the byte level, and what holds after a call returns.

Each fault is shown to have happened (the proxy cut the link after N bytes, the server's log
says it cut the client off, the server process was frozen) before the recovery is checked:
the subscriber reconnects within a bound, restores channels and patterns, counts the
disconnect and the reconnect, says ``connected`` False while it is not, and ``cleanup()`` is
prompt and leaves no thread behind. Then: no handler call after ``cleanup()`` returns, a
handler raising ``SystemExit`` stops the subscriber visibly, and subscribing stays prompt
however far behind the handler is.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from _proxy import TcpProxy
from conftest import wait_until
from test_faults import FAST, Recorder

from redis_toolkit_nb import RedisOptions, RedisToolkit, active_subscribers


@pytest.fixture(autouse=True)
def _stop_what_a_failed_test_left():
    before = set(active_subscribers())
    yield
    for sub in set(active_subscribers()) - before:
        sub.stop(timeout=1.0)


def _invariant(stats) -> None:
    assert stats.received == (
        stats.delivered + stats.dropped + stats.decode_errors + stats.skipped + stats.pending
    ), stats


def _prompt_cleanup(*toolkits: RedisToolkit, bound: float = 2.0) -> None:
    t0 = time.monotonic()
    for tk in toolkits:
        tk.cleanup()
    elapsed = time.monotonic() - t0
    assert elapsed < bound, f"cleanup() took {elapsed:.2f} s"
    for tk in toolkits:
        if tk.subscriber is not None:
            assert not tk.subscriber.running


# ---- 1. links that end in the middle of a reply ----------------------------------------------
@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(("name", "target"), [("cut:chan", "cut:chan"), ("cut:*", "cut:x")])
def test_link_cut_in_the_middle_of_a_message(server, no_thread_leaks, protocol, name, target):
    rec = Recorder()
    with TcpProxy(server.host, server.port) as proxy:
        sub = RedisToolkit(
            url=f"{proxy.url}?protocol={protocol}",
            channels=[name],
            message_handler=rec,
            options=FAST,
        )
        pub = RedisToolkit(url=server.url)
        try:
            assert pub.publisher(target, "before") == 1
            rec.wait_for((target, "before"))
            big = "x" * 200_000
            sent_before = proxy.downstream_bytes
            proxy.cut_after(100_000)  # half of the next message, then RST both ways

            assert pub.publisher(target, big) == 1

            wait_until(lambda: proxy.resets == 1, what="the proxy cut the link mid-message")
            assert proxy.downstream_bytes - sent_before == 100_000
            wait_until(
                lambda: sub.stats.reconnects == 1 and sub.stats.connected,
                timeout=5,
                what="the reconnect after a cut mid-message",
            )
            stats = sub.stats
            assert stats.disconnects == 1
            assert stats.truncated == 1  # the half message is counted as lost, not hidden
            assert (target, big) not in rec.items
            assert pub.publisher(target, "after") == 1
            rec.wait_for((target, "after"))
            _invariant(sub.stats)
        finally:
            _prompt_cleanup(sub, pub)


def test_reset_under_a_stream_of_4kb_messages(server, no_thread_leaks):
    payload = "y" * 4096
    rec = Recorder()
    stop = threading.Event()
    with TcpProxy(server.host, server.port) as proxy:
        sub = RedisToolkit(url=proxy.url, channels=["stream4k"], message_handler=rec, options=FAST)
        pub = RedisToolkit(url=server.url)

        def produce() -> None:
            while not stop.is_set():
                pub.publish_many("stream4k", [payload] * 50)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait_until(lambda: len(rec.items) >= 2000, what="the stream flowing")
            for cut in range(3):  # the defect showed 2 times in 3: cut three times
                reconnects = sub.stats.reconnects
                assert proxy.reset() == 1
                wait_until(
                    lambda r=reconnects: sub.stats.reconnects == r + 1 and sub.stats.connected,
                    timeout=5,
                    what=f"reconnect {cut + 1}",
                )
                seen = len(rec.items)
                wait_until(lambda s=seen: len(rec.items) > s + 100, what="the stream back")
            assert sub.stats.disconnects == 3
        finally:
            stop.set()
            producer.join()
            _prompt_cleanup(sub, pub)
    _invariant(sub.stats)


def test_real_output_buffer_cut_off(own_server, no_thread_leaks):
    """The server cuts a subscriber that stops reading off at its pub/sub limit, mid-stream."""
    admin = RedisToolkit(url=own_server.url)
    admin.client.config_set("client-output-buffer-limit", "pubsub 1mb 512kb 1")
    release = threading.Event()
    got: list = []

    def slow(channel, data):
        release.wait(30)
        got.append(data)

    # "block" and a small backlog: the reader stops reading once its read-ahead (32 MB) is
    # full, so the server's buffer fills and passes the hard limit.
    opts = FAST.replace(overflow="block", queue_size=100, max_backlog_bytes=1024 * 1024)
    sub = RedisToolkit(url=own_server.url, channels=["flood"], message_handler=slow, options=opts)
    try:
        chunk = ["z" * 4000] * 1000
        log = Path(own_server._dir) / "server.log"

        def cut_off() -> bool:
            return "output buffer" in log.read_text(errors="replace")

        sent = 0
        while not cut_off() and sent < 40:  # up to 160 MB, far more than needed
            admin.publish_many("flood", chunk)
            sent += 1
        wait_until(cut_off, what="the server's log line about the output buffer limit")
        assert admin.client.client_list(_type="pubsub") == []  # the server dropped it
        release.set()
        wait_until(
            lambda: sub.stats.reconnects == 1 and sub.stats.connected,
            timeout=30,
            what="the reconnect after the cut-off",
        )
        stats = sub.stats
        assert stats.disconnects == 1
        admin.client.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        assert admin.publisher("flood", "after the cut-off") == 1
        wait_until(lambda: got[-1:] == ["after the cut-off"], what="delivery after the cut-off")
        _invariant(sub.stats)
    finally:
        release.set()
        _prompt_cleanup(sub, admin, bound=5.0)


def test_frozen_server_then_cleanup_is_prompt(own_server, no_thread_leaks):
    """A frozen server (SIGSTOP): the missing PONG is noticed, and a reconnect stuck in its
    handshake does not hold cleanup() for connect_timeout."""
    opts = FAST.replace(connect_timeout=10.0)
    sub = RedisToolkit(url=own_server.url, channels=["frozen"], message_handler=print, options=opts)
    os.kill(own_server.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: sub.stats.disconnects == 1, timeout=5, what="the frozen link noticed")
        assert not sub.stats.connected
        assert "no reply to PING" in sub.stats.last_error
        time.sleep(0.3)  # a measuring window: the reader is now stuck in a handshake
        _prompt_cleanup(sub, bound=1.5)
    finally:
        os.kill(own_server.pid, signal.SIGCONT)


# ---- 2. nothing is called after cleanup() returns ---------------------------------------------
def test_handler_never_called_after_cleanup_returns(server):
    entries: list[float] = []

    def slow(channel, data):
        entries.append(time.monotonic())
        time.sleep(0.005)

    opts = RedisOptions(subscriber_stop_timeout=0.5)
    sub = RedisToolkit(url=server.url, channels=["late"], message_handler=slow, options=opts)
    total = 700  # more than one batch: the second one is pulled while the handler is busy
    with RedisToolkit(url=server.url) as pub:
        pub.publish_many("late", range(total))
    # The dispatcher parses what it delivers, a batch at a time: all of them are received once
    # the last batch is pulled (5 ms a message: a few seconds).
    wait_until(lambda: sub.stats.received == total, 30, "all of them handed to the dispatcher")
    t0 = time.monotonic()
    sub.cleanup()
    returned = time.monotonic()
    assert returned - t0 < 2.0
    time.sleep(0.3)  # a measuring window: a late call would show up now
    late = [t for t in entries if t > returned]
    assert late == [], f"{len(late)} handler calls after cleanup() returned"
    stats = sub.stats
    _invariant(stats)
    assert stats.pending == 0
    assert stats.delivered == len(entries)
    assert stats.dropped == total - len(entries)  # what was not delivered is counted


def test_cleanup_inside_the_handler_stops_delivery_at_once(server):
    got: list = []
    holder: dict[str, RedisToolkit] = {}

    def handler(channel, data):
        got.append(data)
        if data == 0:
            holder["tk"].cleanup()

    holder["tk"] = sub = RedisToolkit(
        url=server.url, channels=["self-stop"], message_handler=handler
    )
    with RedisToolkit(url=server.url) as pub:
        pub.publish_many("self-stop", range(50))
    wait_until(lambda: not sub.subscriber.running, what="the subscriber stopped")
    time.sleep(0.2)  # a measuring window for late calls
    assert got == [0]
    stats = sub.stats
    _invariant(stats)
    assert stats.delivered == 1 and stats.pending == 0


# ---- 3. a handler that raises SystemExit or KeyboardInterrupt ---------------------------------
@pytest.mark.parametrize("overflow", ["drop_oldest", "block"])
@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_handler_raising_systemexit_stops_visibly(server, caplog, overflow, exc_type):
    caplog.set_level(logging.ERROR, logger="redis_toolkit_nb")
    got: list = []

    def handler(channel, data):
        if data == "stop":
            raise exc_type("the handler says stop")
        got.append(data)

    opts = RedisOptions(overflow=overflow, queue_size=5)
    sub = RedisToolkit(url=server.url, channels=["fatal"], message_handler=handler, options=opts)
    with RedisToolkit(url=server.url) as pub:
        pub.publish_many("fatal", ["a", "stop", *range(300)])
        wait_until(
            lambda: not sub.subscriber.running and not sub.stats.connected,
            timeout=5,
            what="the subscriber stopped",
        )
        stats = sub.stats
        assert got == ["a"]
        assert exc_type.__name__ in stats.last_error
        assert stats.handler_errors == 1 and stats.delivered == 2
        assert not stats.connected
        wait_until(lambda: sub.stats.pending == 0, what="nothing left pending")
        _invariant(sub.stats)
        assert pub.client.pubsub_numsub("fatal") == [(b"fatal", 0)]  # really unsubscribed
    lines = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert lines and exc_type.__name__ in lines[0]
    sub.cleanup()


# ---- 4. subscribe()/unsubscribe() stay prompt behind a backlog ---------------------------------
def test_subscribe_is_prompt_when_the_handler_is_far_behind(server):
    entered = threading.Event()
    release = threading.Event()
    got: list = []

    def slow(channel, data):
        entered.set()
        release.wait(20)
        got.append((channel, data))

    opts = RedisOptions(queue_size=10, subscribe_timeout=3)
    sub = RedisToolkit(url=server.url, channels=["busy"], message_handler=slow, options=opts)
    try:
        with RedisToolkit(url=server.url) as pub:
            pub.publisher("busy", -1)
            assert entered.wait(5)
            pub.publish_many("busy", range(5000))
            wait_until(lambda: sub.stats.unparsed_bytes > 0, what="a backlog behind the queue")
            t0 = time.monotonic()
            sub.subscribe("extra", "extra:*")
            took = time.monotonic() - t0
            assert took < 1.0, f"subscribe() took {took:.2f} s behind a backlog"
            assert pub.publisher("extra", "hello") == 1
            t0 = time.monotonic()
            sub.unsubscribe("extra:*")
            assert time.monotonic() - t0 < 1.0
            release.set()
            wait_until(lambda: len(got) == 5002, what="everything delivered")
        assert [d for c, d in got if c == "busy"] == [-1, *range(5000)]
        assert got[-1] == ("extra", "hello")
        assert sub.stats.dropped == 0
    finally:
        release.set()
        sub.cleanup()


def test_subscribe_from_inside_a_handler(server):
    got: list = []
    holder: dict[str, RedisToolkit] = {}

    def handler(channel, data):
        if data == 0:
            holder["tk"].subscribe("joined:later")  # while 1999 more wait behind it
        got.append((channel, data))

    opts = RedisOptions(queue_size=10, subscribe_timeout=3)
    holder["tk"] = sub = RedisToolkit(
        url=server.url, channels=["inside"], message_handler=handler, options=opts
    )
    try:
        with RedisToolkit(url=server.url) as pub:
            pub.publish_many("inside", range(2000))
            wait_until(lambda: len(got) == 2000, what="every message")
            assert sub.stats.handler_errors == 0
            assert pub.publisher("joined:later", "welcome") == 1
            wait_until(lambda: got[-1] == ("joined:later", "welcome"), what="the new channel")
        assert [d for c, d in got[:2000]] == list(range(2000))
    finally:
        sub.cleanup()


# ---- 5. connected says the truth; the backoff has jitter ---------------------------------------
def test_connected_is_false_from_the_loss_until_resubscribed(own_server):
    opts = FAST.replace(subscriber_retry_delay=1.0)
    names = ["truth:a", "truth:*"]
    sub = RedisToolkit(url=own_server.url, channels=names, message_handler=print, options=opts)
    try:
        assert sub.stats.connected
        own_server.stop()
        wait_until(lambda: sub.stats.disconnects == 1, what="the loss counted")
        assert not sub.stats.connected  # at once, not after the backoff
        for _ in range(20):  # and for as long as the server is away
            assert not sub.stats.connected
            time.sleep(0.02)
        own_server.start()
        snapshots = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = sub.stats
            snapshots.append(stats)
            if stats.connected:
                break
        assert snapshots[-1].connected
        # Whenever it says connected, every subscription is confirmed in the same snapshot.
        for stats in snapshots:
            if stats.connected:
                assert stats.channels == ("truth:a",) and stats.patterns == ("truth:*",)
    finally:
        sub.cleanup()


def test_reconnect_backoff_has_jitter(server):
    sub = RedisToolkit(url=server.url, channels=["jitter"], message_handler=print, options=FAST)
    try:
        backoff = sub.subscriber._reader._backoff
        delays = [backoff.compute(2) for _ in range(50)]
        assert len(set(delays)) > 40  # no two subscribers come back in lockstep
        assert all(0.05 <= d <= 0.2 for d in delays)  # within [base*2**2/2, cap]
    finally:
        sub.cleanup()
