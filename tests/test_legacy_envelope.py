"""A fleet moving from the original redis-toolkit 0.4.0: its typed envelopes arrive as values.

0.4.0 publishes every value wrapped (``{"__type__": "int", "__data__": 5}``, ``__NONE__``,
bytes in base64, numpy arrays with dtype and shape). The tests publish with the real 0.4.0
(its serializer, then its own ``publisher()`` against a private server) and check what our
subscriber receives, with ``RedisOptions.legacy_envelopes`` on (the values) and off (the
envelopes as they are); and what a 0.4.0 subscriber receives from our publisher.
"""

from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pytest
import redis
from conftest import wait_until
from redis_toolkit import RedisOptions as OldOptions
from redis_toolkit import RedisToolkit as OldToolkit
from redis_toolkit.utils.serializers import serialize_value

from redis_toolkit_nb import OptionsError, RedisOptions, RedisToolkit, decode
from redis_toolkit_nb._codec import Decoder

# Every kind of value 0.4.0's serializer takes (numpy arrays are checked on their own below).
VALUES = [
    "hello",
    "",
    "ünïcødé ✓ 漢字",
    "__NONE__",
    '{"a": 1}',
    0,
    1,  # 0.4.0's own reader turns 0 and 1 into booleans; they are ints here
    -7,
    2**63 - 1,
    2**70,  # beyond 64 bits: Python's json writes it exactly, and it arrives exactly
    1.5,
    -0.0,
    1e300,
    True,
    False,
    None,
    {"a": 1, "b": [1, 2, {"c": None}], "d": "x"},
    {},
    [1, "two", 3.5, None, True],
    [],
    (1, "two", [3]),
    b"\x00\x01\xff binary",
    b"",
    bytearray(b"\x80\x81"),
    {"blob": b"\xff\xfe", "nested": [b"ok", {"deep": bytearray(b"\x01")}]},
]
NON_FINITE = [math.nan, math.inf, -math.inf, {"x": math.nan, "y": [math.inf]}]
ARRAYS = [np.arange(6, dtype=np.int32).reshape(2, 3), np.array([1.5, np.nan, -np.inf])]


def _same(got: object, want: object) -> bool:
    """Equal and of the same type, all the way down (NaN equal to NaN)."""
    if isinstance(want, np.ndarray):
        return (
            isinstance(got, np.ndarray)
            and (got.dtype, got.shape) == (want.dtype, want.shape)
            and np.array_equal(got, want, equal_nan=want.dtype.kind == "f")
        )
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, float):
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    return got == want


def _expected(value: object) -> object:
    """What a 0.4.0 value arrives as: itself, except that a bytearray at the top level is
    written as plain bytes by 0.4.0 (nested ones keep their own type)."""
    return bytes(value) if isinstance(value, bytearray) else value


@pytest.mark.parametrize("value", VALUES + NON_FINITE, ids=repr)
@pytest.mark.parametrize("mode", ["auto", "json"])
def test_every_0_4_0_envelope_decodes_to_its_value(value, mode):
    payload = serialize_value(value)
    assert _same(decode(payload, mode), _expected(value))


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_with_the_option_off_envelopes_arrive_as_they_are(value):
    payload = serialize_value(value)
    got = decode(payload, "auto", legacy=False)
    if value is None:
        assert got == "__NONE__"
    else:
        assert isinstance(got, dict) and set(got) == {"__type__", "__data__"}
    assert decode(payload, "raw") == payload  # raw never unwraps


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(6, dtype=np.int32).reshape(2, 3),
        np.array([1.5, np.nan, -np.inf]),
        np.array([True, False]),
        np.array(["a", "bc"]),
        np.zeros((0, 2), dtype=np.uint8),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_numpy_envelopes_become_arrays(arr):
    got = decode(serialize_value(arr))
    assert isinstance(got, np.ndarray)
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_an_application_message_that_only_looks_like_an_envelope_is_left_alone():
    """Only the types 0.4.0 writes are unwrapped, and only with exactly its keys."""
    for payload in (
        b'{"__type__": "order", "__data__": {"id": 1}}',  # an app's own tagged message
        b'{"__type__": "int", "__data__": 5, "extra": 1}',
        b'{"__type__": "int", "__data__": "5"}',  # not what 0.4.0 writes for an int
        b'{"__type__": "bytes", "__data__": "not base64!"}',
        b'{"__type__": 1, "__data__": 2}',
        b'{"__type__": "numpy", "__dtype__": "object", "__shape__": [1], "__data__": [1]}',
    ):
        assert decode(payload) == decode(payload, legacy=False)


def test_unsafe_envelopes_are_never_decoded_but_counted_and_logged(caplog):
    decoder = Decoder("auto", legacy=True)
    envelope = {"__type__": "pickle", "__data__": "gASVBQAAAAAAAACMAXiULg=="}
    with caplog.at_level(logging.WARNING, logger="redis_toolkit_nb"):
        assert decoder.unwrap(dict(envelope), b"") == envelope
    assert decoder.unsafe == 1
    assert "needs unpickling" in caplog.text
    # Versions before 0.4.0 pickled values: binary, so they arrive as bytes, never unpickled.
    pickled = pickle.dumps({"__type__": "pickle", "__data__": {1, 2}})
    assert decode(pickled) == pickled


def test_the_option_is_validated():
    assert RedisOptions().legacy_envelopes is True
    with pytest.raises(OptionsError, match="legacy_envelopes"):
        RedisOptions(legacy_envelopes="no")


# ---- through a real server, with 0.4.0's own publisher and subscriber -----------------------
def _old_toolkit(url: str, **kwargs: object) -> OldToolkit:
    return OldToolkit(
        redis=redis.Redis.from_url(url),
        options=OldOptions(is_logger_info=False, log_level="ERROR"),
        **kwargs,
    )


@pytest.mark.parametrize("legacy", [True, False], ids=["option on", "option off"])
def test_a_0_4_0_publisher_reaches_our_subscriber(server, legacy):
    sent = VALUES + NON_FINITE + ARRAYS
    got: list = []
    with RedisToolkit(
        url=server.url,
        channels=["legacy:in"],
        message_handler=lambda c, d: got.append(d),
        options=RedisOptions(legacy_envelopes=legacy),
    ) as sub:
        old = _old_toolkit(server.url)
        try:
            for value in sent:
                old.publisher("legacy:in", value)
        finally:
            old.cleanup()
        wait_until(lambda: len(got) == len(sent), what="every 0.4.0 message")
        assert sub.stats.decode_errors == 0
    if legacy:
        wrong = [(v, g) for v, g in zip(sent, got, strict=True) if not _same(g, _expected(v))]
        assert wrong == []
    else:
        for value, data in zip(sent, got, strict=True):
            if value is None:
                assert data == "__NONE__"
            elif any(v is value for v in NON_FINITE) or value is ARRAYS[1]:
                # Python's json wrote NaN/Infinity into the envelope: not JSON, so text.
                assert isinstance(data, str) and data.startswith('{"__type__": ')
            elif isinstance(value, np.ndarray):
                assert isinstance(data, dict) and data["__type__"] == "numpy"
            else:
                assert isinstance(data, dict) and set(data) == {"__type__", "__data__"}


def test_what_a_0_4_0_subscriber_receives_from_our_publisher(server, admin):
    """Our wire format is plain JSON: 0.4.0's reader takes it as JSON, so JSON values arrive
    as they are; bytes arrive as bytes only when they are not UTF-8 text or JSON."""
    sent = [
        {"a": 1, "b": [1.5, None]},
        [1, "two"],
        (1, 2),
        "hello",
        "__NONE__",
        0,
        1,
        2**63 - 1,
        1.5,
        True,
        None,
        b"\xff\xfe binary",
        b"text bytes",
        b'{"k": 1}',
    ]
    want = [
        {"a": 1, "b": [1.5, None]},
        [1, "two"],
        [1, 2],
        "hello",
        "__NONE__",
        0,
        1,
        2**63 - 1,
        1.5,
        True,
        None,
        b"\xff\xfe binary",
        "text bytes",
        {"k": 1},
    ]
    got: list = []
    old = _old_toolkit(
        server.url, channels=["legacy:out"], message_handler=lambda c, d: got.append(d)
    )
    try:
        wait_until(lambda: admin.pubsub_numsub("legacy:out")[0][1] == 1, what="0.4.0 subscribed")
        with RedisToolkit(url=server.url) as pub:
            for value in sent:
                pub.publisher("legacy:out", value)
        wait_until(lambda: len(got) == len(sent), what="every message at the 0.4.0 subscriber")
    finally:
        old.cleanup()
    assert [(type(g), g) for g in got] == [(type(w), w) for w in want]
