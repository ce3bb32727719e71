"""Faults a trusted subscriber survives, on real servers.

Each test first shows the fault really happened (the server's pid changed, CLIENT KILL
killed a client, the proxy reset a connection, the link went silent), then that the
subscriber recovered: reconnects counted, channels *and* patterns restored, and a message
published after recovery arrives. Where recovery is impossible, it fails loudly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import redis
from _proxy import TcpProxy
from conftest import wait_until

from redis_toolkit_nb import (
    RedisOptions,
    RedisServer,
    RedisToolkit,
    Subscriber,
    SubscriptionError,
    ToolkitConnectionError,
    active_subscribers,
)
from redis_toolkit_nb.embedded import free_port

FAST = RedisOptions(subscriber_retry_delay=0.2, health_check_interval=0.5, connect_timeout=2)
NAMES = ["fault:a", "fault:b", "fault:p:*", "fault:q:?"]


@pytest.fixture(autouse=True)
def _stop_what_a_failed_test_left():
    """A fault test that fails half-way must not leave its subscribers running into the next
    test: whatever it started and did not stop is stopped here (a finally for every test)."""
    before = set(active_subscribers())
    yield
    for sub in set(active_subscribers()) - before:
        sub.stop(timeout=1.0)


class Recorder:
    """A handler that records (channel, data) and can wait for a given message."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def __call__(self, channel: str, data: object) -> None:
        with self.lock:
            self.items.append((channel, data))

    def wait_for(self, item: tuple[str, object], timeout: float = 10.0) -> None:
        wait_until(lambda: item in self.items, timeout, f"{item!r} to arrive")


def _assert_restored(sub: RedisToolkit, rec: Recorder, pub: RedisToolkit, tag: str) -> None:
    """Channels and patterns are back, and messages published now arrive on both kinds."""
    wait_until(
        lambda: (
            sub.subscriber.channels == ["fault:a", "fault:b"]
            and sub.subscriber.patterns == ["fault:p:*", "fault:q:?"]
        ),
        what="channels and patterns restored",
    )
    assert pub.publisher("fault:a", {"after": tag}) == 1
    assert pub.publisher("fault:p:x", {"after": tag}) == 1
    assert pub.publisher("fault:q:1", {"after": tag}) == 1
    rec.wait_for(("fault:a", {"after": tag}))
    rec.wait_for(("fault:p:x", {"after": tag}))
    rec.wait_for(("fault:q:1", {"after": tag}))
    stats = sub.stats
    assert stats.connected
    assert stats.reconnects >= 1 and stats.disconnects >= 1


def test_server_restart_mid_stream(own_server, caplog):
    rec = Recorder()
    sub = RedisToolkit(url=own_server.url, channels=NAMES, message_handler=rec, options=FAST)
    pub = RedisToolkit(url=own_server.url)
    for i in range(100):
        pub.publisher("fault:b", i)
    wait_until(lambda: len(rec.items) == 100, what="the first 100 messages")
    pid = own_server.pid

    own_server.restart()

    assert own_server.pid != pid  # a new server process: every connection was cut
    wait_until(lambda: sub.stats.reconnects == 1, what="the reconnect")
    assert sub.stats.disconnects == 1
    assert sub.stats.last_error  # the connection loss, or the refused reconnect after it
    assert "lost its connection (connection lost: server closed the connection)" in caplog.text
    _assert_restored(sub, rec, pub, "restart")
    assert [d for c, d in rec.items[:100]] == list(range(100))
    sub.cleanup()
    pub.cleanup()


def test_client_kill_pubsub(server, admin):
    rec = Recorder()
    sub = RedisToolkit(url=server.url, channels=NAMES, message_handler=rec, options=FAST)
    pub = RedisToolkit(url=server.url)
    assert len(admin.client_list(_type="pubsub")) >= 1

    killed = admin.client_kill_filter(_type="pubsub")

    assert killed >= 1
    wait_until(lambda: sub.stats.reconnects == 1, what="the reconnect")
    _assert_restored(sub, rec, pub, "kill")
    # The server sees exactly one pub/sub client again.
    assert len(admin.client_list(_type="pubsub")) == 1
    sub.cleanup()
    pub.cleanup()


def test_tcp_reset(server):
    rec = Recorder()
    with TcpProxy(server.host, server.port) as proxy:
        sub = RedisToolkit(url=proxy.url, channels=NAMES, message_handler=rec, options=FAST)
        pub = RedisToolkit(url=server.url)
        assert proxy.connections == 1

        assert proxy.reset() == 1

        wait_until(lambda: sub.stats.reconnects == 1, what="the reconnect")
        assert proxy.accepted == 2  # the subscriber came back through the proxy
        assert "connection lost" in (sub.stats.last_error or "")
        assert "reset" in sub.stats.last_error.lower()
        _assert_restored(sub, rec, pub, "reset")
        sub.cleanup()
        pub.cleanup()


def test_link_goes_silent_but_stays_open(server):
    rec = Recorder()
    with TcpProxy(server.host, server.port) as proxy:
        sub = RedisToolkit(url=proxy.url, channels=NAMES, message_handler=rec, options=FAST)
        pub = RedisToolkit(url=server.url)
        pub.publisher("fault:a", "before")
        rec.wait_for(("fault:a", "before"))

        proxy.silence()
        # Published into the dead link: the server queues it, the subscriber never sees it.
        assert pub.publisher("fault:a", "into the void") == 1
        # No FIN, no RST: only the missing PONG can tell. 0.5 s of silence, a PING, 0.5 s
        # without reply: the link is declared dead.
        wait_until(lambda: sub.stats.disconnects == 1, timeout=5, what="the dead link noticed")
        assert "no reply to PING" in (sub.stats.last_error or "")
        assert proxy.connections >= 1  # the proxy never closed anything
        proxy.resume()

        wait_until(lambda: sub.stats.reconnects >= 1, what="the reconnect")
        _assert_restored(sub, rec, pub, "silence")
        assert ("fault:a", "into the void") not in rec.items
        sub.cleanup()
        pub.cleanup()


def test_handler_that_raises_is_logged_counted_and_survived(server, caplog):
    got: list = []

    def handler(channel, data):
        if data == "boom":
            raise RuntimeError("handler exploded on purpose")
        got.append(data)

    with RedisToolkit(url=server.url, channels=["raises"], message_handler=handler) as sub:
        with RedisToolkit(url=server.url) as pub:
            for value in ("one", "boom", "two", "boom", "three"):
                pub.publisher("raises", value)
        wait_until(lambda: got == ["one", "two", "three"], what="the messages after the errors")
        stats = sub.stats
        assert stats.handler_errors == 2
        assert stats.delivered == 5
        failures = sub.subscriber.failures
        assert len(failures) == 2 and failures[0][1] == "raises" and failures[0][2] == "boom"
        assert "RuntimeError: handler exploded on purpose" in failures[0][4]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "the handler error was not logged"
    text = errors[0].getMessage()
    assert "Traceback (most recent call last)" in text
    assert "handler exploded on purpose" in text
    assert "'raises'" in text


@pytest.mark.parametrize(
    ("overflow", "survivors"),
    [("drop_oldest", [0, *range(90, 100)]), ("drop_newest", list(range(11)))],
)
def test_slow_handler_drops_are_counted_exactly(server, caplog, overflow, survivors):
    got: list = []
    entered = threading.Event()
    release = threading.Event()

    def slow(channel, data):
        entered.set()
        release.wait(10)
        got.append(data)

    # No raw backlog: the policy applies as soon as the queue of 10 is full.
    opts = RedisOptions(queue_size=10, overflow=overflow, max_backlog_bytes=0)
    sub = RedisToolkit(url=server.url, channels=["slow"], message_handler=slow, options=opts)
    pub = RedisToolkit(url=server.url)
    pub.publisher("slow", 0)
    assert entered.wait(10)  # the handler holds message 0; the queue is empty
    assert pub.publish_many("slow", range(1, 100)) == 99
    wait_until(lambda: sub.stats.received == 100, what="all 100 read from the socket")
    release.set()
    wait_until(lambda: sub.stats.pending == 0 and len(got) == 11, what="the queue drained")
    stats = sub.stats
    assert got == survivors
    assert stats.dropped == 89
    assert stats.received == stats.delivered + stats.dropped + stats.decode_errors + stats.skipped
    assert stats.disconnects == 0  # the reader kept up; the server never cut it off
    assert "dropped the" in caplog.text and f"overflow={overflow!r}" in caplog.text
    sub.cleanup()
    pub.cleanup()


def test_block_policy_loses_nothing(server):
    got: list = []
    entered = threading.Event()
    release = threading.Event()

    def slow(channel, data):
        entered.set()
        release.wait(10)
        got.append(data)

    opts = RedisOptions(queue_size=5, overflow="block")
    with RedisToolkit(url=server.url, channels=["blk"], message_handler=slow, options=opts) as sub:
        with RedisToolkit(url=server.url) as pub:
            pub.publisher("blk", 0)
            assert entered.wait(10)
            for i in range(1, 200):
                pub.publisher("blk", i)

        # The handler is stuck; the reader holds the rest instead of dropping: unparsed in its
        # backlog, or parsed and waiting for room (counted in received, not yet pending).
        def held_by_reader() -> bool:
            s = sub.stats
            return s.pending >= 1 and (s.unparsed_bytes > 0 or s.received > s.pending)

        wait_until(held_by_reader, what="the reader holding messages for the full queue")
        assert sub.stats.dropped == 0
        release.set()
        wait_until(lambda: len(got) == 200, what="all 200 delivered")
        assert got == list(range(200))
        stats = sub.stats
        assert stats.dropped == 0 and stats.disconnects == 0
        assert stats.received == stats.delivered == 200


def test_handler_blocking_during_stop(server, caplog):
    entered = threading.Event()
    release = threading.Event()

    def stuck(channel, data):
        entered.set()
        release.wait(30)

    sub = RedisToolkit(url=server.url, channels=["stuck"], message_handler=stuck)
    with RedisToolkit(url=server.url) as pub:
        pub.publisher("stuck", 1)
        assert entered.wait(10)
        pub.publisher("stuck", 2)  # queued behind the stuck one
        # Read from the socket: parsed and queued, or waiting unparsed behind the stuck one.
        wait_until(
            lambda: sub.stats.received == 2 or sub.stats.unparsed_bytes > 0,
            what="the second message read",
        )
    t0 = time.monotonic()
    done = sub.subscriber.stop(timeout=0.5)
    elapsed = time.monotonic() - t0
    release.set()
    assert done is False  # it reports that the handler was still running
    assert elapsed < 2.0, f"stop() took {elapsed:.2f} s with a 0.5 s timeout"
    assert "still running" in caplog.text
    stats = sub.stats
    assert stats.dropped == 1  # the queued message is counted, not lost silently
    assert not stats.connected
    sub.cleanup()  # idempotent after a stop that timed out


# ---- ACL -------------------------------------------------------------------------------------
def _acl_server(own_server: RedisServer) -> tuple[redis.Redis, str]:
    admin = redis.Redis.from_url(own_server.url)
    admin.execute_command(
        "ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all", "resetchannels", "&allowed:*"
    )
    return admin, f"redis://alice:alice-pw@{own_server.host}:{own_server.port}/0"


def test_acl_refused_subscription_raises(own_server):
    admin, url = _acl_server(own_server)
    with pytest.raises(SubscriptionError, match="refused to subscribe secret") as info:
        RedisToolkit(url=url, channels=["secret"], message_handler=print)
    assert "NOPERM" in str(info.value)
    assert "alice-pw" not in str(info.value)
    # Mixed with allowed ones in one subscriber: also refused, clearly.
    with RedisToolkit(url=url, channels=["allowed:1"], message_handler=print) as sub:
        with pytest.raises(SubscriptionError, match="secret"):
            sub.subscribe("secret")
        assert sub.subscriber.channels == ["allowed:1"]  # the others are untouched
        assert sub.subscriber.names == ["allowed:1"]
        # Permitted and forbidden names in one call: only the forbidden one is given up, the
        # error says the other was subscribed, and it really keeps receiving.
        with pytest.raises(SubscriptionError, match="allowed:2 subscribed nonetheless"):
            sub.subscribe("allowed:2", "secret")
        wait_until(
            lambda: sub.subscriber.channels == ["allowed:1", "allowed:2"], what="allowed:2 kept"
        )
        assert sub.subscriber.names == ["allowed:1", "allowed:2"]
        assert admin.publish("allowed:2", "1") == 1
        wait_until(lambda: sub.stats.by_channel.get("allowed:2") == 1, what="allowed:2 delivered")
    admin.close()


def test_acl_revoked_then_restored(own_server, caplog):
    admin, url = _acl_server(own_server)
    rec = Recorder()
    opts = RedisOptions(subscriber_retry_delay=0.2)
    sub = RedisToolkit(
        url=url, channels=["allowed:x", "allowed:z"], message_handler=rec, options=opts
    )
    # Revoke allowed:x (keep allowed:z), then cut the connection so the subscriber has to
    # subscribe again (Redis 7 may already drop it on the ACL change; either way it goes).
    admin.execute_command("ACL", "SETUSER", "alice", "resetchannels", "&allowed:z")
    admin.client_kill_filter(_type="pubsub")
    wait_until(lambda: sub.stats.disconnects >= 1, what="the connection cut")
    wait_until(lambda: sub.stats.reconnects >= 1, what="the reconnect")
    wait_until(lambda: "refused" in (sub.stats.last_error or ""), what="the refusal reported")

    # The permitted channel comes back (retried on its own); the revoked one does not.
    wait_until(lambda: sub.stats.channels == ("allowed:z",), what="allowed:z restored alone")
    # Loud: an error in last_error and in the log; honest: it does not claim the channel.
    stats = sub.stats
    assert "NOPERM" in stats.last_error and "allowed:x" in stats.last_error
    assert stats.channels == ("allowed:z",)
    assert sub.subscriber.channels == ["allowed:z"]
    assert "allowed:x" in sub.subscriber.names  # still wanted: it will be retried
    refusals = [r for r in caplog.records if r.levelno >= logging.ERROR and "refused" in r.message]
    assert refusals and "allowed:x" in refusals[0].message
    assert admin.publish("allowed:x", "lost") == 0  # the server agrees: nobody listens
    assert admin.publish("allowed:z", '"still here"') == 1
    rec.wait_for(("allowed:z", "still here"))
    assert "alice-pw" not in caplog.text

    # Restore the permission: the retry (every subscriber_retry_delay) succeeds.
    admin.execute_command("ACL", "SETUSER", "alice", "&allowed:*")
    wait_until(lambda: sub.subscriber.channels == ["allowed:x", "allowed:z"], what="allowed:x back")
    assert admin.publish("allowed:x", '"welcome back"') == 1
    rec.wait_for(("allowed:x", "welcome back"))
    assert ("allowed:x", "lost") not in rec.items
    # Settled: nothing is still counted as refused, so the retries stop.
    wait_until(lambda: not sub.subscriber._reader.subs.refused, what="the refusal settled")
    calls = lambda: admin.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0)  # noqa: E731
    before = calls()
    time.sleep(0.6)  # three retry periods: a retry loop would show up in the server's count
    assert calls() == before, "SUBSCRIBE kept being retried after the refusal was settled"
    sub.cleanup()
    admin.close()


def test_wrong_password(make_server):
    srv = make_server("redis", password="right-pw-123")
    url = f"redis://:wrong-pw-456@{srv.host}:{srv.port}/0"
    t0 = time.monotonic()
    with pytest.raises(ToolkitConnectionError) as info:
        RedisToolkit(url=url, channels=["x"], message_handler=print)
    assert time.monotonic() - t0 < 5
    text = str(info.value)
    assert "auth" in text.lower() or "WRONGPASS" in text
    assert "wrong-pw-456" not in text and "right-pw-123" not in text
    publisher = RedisToolkit(url=url)
    with pytest.raises(ToolkitConnectionError) as info:
        publisher.publisher("x", 1)
    assert "wrong-pw-456" not in str(info.value)
    assert "wrong-pw-456" not in repr(publisher)


def test_server_down_at_start():
    port = free_port()  # nothing listens here
    url = f"redis://127.0.0.1:{port}/0"
    t0 = time.monotonic()
    with pytest.raises(ToolkitConnectionError) as info:
        RedisToolkit(url=url, channels=["x"], message_handler=print)
    assert time.monotonic() - t0 < 3, "a refused connection must fail fast"
    assert f"127.0.0.1:{port}" in str(info.value) or "refused" in str(info.value).lower()
    with pytest.raises(ToolkitConnectionError, match=f"127.0.0.1:{port}"):
        RedisToolkit(url=url).ping()
    with pytest.raises(ToolkitConnectionError, match="cannot publish"):
        RedisToolkit(url=url).publisher("x", 1)
    with pytest.raises(ToolkitConnectionError, match="cannot publish"):
        RedisToolkit(url=url).publish_many("x", [1, 2])


# ---- subscriptions while messages flow -------------------------------------------------------
def test_subscribe_unsubscribe_while_messages_flow(server):
    rec = Recorder()
    sub = RedisToolkit(url=server.url, channels=["steady"], message_handler=rec)
    pub = RedisToolkit(url=server.url)
    stop = threading.Event()
    sent = []

    def produce():
        i = 0
        while not stop.is_set():
            pub.publisher("steady", i)
            sent.append(i)
            i += 1

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        rounds = 0
        while rounds < 15 or len(sent) < 200:  # churn while the steady stream flows
            round_ = rounds
            rounds += 1
            sub.subscribe("churn", "chur?")
            assert pub.publisher("churn", round_) == 2  # channel + pattern
            sub.unsubscribe("churn", "chur?")
            assert sub.subscriber.names == ["steady"]
    finally:
        stop.set()
        producer.join()
    wait_until(lambda: sub.stats.by_channel.get("steady", 0) == len(sent), what="every steady")
    steady = [d for c, d in rec.items if c == "steady"]
    assert steady == sent  # none lost, none reordered
    assert len(sent) >= 200
    assert [d for c, d in rec.items if c == "churn"] == [r for r in range(rounds) for _ in (0, 1)]
    assert sub.stats.disconnects == 0
    sub.cleanup()
    pub.cleanup()


def test_unicode_binary_and_overlapping_pattern_channels(server):
    got: list = []

    def handler(channel, data):
        got.append((channel, data))

    unicode_channel = "ünï:漢字:🚀"
    binary_channel = b"bin:\xff\xfe"
    with RedisToolkit(
        url=server.url,
        channels=[unicode_channel, binary_channel, "over:lap", "over:*", "over:?ap"],
        message_handler=handler,
    ) as sub:
        assert sorted(sub.subscriber.patterns) == ["over:*", "over:?ap"]
        with RedisToolkit(url=server.url) as pub:
            assert pub.publisher(unicode_channel, "ünï ✓") == 1
            assert pub.publisher(binary_channel, b"\x00\xff") == 1
            # One publish, three deliveries: the channel and both patterns match (as Redis
            # does: message + pmessage + pmessage).
            assert pub.publisher("over:lap", {"n": 1}) == 3
        wait_until(lambda: len(got) == 5, what="five deliveries")
        assert got[0] == (unicode_channel, "ünï ✓")
        assert got[1] == (binary_channel, b"\x00\xff")  # a non-UTF-8 name stays bytes
        assert got[2:] == [("over:lap", {"n": 1})] * 3
        assert sub.stats.by_pattern == {"over:*": 1, "over:?ap": 1}
        assert sub.stats.by_channel["over:lap"] == 3
        snapshot = sub.subscriber.buffer.snapshot()
        assert sorted(str(m.pattern) for m in snapshot[2:]) == ["None", "over:*", "over:?ap"]


def test_many_concurrent_publishers(server):
    threads_n, per_thread = 8, 400
    got: list = []
    with RedisToolkit(
        url=server.url, channels=["mp:*"], message_handler=lambda c, d: got.append((c, d))
    ) as sub:
        shared = RedisToolkit(url=server.url)
        barrier = threading.Barrier(threads_n)

        def produce(k: int) -> None:
            barrier.wait()
            half = per_thread // 2
            for i in range(half):  # one at a time through the shared pool
                shared.publisher(f"mp:{k}", i)
            shared.publish_many(f"mp:{k}", range(half, per_thread))  # then in bulk

        workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wait_until(lambda: len(got) == threads_n * per_thread, what="every message")
        for k in range(threads_n):
            assert [d for c, d in got if c == f"mp:{k}"] == list(range(per_thread))
        stats = sub.stats
        assert stats.received == stats.delivered == threads_n * per_thread
        assert stats.dropped == 0
        shared.cleanup()


def test_nothing_listening_on_port_is_refused_quickly():
    # Sanity for the fault tests: a closed port really refuses (not a firewall drop).
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", free_port()))


def test_subscriber_direct_use(server):
    client = redis.Redis.from_url(server.url)
    got: list = []
    sub = Subscriber(client, handler=lambda c, d: got.append(d), options=FAST).start(["direct"])
    client.publish("direct", b'{"a": 1}')
    wait_until(lambda: got == [{"a": 1}], what="a message to a bare Subscriber")
    assert sub.stop() is True
    client.close()


def test_a_link_that_dies_right_after_opening_backs_off(own_server):
    """A connection that is cut right after every handshake must not be re-opened in a tight
    loop: the reconnect backoff applies (bounded by subscriber_retry_delay)."""
    admin = redis.Redis.from_url(own_server.url)
    opts = RedisOptions(subscriber_retry_delay=0.4)
    sub = RedisToolkit(url=own_server.url, channels=["flaky"], message_handler=print, options=opts)
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            admin.client_kill_filter(_type="pubsub")
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    try:
        thread.start()
        wait_until(lambda: sub.stats.disconnects >= 1, what="the first cut")
        first = sub.stats.disconnects
        time.sleep(2.0)  # a measuring window: how many times it came back in 2 s
        cuts = sub.stats.disconnects - first
        # Backoff 0.05, 0.1, 0.2, 0.4, 0.4 ... s: about 6 attempts in 2 s, not hundreds.
        assert 1 <= cuts <= 12, f"{cuts} reconnects in 2 s: no backoff"
    finally:
        stop.set()
        thread.join(5)
        sub.cleanup()
        admin.close()
