"""Lifecycle: cleanup leaves nothing behind (threads, server-side clients), is idempotent,
subscribers live without a reference until cleanup, and an idle subscriber costs no CPU."""

from __future__ import annotations

import gc
import resource
import threading
import time

import redis
from conftest import wait_until

from redis_toolkit_nb import RedisToolkit, active_subscribers


def _pubsub_clients(admin: redis.Redis) -> int:
    return len(admin.client_list(_type="pubsub"))


def _all_clients(admin: redis.Redis) -> int:
    return len(admin.client_list())


def test_twenty_subscribers_leave_no_threads_and_no_server_clients(own_server, no_thread_leaks):
    # A server of its own: on the session's shared one, a connection another test left to the
    # garbage collector may close at any moment and move the exact count checked below.
    server = own_server
    admin = redis.Redis.from_url(server.url)
    pubsub_before = _pubsub_clients(admin)
    clients_before = _all_clients(admin)
    threads_before = threading.active_count()
    toolkits = []
    got: list = []
    for i in range(20):
        toolkits.append(
            RedisToolkit(
                url=server.url,
                channels=[f"life:{i}", "life:all:*"],
                message_handler=lambda c, d: got.append(d),
            )
        )
    assert _pubsub_clients(admin) == pubsub_before + 20
    assert threading.active_count() >= threads_before + 20  # they really ran
    assert toolkits[0].publisher("life:all:x", "hi") == 20
    wait_until(lambda: len(got) == 20, what="one message in each subscriber")

    for toolkit in toolkits:
        toolkit.cleanup()

    assert _pubsub_clients(admin) == pubsub_before
    # The publishing connection went too: only the admin client is left.
    wait_until(lambda: _all_clients(admin) == clients_before, what="every connection closed")
    assert all(not t.subscriber.running for t in toolkits)
    assert not any(t.subscriber in active_subscribers() for t in toolkits)
    admin.close()
    # no_thread_leaks checks the threads on the way out.


def test_cleanup_is_idempotent_close_and_with(server, admin, no_thread_leaks):
    before = _pubsub_clients(admin)
    toolkit = RedisToolkit(url=server.url, channels=["idem"], message_handler=print)
    toolkit.cleanup()
    toolkit.cleanup()
    toolkit.close()
    assert _pubsub_clients(admin) == before

    closed = RedisToolkit(url=server.url, channels=["idem"], message_handler=print)
    closed.close()
    assert not closed.subscriber.running

    with RedisToolkit(url=server.url, channels=["idem"], message_handler=print) as inside:
        assert _pubsub_clients(admin) == before + 1
        assert inside.subscriber.running
    assert not inside.subscriber.running
    assert _pubsub_clients(admin) == before
    inside.cleanup()  # after the with block: still fine

    # A toolkit without a subscriber cleans up too, and a stats read after cleanup works.
    plain = RedisToolkit(url=server.url)
    assert plain.ping()
    plain.cleanup()
    plain.cleanup()
    assert inside.stats.connected is False


def test_subscriber_without_a_reference_keeps_receiving_until_cleanup(server, admin):
    got: list = []

    def start_and_forget() -> None:
        RedisToolkit(
            url=server.url, channels=["orphan"], message_handler=lambda c, d: got.append(d)
        )

    start_and_forget()
    gc.collect()
    with RedisToolkit(url=server.url) as pub:
        for i in range(3):
            assert pub.publisher("orphan", i) == 1
            gc.collect()
        wait_until(lambda: got == [0, 1, 2], what="messages to the unreferenced subscriber")
        orphans = [s for s in active_subscribers() if "orphan" in s.names]
        assert len(orphans) == 1
        assert orphans[0].stop() is True
        assert pub.publisher("orphan", 3) == 0
    assert got == [0, 1, 2]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_idle_subscriber_uses_no_cpu(server):
    toolkits = [
        RedisToolkit(url=server.url, channels=[f"idle:{i}", "idle:*"], message_handler=print)
        for i in range(3)
    ]
    try:
        # Measure the whole process over one idle second (a measurement window, not a wait).
        wall0, cpu0 = time.monotonic(), _cpu_seconds()
        time.sleep(1.0)
        wall, cpu = time.monotonic() - wall0, _cpu_seconds() - cpu0
        share = cpu / wall
        assert share < 0.05, f"3 idle subscribers used {share:.1%} of a core"
        assert all(t.stats.connected for t in toolkits)
    finally:
        for toolkit in toolkits:
            toolkit.cleanup()
