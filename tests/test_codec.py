"""Serialization rules (``redis_toolkit_nb.codec``), on their own and through real servers.

The rules: JSON values travel as plain JSON and round-trip exactly (``str`` included, as a
JSON string); ``bytes`` go out untouched; on receipt a payload that is not JSON arrives as
text if it is UTF-8, else as bytes. Nothing is ever unpickled or evaluated, and no payload
can stop the subscriber.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import uuid

import pytest
import redis
from conftest import wait_until

from redis_toolkit_nb import RedisOptions, RedisToolkit, SerializationError, decode, encode

JSON_VALUES = [
    {"type": "breaking_news", "n": 1, "ok": True, "none": None, "x": 1.5},
    [1, "two", 3.25, None, False, {"nested": [[], {}]}],
    "hello",
    "",
    "123",  # a string that looks like a number stays a string
    '{"a": 1}',  # a string that looks like JSON stays a string
    "null",
    "  spaced  ",
    "ünïcødé ✓ 漢字 🚀",
    "line\nbreak\ttab\x00nul",
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    3.141592653589793,
    1e-300,
    -0.0,
    True,
    False,
    None,
    {},
    [],
    {"deep": [{"a": [{"b": [{"c": "d"}]}]}]},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_values_round_trip_exactly(value):
    payload = encode(value)
    assert json.loads(payload) == value  # plain JSON any client can read
    back = decode(payload)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)  # -0.0 stays -0.0


def test_str_is_sent_as_a_json_string():
    # The rule that makes str round-trip exactly: "123" must not come back as 123.
    assert encode("hello") == b'"hello"'
    assert encode("123") == b'"123"'


def test_bytes_are_sent_untouched_and_binary_comes_back_as_bytes():
    blob = bytes(range(256))
    assert encode(blob) == blob
    assert encode(bytearray(b"\x00\xff")) == b"\x00\xff"
    assert encode(memoryview(b"\x80abc")) == b"\x80abc"
    assert decode(blob) == blob
    assert decode(b"\xff\xfe\xfd") == b"\xff\xfe\xfd"
    # UTF-8 bytes are indistinguishable from text on the wire: they arrive as str / JSON.
    assert decode(b"plain text") == "plain text"
    assert decode(b'{"a": 1}') == {"a": 1}


def test_raw_mode_returns_the_bytes():
    assert decode(b'{"a": 1}', "raw") == b'{"a": 1}'


def test_other_clients_formats_decode_naturally():
    value = {"id": 7, "data": "Message 7", "tags": ["a"]}
    assert decode(json.dumps(value).encode()) == value  # raw redis-py + json.dumps
    assert decode(json.dumps(value, indent=2).encode()) == value
    assert decode(b"hello world") == "hello world"  # redis-cli PUBLISH ch "hello world"
    assert decode(b"42") == 42  # redis-cli PUBLISH ch 42 is JSON
    assert decode(b"123abc") == "123abc"  # not JSON: text
    assert decode(b'{"a": 1') == '{"a": 1'  # malformed JSON: text, as sent
    assert decode(b"") == ""


def test_what_orjson_knows_is_encoded_as_json():
    when = datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID(int=1)
    assert decode(encode({"at": when, "id": ident, "t": (1, 2)})) == {
        "at": "2024-01-01T10:00:00+00:00",
        "id": str(ident),
        "t": [1, 2],
    }


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, "\ud800", {"k": object()}], ids=["object", "set", "lone", "nest"]
)
def test_values_json_cannot_hold_raise_a_clear_error(value):
    with pytest.raises(SerializationError, match="cannot encode a value of type"):
        encode(value)


@pytest.mark.parametrize("big", [2**70, -(2**65), {"nested": [2**64]}])
def test_integers_over_64_bits_are_refused_on_publish(big):
    """They would arrive as floats (orjson, JavaScript): refuse rather than lose precision."""
    with pytest.raises(SerializationError, match="integer beyond 64 bits.*as a string"):
        encode(big)
    assert encode({"edge": 2**63 - 1, "low": -(2**63)}) == (
        b'{"edge":9223372036854775807,"low":-9223372036854775808}'
    )


def test_integers_over_64_bits_from_other_clients_arrive_as_floats():
    """Documented limit: another client's json.dumps(2**70 + 1) decodes as orjson reads it."""
    back = decode(str(2**70 + 1).encode())
    assert isinstance(back, float) and back == float(2**70)


def test_deeply_nested_payload_is_not_a_crash():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert decode(deep) == deep.decode()  # too deep for a parser: delivered as text
    assert decode(b"[" * 100_000) == "[" * 100_000
    assert decode(b"{" * 100_000) == "{" * 100_000


def test_never_pickle_never_eval():
    import pickle

    pickled = pickle.dumps({"a": 1})
    assert decode(pickled) == pickled  # bytes, never unpickled
    assert decode(b"__import__('os').system('true')") == "__import__('os').system('true')"


# ---- through a real server -------------------------------------------------------------------
@pytest.fixture
def received(server):
    """A subscriber on ``codec:*`` collecting (channel, data); yields (list, toolkit)."""
    got: list = []
    toolkit = RedisToolkit(
        url=server.url, channels=["codec:*"], message_handler=lambda ch, d: got.append((ch, d))
    )
    yield got, toolkit
    toolkit.cleanup()


def test_round_trips_through_the_server(server, received):
    got, sub = received
    with RedisToolkit(url=server.url) as pub:
        for value in JSON_VALUES:
            pub.publisher("codec:values", value)
        pub.publisher("codec:values", bytes(range(256)))
    wait_until(lambda: len(got) == len(JSON_VALUES) + 1, what="every value")
    values = [data for _, data in got]
    assert values[:-1] == JSON_VALUES
    assert [type(v) for v in values[:-1]] == [type(v) for v in JSON_VALUES]
    assert values[-1] == bytes(range(256))
    assert sub.stats.raw_payloads == 1  # only the binary one was not JSON


def test_foreign_publishers_decode_naturally(server, received):
    got, sub = received
    raw = redis.Redis.from_url(server.url)
    raw.publish("codec:raw", json.dumps({"id": 1, "data": "Message 1"}))
    for arg in ("hello world", "42", '{"a": [1, 2]}'):
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "PUBLISH", "codec:cli", arg],
            check=True,
            capture_output=True,
            timeout=10,
        )
    raw.close()
    wait_until(lambda: len(got) == 4, what="four foreign messages")
    assert got == [
        ("codec:raw", {"id": 1, "data": "Message 1"}),
        ("codec:cli", "hello world"),
        ("codec:cli", 42),
        ("codec:cli", {"a": [1, 2]}),
    ]


def test_bad_payloads_do_not_stop_the_subscriber(server, received):
    got, sub = received
    raw = redis.Redis.from_url(server.url)
    bad = [
        b"\xff\xfe not utf-8",
        b'{"a": 1',
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b"\x80" * 1000,
    ]
    for payload in bad:
        raw.publish("codec:bad", payload)
    raw.publish("codec:bad", b'{"after": "bad ones"}')
    raw.close()
    wait_until(lambda: len(got) == len(bad) + 1, what="the bad payloads and the good one")
    assert [d for _, d in got] == [
        b"\xff\xfe not utf-8",
        '{"a": 1',
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        b"\x80" * 1000,
        {"after": "bad ones"},
    ]
    stats = sub.stats
    assert stats.raw_payloads == len(bad)
    assert stats.decode_errors == stats.handler_errors == stats.dropped == 0
    assert stats.connected


def test_json_mode_counts_decode_errors(server, caplog):
    got: list = []
    opts = RedisOptions(decode="json")
    with RedisToolkit(
        url=server.url,
        channels=["strict"],
        message_handler=lambda c, d: got.append(d),
        options=opts,
    ) as sub:
        raw = redis.Redis.from_url(server.url)
        for payload in (b"not json", b'{"ok": 1}', b"\xff", b"[" * 5000, b'"text"'):
            raw.publish("strict", payload)
        raw.close()
        wait_until(lambda: sub.stats.decode_errors == 3 and len(got) == 2, what="3 errors")
        stats = sub.stats
        assert got == [{"ok": 1}, "text"]
        assert stats.received == stats.delivered + stats.decode_errors == 5
    assert "is not JSON (decode='json'" in caplog.text


def test_raw_mode_delivers_bytes(server):
    got: list = []
    opts = RedisOptions(decode="raw")
    with RedisToolkit(
        url=server.url,
        channels=["rawmode"],
        message_handler=lambda c, d: got.append(d),
        options=opts,
    ) as sub:
        with RedisToolkit(url=server.url) as pub:
            pub.publisher("rawmode", {"a": 1})
            pub.publisher("rawmode", b"\xff")
        wait_until(lambda: len(got) == 2, what="two raw messages")
        assert got == [b'{"a":1}', b"\xff"]
        assert sub.stats.decode_errors == 0


# ---- NaN and Infinity are refused on publish -------------------------------------------------
NON_FINITE = [
    (float("nan"), "value", "nan"),
    (float("inf"), "value", "inf"),
    ({"a": [1, -math.inf]}, "value['a'][1]", "-inf"),
    ([{"ok": None}, (2.0, {"deep": {"x": math.nan}})], "value[1][1]['deep']['x']", "nan"),
    ({7: {"k": math.inf}}, "value[7]['k']", "inf"),
]


@pytest.mark.parametrize(("value", "where", "what"), NON_FINITE, ids=repr)
def test_nan_and_infinity_are_refused_on_publish_with_the_place(value, where, what):
    """orjson writes NaN and Infinity as ``null``: refuse rather than send a different value."""
    with pytest.raises(SerializationError) as info:
        encode(value)
    message = str(info.value)
    assert f"cannot publish {what} at {where}" in message
    assert "JSON has no NaN or Infinity" in message and "None" in message


def test_nan_in_a_numpy_array_is_refused_with_the_index():
    np = pytest.importorskip("numpy")
    arr = np.zeros((2, 3))
    arr[1, 2] = np.nan
    with pytest.raises(SerializationError, match=r"cannot publish nan at value\['m'\]\[1, 2\]"):
        encode({"m": arr})
    with pytest.raises(SerializationError, match=r"cannot publish inf at value\[0\]"):
        encode([np.float32("inf")])
    with pytest.raises(SerializationError, match=r"cannot publish nan at value\['x'\]:"):
        encode({"x": np.float64("nan")})  # a float subclass
    assert encode({"m": np.zeros(2)}) == b'{"m":[0.0,0.0]}'


def test_values_with_null_in_them_still_publish():
    """The NaN check runs only when ``null`` appears in the output: None is not NaN."""
    assert encode({"none": None, "text": "null", "n": [None, 1.5]}) == (
        b'{"none":null,"text":"null","n":[null,1.5]}'
    )


def test_publisher_and_publish_many_refuse_nan(server, admin):
    with RedisToolkit(url=server.url) as pub:
        with pytest.raises(SerializationError, match=r"cannot publish nan at value\['t'\]"):
            pub.publisher("codec:nan", {"t": math.nan})
        sub = admin.pubsub()
        sub.subscribe("codec:nan-many")
        wait_until(lambda: sub.get_message(timeout=0.05) is not None, what="subscribed")
        values = [{"i": 0}, {"i": None}, {"i": [1.0, math.inf]}, {"i": 3}]
        with pytest.raises(SerializationError) as info:
            pub.publish_many("codec:nan-many", values)
        assert "cannot publish inf at value['i'][1]" in str(info.value)
        assert "message 2 of the batch" in str(info.value)
        admin.publish("codec:nan-many", b"end")  # nothing after the bad value was sent
        got: list = []

        def until_end() -> bool:
            message = sub.get_message(timeout=0.05)
            if message is not None:
                got.append(message["data"])
            return got[-1:] == [b"end"]

        wait_until(until_end, what="the values before the bad one, then the end marker")
        assert got == [b'{"i":0}', b'{"i":null}', b"end"]
        sub.close()


# ---- one decoding table, the same in codec.decode and in the subscriber ---------------------
#: Under decode="json" this payload is a decode error: counted, logged, not delivered.
ERROR = "decode error"
# (what, payload, under "auto", under "json"); under "raw" every payload arrives as sent.
DECODE_TABLE = [
    ("JSON object", b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}, None),
    ("JSON string", b'"hi"', "hi", None),
    ("JSON number", b"42", 42, None),
    ("JSON after a UTF-8 BOM", b'\xef\xbb\xbf{"a": 1}', {"a": 1}, None),
    ("text after a UTF-8 BOM", b"\xef\xbb\xbfhello", "hello", ERROR),
    ("largest 64-bit integer", b"18446744073709551615", 2**64 - 1, None),
    ("integer beyond 64 bits", b"18446744073709551616", float(2**64), None),
    ("1e400 (beyond a double)", b"1e400", "1e400", ERROR),
    ("NaN", b"NaN", "NaN", ERROR),
    ("Infinity", b"Infinity", "Infinity", ERROR),
    ("-Infinity", b"-Infinity", "-Infinity", ERROR),
    ("NaN inside JSON", b'{"x": NaN}', '{"x": NaN}', ERROR),
    ("lone surrogate escape", b'"\\ud800"', '"\\ud800"', ERROR),
    ("non-JSON UTF-8 text", b"hello world", "hello world", ERROR),
    ("malformed JSON", b'{"a": 1', '{"a": 1', ERROR),
    ("nesting deeper than 1024", b"[" * 2000, "[" * 2000, ERROR),
    ("invalid UTF-8", b"\xff\xfe\x00", b"\xff\xfe\x00", ERROR),
    ("empty payload", b"", "", ERROR),
    ("whitespace only", b" \n", " \n", ERROR),
    ("redis-toolkit 0.4.0 None", b"__NONE__", None, None),
    ("redis-toolkit 0.4.0 envelope", b'{"__type__": "int", "__data__": 5}', 5, None),
]
TABLE_IDS = [row[0] for row in DECODE_TABLE]


def _expected(row: tuple, mode: str) -> object:
    _, payload, auto, strict = row
    if mode == "raw":
        return payload
    if mode == "json":
        return auto if strict is None else strict
    return auto


def _same(got: object, want: object) -> bool:
    return type(got) is type(want) and got == want


@pytest.mark.parametrize("mode", ["auto", "json", "raw"])
@pytest.mark.parametrize("row", DECODE_TABLE, ids=TABLE_IDS)
def test_decoding_table(row, mode):
    want = _expected(row, mode)
    if want is ERROR:
        with pytest.raises(SerializationError, match="not JSON"):
            decode(row[1], mode)
    else:
        assert _same(decode(row[1], mode), want)


@pytest.mark.parametrize("mode", ["auto", "json", "raw"])
def test_decoding_table_through_a_subscriber(server, mode):
    """Every row, published by a plain client, arrives as the table says in each mode."""
    got: list = []
    with RedisToolkit(
        url=server.url,
        channels=[f"table:{mode}"],
        message_handler=lambda c, d: got.append(d),
        options=RedisOptions(decode=mode),
    ) as sub:
        raw = redis.Redis.from_url(server.url)
        for row in DECODE_TABLE:
            raw.publish(f"table:{mode}", row[1])
        raw.close()
        wanted = [_expected(row, mode) for row in DECODE_TABLE]
        delivered = [w for w in wanted if w is not ERROR]
        wait_until(lambda: sub.stats.received == len(DECODE_TABLE), what="every row")
        wait_until(lambda: len(got) == len(delivered), what="the rows that are delivered")
        assert [(type(g), g) for g in got] == [(type(w), w) for w in delivered]
        stats = sub.stats
        assert stats.decode_errors == len(wanted) - len(delivered)
        if mode == "auto":
            # Text and bytes (not JSON) are counted; what the table reads as a value is not.
            assert stats.raw_payloads == sum(
                1 for r in DECODE_TABLE if r[3] is ERROR and isinstance(r[2], (str, bytes))
            )


def test_publish_many_refuses_nan_past_a_chunk_boundary(server, admin):
    """NaN is looked for once a chunk (2,000 commands): a bad value in a later chunk still
    goes out after everything before it and nothing after it."""
    from redis_toolkit_nb._publish import CHUNK

    before = CHUNK + 3
    values = [{"i": k, "maybe": None} for k in range(before)] + [{"x": -math.inf}, {"i": -1}]
    with RedisToolkit(url=server.url) as pub:
        calls = lambda: admin.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)  # noqa: E731
        start = calls()
        with pytest.raises(SerializationError) as info:
            pub.publish_many("codec:nan-chunk", values)
        assert "cannot publish -inf at value['x']" in str(info.value)
        assert f"message {before} of the batch" in str(info.value)
        assert f"the {before} before it were published" in str(info.value)
        assert calls() - start == before  # the server saw exactly those
