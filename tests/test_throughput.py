"""Behaviour at full speed: bursts delivered whole, overflow counted exactly, bulk publishing.

These check behaviour, not timings: the rates themselves are measured by ``benchmarks/``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from typing import Any

import pytest
import redis
from conftest import wait_until

from redis_toolkit_nb import (
    MessageTooLargeError,
    RedisOptions,
    RedisToolkit,
    SerializationError,
)

PAYLOAD = '{"id":"__rand_int__","sensor":"temperature-01","value":21.5,"unit":"C","ok":true}'


def redis_benchmark(url_port: int, n: int, channel: str) -> None:
    """Publish ``n`` messages as fast as the server takes them: one connection, 64 per write."""
    exe = shutil.which("redis-benchmark")
    if not exe:
        pytest.fail("redis-benchmark is not on PATH (apt-get install redis-tools)")
    cmd = [exe, "-h", "127.0.0.1", "-p", str(url_port), "-c", "1", "-P", "64", "-n", str(n)]
    cmd += ["-r", "1000000", "-q", "publish", channel, PAYLOAD]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def pubsub_client_ids(admin: redis.Redis) -> list[int]:
    return sorted(int(c["id"]) for c in admin.client_list(_type="pubsub"))


def test_burst_is_delivered_whole_in_order_without_disconnect(server, admin):
    """A 204,800-message burst at the server's full speed (several times what any Python
    handler runs at) reaches the handler whole, with the same server connection throughout,
    while sequenced messages on two other channels, published alongside, arrive in order."""
    n = 204_800  # a multiple of 64: redis-benchmark -P 64 publishes exactly this many
    bench = 0
    seqs: dict[str, list[int]] = {"ord:a": [], "ord:b": []}

    def handler(channel: str, data: Any) -> None:
        nonlocal bench
        if channel == "burst":
            bench += 1
        else:
            seqs[channel].append(data["i"])

    per_channel = 20_000
    # The burst arrives faster than the handler runs: the queue holds it (see the benchmark
    # for what the default queue_size=100,000 does with it: drops, counted).
    tk = RedisToolkit(
        url=server.url,
        channels=["burst", "ord:a", "ord:b"],
        message_handler=handler,
        options=RedisOptions(queue_size=n + 2 * per_channel, buffer_size=1000),
    )
    try:
        ids_before = pubsub_client_ids(admin)
        assert len(ids_before) == 1
        publisher = RedisToolkit(url=server.url)
        threads = [
            threading.Thread(
                target=publisher.publish_many,
                args=(ch, ({"i": i} for i in range(per_channel))),
            )
            for ch in seqs
        ]
        for t in threads:
            t.start()
        redis_benchmark(server.port, n, "burst")
        for t in threads:
            t.join(60)
        publisher.cleanup()
        wait_until(
            lambda: bench == n and all(len(s) == per_channel for s in seqs.values()),
            timeout=60,
            what="the whole burst to reach the handler",
        )
        s = tk.stats
        assert s.received == s.delivered == n + 2 * per_channel
        assert (s.dropped, s.disconnects, s.reconnects) == (0, 0, 0)
        # The server saw one subscriber connection throughout: nothing cut it off.
        assert pubsub_client_ids(admin) == ids_before
        for channel, got in seqs.items():
            assert got == list(range(per_channel)), f"{channel} out of order"
        assert s.by_channel["burst"] == n
    finally:
        tk.cleanup()


# Under each policy: the handler is held on message 0; 49 more arrive with room for 10.
POLICY_OUTCOME = {
    # keeps the newest 10: 40..49
    "drop_oldest": ([0, *range(40, 50)], 39),
    # keeps the oldest 10: 1..10
    "drop_newest": ([0, *range(1, 11)], 39),
    # loses nothing: the reader waits for room
    "block": (list(range(50)), 0),
}


@pytest.mark.parametrize("policy", sorted(POLICY_OUTCOME))
def test_slow_handler_overflow_policy_counts_every_drop(server, policy, caplog):
    expected, dropped = POLICY_OUTCOME[policy]
    entered, gate = threading.Event(), threading.Event()
    got: list[int] = []

    def handler(channel: str, data: Any) -> None:
        entered.set()
        gate.wait(30)
        got.append(data)

    tk = RedisToolkit(
        url=server.url,
        channels=["slow"],
        message_handler=handler,
        # No raw backlog: the queue alone absorbs the burst, so the policy applies at once.
        options=RedisOptions(queue_size=10, overflow=policy, max_backlog_bytes=0),
    )
    try:
        sub = tk.subscriber
        assert sub is not None
        with caplog.at_level(logging.WARNING, logger="redis_toolkit_nb"):
            tk.publisher("slow", 0)
            assert entered.wait(10), "the handler never ran"
            assert tk.publish_many("slow", range(1, 50)) == 49
            wait_until(lambda: sub.stats.received == 50, what="all 50 messages read")
            if dropped:
                held = sub.stats
                # One message in the handler, ten waiting (pending counts both), the rest
                # dropped and counted; one consistent snapshot.
                assert (held.received, held.pending, held.dropped, held.delivered) == (
                    50,
                    11,
                    dropped,
                    0,
                )
            gate.set()
            wait_until(lambda: len(got) == len(expected), what="the kept messages delivered")
            wait_until(lambda: sub.stats.pending == 0 and sub.stats.delivered == len(expected))
        s = sub.stats
        assert got == expected
        assert s.dropped == dropped
        assert s.received == s.delivered + s.dropped + s.decode_errors + s.skipped + s.pending
        assert s.disconnects == 0
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "dropped" in r.getMessage()
        ]
        if dropped:
            assert warnings, "a drop must be logged"
            assert policy in warnings[0] and "10 messages behind" in warnings[0]
        else:
            assert not warnings
    finally:
        gate.set()
        tk.cleanup()


def test_publish_many_from_several_threads_all_arrives_in_order(server):
    threads_n, per_thread = 4, 5_000
    got: dict[int, list[int]] = {k: [] for k in range(threads_n)}

    def handler(channel: str, data: Any) -> None:
        got[data["t"]].append(data["i"])

    sub = RedisToolkit(url=server.url, channels=["multi"], message_handler=handler)
    shared = RedisToolkit(url=server.url)  # one toolkit, one client, many threads
    counts: dict[int, int] = {}
    errors: list[BaseException] = []

    def publish(t: int) -> None:
        try:
            counts[t] = shared.publish_many("multi", ({"t": t, "i": i} for i in range(per_thread)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        workers = [threading.Thread(target=publish, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors
        assert counts == {t: per_thread for t in range(threads_n)}
        wait_until(
            lambda: sum(map(len, got.values())) == threads_n * per_thread,
            what="every message from every thread",
        )
        for t, seq in got.items():
            assert seq == list(range(per_thread)), f"thread {t}'s messages out of order"
        assert sub.stats.dropped == 0
    finally:
        shared.cleanup()
        sub.cleanup()


def test_publish_many_returns_the_count_and_keeps_order_across_chunks(server):
    """Values of every kind, over several 2,000-command chunks (written one chunk ahead of
    the replies), arrive exactly as ``publisher()`` would send them, in order."""
    kinds = [{"k": 1}, [1, 2], "text", 7, 2.5, True, None, b"\x00\xffbinary", 2**62]
    values = [kinds[i % len(kinds)] if i % 10 else {"i": i} for i in range(4_500)]
    got: list[Any] = []
    tk = RedisToolkit(
        url=server.url,
        channels=["many"],
        message_handler=lambda ch, data: got.append(data),
        options=RedisOptions(queue_size=10_000),
    )
    try:
        assert tk.publish_many("many", iter(values)) == len(values)
        assert tk.publish_many("many", []) == 0
        wait_until(lambda: len(got) == len(values), what="every value")
        assert got[:20] == values[:20]
        assert [g for g in got if isinstance(g, dict) and "i" in g] == [
            {"i": i} for i in range(0, 4_500, 10)
        ]
        assert got[7] == b"\x00\xffbinary" and got[8] == 2**62
        assert got == values
    finally:
        tk.cleanup()


def test_publish_many_with_nobody_listening_returns_at_once(server):
    """Every reply is 0 when nobody listens; that must not read as 'no reply yet'."""
    tk = RedisToolkit(url=server.url)
    try:
        assert tk.publish_many("nobody", range(5_000)) == 5_000
        assert tk.ping()
    finally:
        tk.cleanup()


def test_publish_many_oversized_value_mid_batch_counts_what_was_published(server):
    """Every value before the oversized one is published (and counted), in order; the
    oversized one and those after it are not."""
    got: list[Any] = []
    tk = RedisToolkit(
        url=server.url,
        channels=["capped-many"],
        message_handler=lambda ch, data: got.append(data),
        options=RedisOptions(max_value_size=1000, queue_size=10_000),
    )
    try:
        values: list[Any] = list(range(4_500))
        values[4_100] = "y" * 2_000
        with pytest.raises(MessageTooLargeError, match="the 4100 before it were published"):
            tk.publish_many("capped-many", values)
        wait_until(lambda: len(got) == 4_100, what="the 4,100 values before it")
        assert got == list(range(4_100))
        # The connection went back to the pool in a clean state: publishing still works.
        assert tk.publish_many("capped-many", [1, 2, 3]) == 3
        wait_until(lambda: len(got) == 4_103)
        assert tk.stats.received == 4_103
    finally:
        tk.cleanup()


def test_burst_beyond_the_queue_waits_unparsed_instead_of_dropping(server):
    """With the default backlog, a handler that falls behind by far more than queue_size loses
    nothing: the reader keeps draining the socket into its raw backlog and parses as room
    frees up (the overflow policy only applies once max_backlog_bytes is reached)."""
    gate = threading.Event()
    got: list[int] = []

    def handler(channel: str, data: Any) -> None:
        gate.wait(30)
        got.append(data)

    tk = RedisToolkit(
        url=server.url,
        channels=["wide"],
        message_handler=handler,
        options=RedisOptions(queue_size=100),
    )
    try:
        sub = tk.subscriber
        assert sub is not None
        assert tk.publish_many("wide", range(20_000)) == 20_000
        wait_until(
            lambda: sub.stats.unparsed_bytes > 0 and sub.stats.pending >= 100,
            what="the queue full and the rest waiting unparsed",
        )
        held = sub.stats
        assert held.dropped == 0 and held.received < 20_000
        gate.set()
        wait_until(lambda: len(got) == 20_000, what="all 20,000 delivered")
        assert got == list(range(20_000))
        s = sub.stats
        assert (s.received, s.delivered, s.dropped, s.pending, s.unparsed_bytes) == (
            20_000,
            20_000,
            0,
            0,
            0,
        )
    finally:
        gate.set()
        tk.cleanup()


def test_publish_many_value_json_cannot_hold_sends_those_before_it(server):
    got: list[Any] = []
    tk = RedisToolkit(url=server.url, channels=["enc"], message_handler=lambda c, d: got.append(d))
    try:
        with pytest.raises(SerializationError, match="the 2 before it were published"):
            tk.publish_many("enc", [1, 2, object(), 4])
        wait_until(lambda: len(got) == 2, what="the two values before the bad one")
        assert tk.publish_many("enc", [5]) == 1
        wait_until(lambda: len(got) == 3)
        assert got == [1, 2, 5]
    finally:
        tk.cleanup()
