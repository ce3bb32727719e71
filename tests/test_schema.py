"""Schema per channel and drift: ``RedisOptions.track_schema`` / ``feed.schema()`` follow the
fields and JSON types of real traffic, report what appears, disappears or changes type, and
agree with ``schema_of`` on the captured DataFrame."""

from __future__ import annotations

import json
import time

import pytest
import redis
from conftest import wait_until
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb import (
    OptionsError,
    RedisOptions,
    RedisToolkit,
    Subscriber,
    read_capture,
    schema_of,
)

pd = pytest.importorskip("pandas")

ORDERS = [
    {"id": 1, "qty": 2, "meta": {"by": "a"}},
    {"id": 2, "qty": 3, "meta": {"by": "b"}},
    {"id": 3, "qty": "4", "meta": {"by": "c"}},  # qty: int -> int|str
    {"id": 4, "qty": 5, "meta": {"by": "d"}, "note": "x"},  # note appeared
    {"id": 5, "qty": 6, "meta": {}},  # meta.by disappeared
    {"id": 6, "qty": 7, "meta": {"by": "e"}},  # nothing new
    {"id": 7, "qty": None, "meta": {"by": "f"}},  # qty: int|str -> int|str|null
    {"id": 8, "meta": {"by": "g"}},  # qty disappeared
    {"id": 9, "meta": None},  # meta: object -> object|null (meta.by optional already)
    {"id": 10.5, "meta": {"by": "h"}},  # id: int -> int|float
]
EXPECTED = [
    ("orders", "qty", "type", "int", "int|str"),
    ("orders", "note", "appeared", None, "str"),
    ("orders", "meta.by", "disappeared", "str", None),
    ("orders", "qty", "type", "int|str", "int|str|null"),
    ("orders", "qty", "disappeared", "int|str|null", None),
    ("orders", "meta", "type", "object", "object|null"),
    ("orders", "id", "type", "int", "int|float"),
]


def _events(tracker) -> list[tuple]:
    return [(e.channel, e.field, e.change, e.before, e.after) for e in tracker.events]


def _publish(client: redis.Redis, channel: str, payloads: list, pipeline: bool = False) -> None:
    target = client.pipeline(transaction=False) if pipeline else client
    for payload in payloads:
        target.publish(channel, payload if isinstance(payload, str) else json.dumps(payload))
    if pipeline:
        target.execute()


def test_off_by_default_and_validated():
    assert RedisOptions().track_schema is False
    assert RedisOptions(track_schema=True).track_schema is True
    for bad in (1, "yes", None):
        with pytest.raises(OptionsError, match="track_schema"):
            RedisOptions(track_schema=bad)


def test_drift_on_crafted_traffic(server, admin):
    with RedisToolkit(url=server.url) as tk:
        assert Subscriber(tk.client).schema is None, "no tracker (no cost) when off"
        sub = Subscriber(tk.client, options=RedisOptions(track_schema=True, buffer_size=0))
        sub.start(["orders"])
        try:
            for k, payload in enumerate(ORDERS, 1):  # one at a time: distinct times
                _publish(admin, "orders", [payload])
                wait_until(lambda k=k: sub.stats.delivered == k, 5, f"message {k}")
            assert _events(sub.schema) == EXPECTED
            rows = {r[1]: r for r in sub.schema.rows()}
            assert list(rows) == ["id", "qty", "meta", "meta.by", "note"], "order first seen"
            _, _, types, count, present, null_rate, first, last = rows["qty"]
            assert (types, count, present) == ("int|str|null", 7, 0.7)
            assert null_rate == pytest.approx(1 / 7)
            assert rows["meta"][2:4] == ("object|null", 10) and rows["meta"][5] == 0.1
            assert rows["meta.by"][2:5] == ("str", 8, 0.8)
            assert rows["note"][3] == 1 and rows["note"][6] == rows["note"][7]
            assert rows["id"][6] < rows["note"][6] < rows["id"][7], "first and last seen"
            assert rows["qty"][7] < rows["id"][7]
            t = sub.schema.totals()
            assert (t.changes, t.appeared, t.disappeared, t.type_changes) == (7, 1, 2, 4)
            assert (t.channels, t.fields) == (1, 5)
        finally:
            sub.stop(2.0)


def test_a_burst_counts_exactly_and_drift_inside_it_is_found_once(server, admin):
    """Batches of hundreds are counted by columns; one odd message in the middle of a burst
    is still found, once, and every count stays exact."""
    opts = RedisOptions(track_schema=True, buffer_size=0)
    with RedisToolkit(url=server.url, channels=["b"], message_handler=None, options=opts) as tk:
        tracker = tk.subscriber.schema
        first = [{"n": k, "ok": True, "tag": None if k % 4 else "t"} for k in range(3000)]
        odd = {"n": [1, 2], "ok": True, "tag": "t", "extra": {"x": 1}}
        after = [{"n": k, "ok": False, "tag": "u"} for k in range(3000)]
        _publish(admin, "b", first, pipeline=True)
        _publish(admin, "b", [*first, odd, *after], pipeline=True)
        wait_until(lambda: tk.stats.delivered == 9001, 10, "the bursts")
        assert _events(tracker) == [
            ("b", "tag", "type", "str", "str|null"),
            ("b", "n", "type", "int", "int|array"),
            ("b", "extra", "appeared", None, "object"),
            ("b", "extra.x", "appeared", None, "int"),
        ]
        rows = {r[1]: r[2:6] for r in tracker.rows()}
        assert rows["n"] == ("int|array", 9001, 1.0, 0.0)
        assert rows["ok"] == ("bool", 9001, 1.0, 0.0)
        nulls = 2 * 2250
        assert rows["tag"][:3] == ("str|null", 9001, 1.0)
        assert rows["tag"][3] == pytest.approx(nulls / 9001)
        assert rows["extra"] == ("object", 1, 1 / 9001, 0.0)
        assert rows["extra.x"][:2] == ("int", 1)


def test_channels_interleaved_in_one_batch_are_kept_apart(server, admin):
    opts = RedisOptions(track_schema=True, buffer_size=0)
    with RedisToolkit(url=server.url, channels=["m.*"], message_handler=None, options=opts) as tk:
        pipe = admin.pipeline(transaction=False)
        for k in range(2000):
            pipe.publish("m.a", json.dumps({"a": k}))
            pipe.publish("m.b", json.dumps({"b": str(k)}))
        pipe.publish("m.b", json.dumps({"b": k}))
        pipe.execute()
        wait_until(lambda: tk.stats.delivered == 4001, 10, "the burst")
        rows = [r[:4] for r in tk.subscriber.schema.rows()]
        assert rows == [("m.a", "a", "int", 2000), ("m.b", "b", "int|str", 2001)]
        assert _events(tk.subscriber.schema) == [("m.b", "b", "type", "str", "int|str")]


def test_payloads_that_are_not_dicts(server, admin):
    opts = RedisOptions(track_schema=True)
    with RedisToolkit(url=server.url, channels=["p"], message_handler=None, options=opts) as tk:
        admin.publish("p", "hello")  # text
        admin.publish("p", "5")  # JSON: an int
        admin.publish("p", b"\xff\xfe")  # not UTF-8: bytes
        admin.publish("p", json.dumps([1, 2]))
        admin.publish("p", json.dumps({"a": 1}))
        wait_until(lambda: tk.stats.delivered == 5, 5, "5 messages")
        tracker = tk.subscriber.schema
        assert [r[1:4] for r in tracker.rows()] == [
            ("(payload)", "int|str|array|object|bytes", 5),
            ("a", "int", 1),
        ]
        assert _events(tracker) == [
            ("p", "(payload)", "type", "str", "int|str"),
            ("p", "(payload)", "type", "int|str", "int|str|bytes"),
            ("p", "(payload)", "type", "int|str|bytes", "int|str|array|bytes"),
            ("p", "(payload)", "type", "int|str|array|bytes", "int|str|array|object|bytes"),
            ("p", "a", "appeared", None, "int"),
        ]
        assert "type" not in tracker.json_schema("p"), "bytes: no JSON type describes it"


def test_json_schema_validates_what_was_seen(server, admin):
    jsonschema = pytest.importorskip("jsonschema")
    opts = RedisOptions(track_schema=True)
    with RedisToolkit(
        url=server.url, channels=["orders"], message_handler=None, options=opts
    ) as tk:
        _publish(admin, "orders", ORDERS)
        wait_until(lambda: tk.stats.delivered == len(ORDERS), 5, "the crafted messages")
        schema = tk.subscriber.schema.json_schema("orders")
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object" and schema["required"] == ["id", "meta"]
        assert schema["properties"]["qty"]["type"] == ["integer", "string", "null"]
        assert schema["properties"]["meta"]["properties"]["by"] == {"type": "string"}
        assert schema["properties"]["id"]["type"] == ["integer", "number"]
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for payload in ORDERS:
            validator.validate(payload)
        for unseen in ({"id": 1, "meta": {}, "qty": [1]}, {"meta": {}}, "text"):
            assert not validator.is_valid(unseen), unseen
        with pytest.raises(KeyError, match="no message seen on channel 'nope'"):
            tk.subscriber.schema.json_schema("nope")


def test_too_many_fields_are_counted_not_followed(server, admin):
    opts = RedisOptions(track_schema=True)
    with RedisToolkit(url=server.url, channels=["w"], message_handler=None, options=opts) as tk:
        admin.publish("w", json.dumps({f"k{n}": n for n in range(1500)}))
        admin.publish("w", json.dumps({f"k{n}": n for n in range(1500)}))
        wait_until(lambda: tk.stats.delivered == 2, 5, "2 messages")
        t = tk.subscriber.schema.totals()
        assert (t.fields, t.untracked) == (1000, 1000)


def test_magic_schema_frames_and_panel(shell, admin, tmp_path):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe orders --name feed --max-rows 100\n")
    assert feed.subscriber.schema is not None, "on by default in the notebook"
    feed.panel.refresh()
    assert "schema" not in feed.panel.counters.value, "no line until something drifts"
    _publish(admin, "orders", ORDERS[:3])
    wait_until(lambda: feed.stats.delivered == 3, 5, "3 messages")
    schema = feed.schema()
    assert list(schema.columns) == [
        "channel",
        "field",
        "types",
        "count",
        "present",
        "null_rate",
        "first_seen",
        "last_seen",
    ]
    assert list(schema["field"]) == ["id", "qty", "meta", "meta.by"]
    assert list(schema["types"]) == ["int", "int|str", "object", "str"]
    assert schema["count"].dtype == "int64" and str(schema["first_seen"].dtype).endswith("UTC]")
    changes = feed.schema_changes()
    assert list(changes.columns) == ["time", "channel", "field", "change", "before", "after"]
    assert changes.iloc[0][1:].tolist() == ["orders", "qty", "type", "int", "int|str"]
    feed.panel.refresh()
    html = feed.panel.counters.value
    at = changes["time"].iloc[0].strftime("%H:%M:%S")
    assert f"schema changes 1; last: orders.qty int \u2192 int|str at {at}" in html
    _publish(admin, "orders", ORDERS[3:])
    wait_until(lambda: feed.stats.delivered == len(ORDERS), 5, "the rest")
    assert len(feed.schema_changes()) == len(EXPECTED)
    feed.panel.refresh()
    assert "schema changes 7; last: orders.id int \u2192 int|float" in feed.panel.counters.value
    assert feed.json_schema("orders")["required"] == ["id", "meta"]
    # The captured DataFrame says the same, live and read back from a file.
    for frame in (feed.df, read_capture(feed.export(tmp_path / "c.jsonl"))):
        captured = schema_of(frame)
        pd.testing.assert_frame_equal(captured.schema(), feed.subscriber.schema.schema())
        pd.testing.assert_frame_equal(
            captured.schema_changes(), feed.subscriber.schema.schema_changes()
        )
        assert captured.json_schema("orders") == feed.json_schema("orders")


def test_magic_without_schema(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe nos --name feed --no-schema\n")
    assert feed.subscriber.schema is None
    admin.publish("nos", json.dumps({"a": 1}))
    admin.publish("nos", json.dumps({"a": "x"}))
    wait_until(lambda: feed.stats.delivered == 2, 5, "2 messages")
    feed.panel.refresh()
    assert "schema" not in feed.panel.counters.value
    for call in (feed.schema, feed.schema_changes, lambda: feed.json_schema("nos")):
        with pytest.raises(ValueError, match="without --no-schema"):
            call()


def test_every_tracker_by_batch_counts_what_one_by_one_would(server, admin):
    """A pipelined burst reaches the trackers in batches of hundreds (their column paths):
    sequence gaps inside it, stamps ahead of the clock (negative latency) and the schema
    come out as message-by-message checking finds them."""
    opts = RedisOptions(seq_field="seq", latency_field="ts", track_schema=True, buffer_size=0)
    with RedisToolkit(url=server.url, channels=["all"], message_handler=None, options=opts) as tk:
        sub = tk.subscriber
        ahead = time.time() + 3600  # an hour ahead: negative latency
        numbers = [k for k in range(1, 3001) if k not in (1000, 2000, 2001)]
        payloads = [{"seq": k, "ts": ahead if k % 500 == 0 else time.time()} for k in numbers]
        payloads[1500]["ts"] = True  # not a stamp (a bool is not a number here)
        _publish(admin, "all", payloads, pipeline=True)
        wait_until(lambda: tk.stats.delivered == len(numbers), 10, "the burst")
        t = sub.sequence.totals()
        assert (t.gaps, t.missing, t.duplicates, t.reorders) == (2, 3, 0, 0)
        (row,) = sub.latency.summary()
        negative = sum(1 for k in numbers if k % 500 == 0)
        assert (row.messages, row.negative) == (len(numbers) - 1, negative)
        assert sub.latency.unstamped == 1
        assert 0 <= row.p50 < 5 and row.max < 5
        assert [r[1:4] for r in sub.schema.rows()] == [
            ("seq", "int", len(numbers)),
            ("ts", "float|bool", len(numbers)),
        ]


def test_a_channel_that_starts_with_empty_dicts_is_still_followed():
    """``{}`` first (no field yet), then fields: tracked from their first message on (the
    fast path once looked at a first field that did not exist, and the tracker went blind)."""
    from redis_toolkit_nb import SchemaTracker

    tracker = SchemaTracker()
    tracker.observe_batch([(1.0, "c", None, {}, 2)], "c")
    tracker.observe_batch([(2.0, "c", None, {}, 2), (2.0, "c", None, {"a": 1}, 8)], "c")
    tracker.observe_batch([(3.0, "c", None, {"a": 2}, 8)] * 3, "c")
    assert [(r[1], r[2], r[3]) for r in tracker.rows()] == [("a", "int", 4)]
    assert [(e.field, e.change) for e in tracker.events] == [("a", "appeared")]


def test_a_hand_built_capture_in_microseconds_gives_true_times_oldest_first():
    """A DataFrame built by hand (pandas may keep its times in microseconds, not ns): its
    drift events have their real times, listed oldest first across channels."""
    import pandas as pd

    from redis_toolkit_nb import gaps_of, schema_of

    t0 = pd.Timestamp("2026-11-30 10:00:00", tz="UTC")
    rows = [
        (t0, "a", {"x": 1, "seq": 1}),
        (t0 + pd.Timedelta(seconds=1), "b", {"y": 1}),
        (t0 + pd.Timedelta(seconds=2), "b", {"y": "s"}),
        (t0 + pd.Timedelta(seconds=3), "a", {"x": "s", "seq": 3}),
    ]
    frame = pd.DataFrame(rows, columns=["time", "channel", "data"])
    frame["time"] = frame["time"].dt.as_unit("us")
    changes = schema_of(frame).schema_changes()
    assert list(zip(changes["channel"], changes["field"], strict=True)) == [("b", "y"), ("a", "x")]
    assert list(changes["time"]) == [t0 + pd.Timedelta(seconds=2), t0 + pd.Timedelta(seconds=3)]
    (gap,) = gaps_of(frame, "seq").table().itertuples()
    assert gap.time == t0 + pd.Timedelta(seconds=3) and gap.missing == 1
