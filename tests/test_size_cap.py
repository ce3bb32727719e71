"""The publish size cap says what the server will really deliver, and refuses the rest before
sending: a message no subscriber can receive would disconnect every one of them.

The figures are literal on purpose (measured by ``benchmarks/size_cap.py``): with the default
``client-output-buffer-limit pubsub 32mb`` a subscriber receives up to 29,376,459 bytes on
Redis 7.0 (jemalloc), so the toolkit's bound is 28 MiB - 4 KiB; with ``pubsub 4mb`` it
receives 3,686,348, and the bound is 3.5 MiB - 4 KiB.
"""

from __future__ import annotations

import logging

import pytest
import redis
from conftest import wait_until

from redis_toolkit_nb import MessageTooLargeError, RedisOptions, RedisToolkit

DEFAULT_BOUND = 28 * 1024 * 1024 - 4096  # 29,356,032
BOUND_4MB = 3 * 1024 * 1024 + 512 * 1024 - 4096  # 3,665,920
CHANNEL = "big"
SECRET = "Kq7-not-in-logs"


def _cut_offs(admin: redis.Redis) -> int:
    return int(admin.info("stats").get("client_output_buffer_limit_disconnections", 0))


def _receiver(url: str, got: list) -> RedisToolkit:
    return RedisToolkit(
        url=url,
        channels=[CHANNEL],
        message_handler=lambda channel, data: got.append(data),
        options=RedisOptions(decode="raw"),
    )


def test_default_bound_reaches_a_subscriber_and_one_byte_more_is_refused(own_server):
    admin = redis.Redis.from_url(own_server.url)
    got: list = []
    opts = RedisOptions(max_value_size=DEFAULT_BOUND)  # the largest the option admits
    with _receiver(own_server.url, got) as sub, RedisToolkit(own_server.url, options=opts) as pub:
        payload = b"a" * DEFAULT_BOUND
        assert pub.publisher(CHANNEL, payload) == 1
        wait_until(lambda: got, timeout=30, what="the largest deliverable payload")
        assert got == [payload]  # whole, and the subscriber was not cut off
        assert sub.stats.disconnects == 0
        with pytest.raises(MessageTooLargeError, match=f"over the {DEFAULT_BOUND}-byte cap"):
            pub.publisher(CHANNEL, b"b" * (DEFAULT_BOUND + 1))
    assert _cut_offs(admin) == 0
    admin.close()


def test_option_bound_is_the_default_server_figure():
    assert RedisOptions(max_value_size=DEFAULT_BOUND).max_value_size == DEFAULT_BOUND
    with pytest.raises(ValueError, match="at most 29356032 bytes"):
        RedisOptions(max_value_size=DEFAULT_BOUND + 1)


def test_the_refusal_bound_follows_a_smaller_server_limit(own_server):
    admin = redis.Redis.from_url(own_server.url)
    admin.config_set("client-output-buffer-limit", "pubsub 4mb 2mb 60")
    got: list = []
    opts = RedisOptions(max_value_size=DEFAULT_BOUND)
    with _receiver(own_server.url, got), RedisToolkit(own_server.url, options=opts) as pub:
        with pytest.raises(MessageTooLargeError) as info:
            pub.publisher(CHANNEL, b"x" * (BOUND_4MB + 1))
        text = str(info.value)
        assert f"over the {BOUND_4MB}-byte cap" in text
        assert "client-output-buffer-limit pubsub hard limit 4194304 bytes" in text
        assert f"RedisOptions.max_value_size is {DEFAULT_BOUND}" in text
        assert f"127.0.0.1:{own_server.port}" in text and "it was not sent" in text
        # publish_many refuses the same way, after publishing everything before it.
        big = b"y" * (BOUND_4MB + 1)
        with pytest.raises(MessageTooLargeError, match="the 1 before it were published"):
            pub.publish_many(CHANNEL, [b"first", big, b"never"])
        # Just under the bound: delivered whole.
        payload = b"z" * BOUND_4MB
        assert pub.publisher(CHANNEL, payload) == 1
        wait_until(lambda: len(got) == 2, timeout=20, what="the two messages sent")
        assert got == [b"first", payload]
    assert _cut_offs(admin) == 0
    admin.close()


def test_no_hard_limit_leaves_proto_max_bulk_len(own_server):
    admin = redis.Redis.from_url(own_server.url)
    admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    admin.config_set("proto-max-bulk-len", str(2 * 1024 * 1024))
    opts = RedisOptions(max_value_size=DEFAULT_BOUND)
    with RedisToolkit(own_server.url, options=opts) as pub:
        with pytest.raises(MessageTooLargeError, match="proto-max-bulk-len 2097152 bytes"):
            pub.publisher(CHANNEL, b"x" * (2 * 1024 * 1024 + 1))
        assert pub.publisher(CHANNEL, b"x" * (2 * 1024 * 1024)) == 0
    admin.close()


def test_limits_are_read_once_and_only_for_large_payloads(own_server):
    admin = redis.Redis.from_url(own_server.url)
    admin.config_resetstat()

    def config_calls() -> int:
        stats = admin.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_config"))

    with RedisToolkit(own_server.url) as pub:
        for _ in range(100):
            pub.publisher(CHANNEL, {"small": 1})
        pub.publish_many(CHANNEL, range(1000))
        before = config_calls()
        for _ in range(3):
            pub.publisher(CHANNEL, b"x" * 100_000)
        pub.publish_many(CHANNEL, [b"x" * 100_000] * 3)
        after = config_calls()
    # ``before`` includes this test's own CONFIG RESETSTAT.
    assert before == 1
    assert after - before == 2  # one CONFIG GET of each setting, once per toolkit
    admin.close()


def test_config_refused_falls_back_to_the_default_bound_and_logs_once(own_server, caplog):
    admin = redis.Redis.from_url(own_server.url)
    admin.execute_command(
        "ACL", "SETUSER", "noconf", "on", f">{SECRET}", "~*", "&*", "+@all", "-config"
    )
    admin.config_set("client-output-buffer-limit", "pubsub 4mb 2mb 60")
    url = f"redis://noconf:{SECRET}@127.0.0.1:{own_server.port}/0"
    opts = RedisOptions(max_value_size=DEFAULT_BOUND)
    caplog.set_level(logging.WARNING, logger="redis_toolkit_nb")
    for _ in range(2):
        with RedisToolkit(url, options=opts) as pub:
            # Under the default bound: sent (the server's smaller limit is unknown to it).
            assert pub.publisher(CHANNEL, b"x" * 100_000) == 0
            with pytest.raises(MessageTooLargeError, match=f"over the {DEFAULT_BOUND}-byte"):
                pub.publisher(CHANNEL, b"x" * (DEFAULT_BOUND + 1))
    lines = [r.getMessage() for r in caplog.records if "pub/sub limits" in r.getMessage()]
    assert len(lines) == 1, lines
    assert SECRET not in lines[0] and f"127.0.0.1:{own_server.port}" in lines[0]
    admin.close()
