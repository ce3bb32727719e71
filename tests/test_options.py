"""``RedisOptions``: the guide's fields, validation with clear errors, the publish size cap."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import wait_until

from redis_toolkit_nb import MessageTooLargeError, OptionsError, RedisOptions, RedisToolkit
from redis_toolkit_nb._options import MAX_VALUE_SIZE_BOUND, PUBSUB_HARD_LIMIT


def test_guide_fields_and_defaults():
    opts = RedisOptions(subscriber_retry_delay=5, is_logger_info=True)
    assert dataclasses.is_dataclass(opts)
    assert opts.subscriber_retry_delay == 5 and opts.is_logger_info is True
    defaults = RedisOptions()
    assert defaults.buffer_size == 1000
    assert defaults.max_value_size <= MAX_VALUE_SIZE_BOUND < PUBSUB_HARD_LIMIT
    assert defaults.overflow == "drop_oldest" and defaults.decode == "auto"


BAD = [
    ("is_logger_info", "yes", "must be True or False"),
    ("log_level", "LOUD", "must be one of DEBUG, INFO"),
    ("max_log_size", 0, "must be a whole number > 0"),
    ("subscriber_retry_delay", -1, "must be a number > 0"),
    ("subscriber_retry_delay", "5", "must be a number > 0"),
    ("subscriber_stop_timeout", 0, "must be a number > 0"),
    ("max_value_size", 1.5, "must be a whole number > 0"),
    # 32 MiB is over what a default server delivers to a subscriber (28 MiB + 16 KiB).
    ("max_value_size", PUBSUB_HARD_LIMIT, "at most 29356032 bytes"),
    ("max_value_size", MAX_VALUE_SIZE_BOUND + 1, "disconnects every subscriber"),
    ("max_connections", 0, "must be a whole number > 0"),
    ("buffer_size", -1, "must be a whole number >= 0"),
    ("buffer_size", True, "must be a whole number >= 0"),
    ("queue_size", 0, "must be a whole number > 0"),
    ("overflow", "explode", "must be one of drop_oldest, drop_newest, block"),
    ("decode", "pickle", "must be one of auto, json, raw"),
    ("health_check_interval", 0, "must be a number > 0"),
    ("subscribe_timeout", None, "must be a number > 0"),
    ("connect_timeout", float("nan"), "must be a number > 0"),
]


@pytest.mark.parametrize(("field", "value", "rule"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_values_raise_options_error_naming_the_field(field, value, rule):
    with pytest.raises(OptionsError) as info:
        RedisOptions(**{field: value})
    text = str(info.value)
    assert f"RedisOptions.{field}={value!r}" in text
    assert rule in text
    assert isinstance(info.value, ValueError)  # also catchable as the builtin


def test_unknown_field_is_a_type_error():
    with pytest.raises(TypeError, match="subscriber_retry_dealy"):
        RedisOptions(subscriber_retry_dealy=5)  # type: ignore[call-arg]


def test_replace_validates():
    opts = RedisOptions()
    assert opts.replace(queue_size=10).queue_size == 10
    with pytest.raises(OptionsError, match="queue_size"):
        opts.replace(queue_size=-5)


def test_options_must_be_redis_options():
    with pytest.raises(TypeError, match="options must be a RedisOptions"):
        RedisToolkit(url="redis://127.0.0.1:1/0", options={"subscriber_retry_delay": 5})


def test_max_value_size_caps_publish_before_sending(server):
    got: list = []
    cap = 1024
    opts = RedisOptions(max_value_size=cap)
    with (
        RedisToolkit(
            url=server.url, channels=["capped"], message_handler=lambda c, d: got.append(d)
        ) as sub,
        RedisToolkit(url=server.url, options=opts) as pub,
    ):
        with pytest.raises(MessageTooLargeError) as info:
            pub.publisher("capped", "x" * cap)  # 1,026 bytes once JSON-quoted
        text = str(info.value)
        assert f"{cap}-byte cap" in text and "max_value_size" in text
        assert "it was not sent" in text
        with pytest.raises(MessageTooLargeError, match="1024-byte cap"):
            pub.publisher("capped", b"\x00" * (cap + 1))
        # publish_many sends every value before the oversized one, then refuses it (and
        # everything after it), and the error says how many went out.
        with pytest.raises(MessageTooLargeError, match="the 1 before it were published"):
            pub.publish_many("capped", ["sent first", "y" * 2000, "never sent"])
        # A payload at the cap exactly goes through.
        assert pub.publisher("capped", b"z" * cap) == 1
        wait_until(lambda: len(got) == 2, what="the two messages that were sent")
        assert got == ["sent first", "z" * cap]
        assert sub.stats.received == 2
