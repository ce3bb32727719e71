"""Latency: ``RedisOptions.latency_field`` / ``--latency-field`` measure receive time minus a
publish stamp per channel (p50/p99/max), ``stamp=`` / ``--stamp`` put the stamp in, and
``latency_table`` computes the same from a captured DataFrame."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import redis
from conftest import wait_until
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb import (
    OptionsError,
    RedisOptions,
    RedisToolkit,
    Subscriber,
    latency_table,
    read_capture,
)
from redis_toolkit_nb import aio as rtk_aio

pd = pytest.importorskip("pandas")

COLUMNS = ["channel", "count", "p50_ms", "p99_ms", "max_ms", "negative"]


def _rows(tracker) -> dict[str, tuple]:
    return {r.channel: r for r in tracker.summary()}


def test_off_by_default_and_validated():
    assert RedisOptions().latency_field is None
    assert RedisOptions(latency_field="meta.ts").latency_field == "meta.ts"
    for bad in ("", "a..b", 5):
        with pytest.raises(OptionsError, match="latency_field"):
            RedisOptions(latency_field=bad)


def test_seconds_milliseconds_microseconds_nanoseconds_by_magnitude(server, admin):
    """One stamp half a second old in each unit: every channel measures about 0.5 s."""
    with RedisToolkit(url=server.url) as tk:
        sub = Subscriber(tk.client, options=RedisOptions(latency_field="ts"))
        assert Subscriber(tk.client).latency is None, "no tracker (no cost) when off"
        sub.start(["u.*"])
        try:
            now = time.time() - 0.5
            stamps = {
                "u.s": now,
                "u.s_int": int(now),  # whole seconds: 0.5-1.5 s old
                "u.ms": int(now * 1e3),
                "u.us": int(now * 1e6),
                "u.ns": time.time_ns() - 500_000_000,
            }
            for channel, ts in stamps.items():
                admin.publish(channel, json.dumps({"ts": ts}))
            wait_until(lambda: sub.stats.delivered == 5, 5, "5 messages")
            rows = _rows(sub.latency)
            assert set(rows) == set(stamps)
            for channel in ("u.s", "u.ms", "u.us", "u.ns"):
                assert 0.49 <= rows[channel].p50 < 0.75, (channel, rows[channel])
            assert 0.49 <= rows["u.s_int"].p50 < 1.75
        finally:
            sub.stop(2.0)


def test_percentiles_negatives_and_unstamped_on_crafted_stamps(server, admin):
    opts = RedisOptions(latency_field="ts")
    with RedisToolkit(
        url=server.url, channels=["p", "q"], message_handler=None, options=opts
    ) as tk:
        now = time.time()
        pipe = admin.pipeline(transaction=False)
        for k in range(200):
            pipe.publish("p", json.dumps({"ts": now - (2.0 if k % 50 == 0 else 0.5)}))
        pipe.publish("q", json.dumps({"ts": (now + 3.0) * 1000}))  # a clock 3 s ahead (ms)
        pipe.publish("q", json.dumps({"ts": "2026-11-30T10:00:00Z"}))  # not a number
        pipe.publish("q", json.dumps({"ts": True}))  # not a number either
        pipe.publish("q", "plain text")
        pipe.execute()
        wait_until(lambda: tk.stats.delivered == 204, 5, "204 messages")
        tracker = tk.subscriber.latency
        rows = _rows(tracker)
        p = rows["p"]
        assert p.messages == 200 and p.negative == 0
        assert 0.5 <= p.p50 < 0.75, p  # 196 of 200 were half a second old
        assert 2.0 <= p.p99 < 2.25, p  # the 4 two-second-old ones are the top 2%
        assert 2.0 <= p.max < 2.25, p
        q = rows["q"]
        assert q.messages == 1 and q.negative == 1, "kept, not clamped, and counted"
        assert -3.0 < q.max < -2.75
        assert tracker.unstamped == 3
        assert "unstamped 3" in repr(tracker) and "'ts'" in repr(tracker)


def test_the_window_keeps_the_newest_samples_but_counts_and_max_since_start(server, admin):
    opts = RedisOptions(latency_field="ts")
    sub = Subscriber(redis.Redis.from_url(server.url), options=opts)
    sub.latency.keep = 10  # a small window to see it slide
    sub.start(["w"])
    try:
        now = time.time()
        for k in range(30):
            admin.publish("w", json.dumps({"ts": now - (5.0 if k < 20 else 0.25)}))
        wait_until(lambda: sub.stats.delivered == 30, 5, "30 messages")
        (w,) = sub.latency.summary()
        assert w.messages == 30 and 5.0 <= w.max < 5.5, "count and max since the start"
        assert 0.25 <= w.p99 < 0.5, "percentiles over the newest 10 only"
    finally:
        sub.stop(2.0)


def test_stamp_on_publish_copies_the_dict_and_is_measured(server):
    opts = RedisOptions(latency_field="meta.ts")
    with RedisToolkit(url=server.url, channels=["st"], message_handler=None, options=opts) as tk:
        payload = {"v": 1, "meta": {"src": "x"}}
        before = time.time()
        assert tk.publisher("st", payload, stamp="meta.ts") == 1
        assert payload == {"v": 1, "meta": {"src": "x"}}, "the caller's dict is not mutated"
        assert tk.publish_many("st", [{"v": 2}, {"v": 3, "meta": {}}], stamp="meta.ts") == 2
        wait_until(lambda: tk.stats.delivered == 3, 5, "3 messages")
        data = [m.data for m in tk.subscriber.buffer.snapshot()]
        assert [d["v"] for d in data] == [1, 2, 3] and data[0]["meta"]["src"] == "x"
        assert all(before <= d["meta"]["ts"] <= time.time() for d in data)
        (row,) = tk.subscriber.latency.summary()
        assert row.messages == 3 and 0 <= row.p50 < 0.5 and row.negative == 0
        with pytest.raises(TypeError, match="stamp='ts' needs a dict payload"):
            tk.publisher("st", [1, 2], stamp="ts")
        with pytest.raises(TypeError, match="stamp='meta.ts' needs a dict"):
            tk.publisher("st", {"meta": 5}, stamp="meta.ts")
        with pytest.raises(TypeError, match="needs a dict payload"):
            tk.publish_many("st", [{"a": 1}, "text"], stamp="ts")


def test_aio_publisher_stamps_too(server):
    async def main() -> tuple[dict, list]:
        async with rtk_aio.RedisToolkit(url=server.url) as tk:
            mine = {"v": 1}
            got = []
            async with tk.listen("aio.st") as stream:
                await tk.publisher("aio.st", mine, stamp="ts")
                await tk.publish_many("aio.st", [{"v": 2}], stamp="ts")
                async for _, data in stream:
                    got.append(data)
                    if len(got) == 2:
                        break
            return mine, got

    mine, got = asyncio.run(asyncio.wait_for(main(), 10))
    assert mine == {"v": 1}
    assert [d["v"] for d in got] == [1, 2]
    assert all(abs(time.time() - d["ts"]) < 5 for d in got)


def test_magic_latency_frame_panel_and_captured_frame(shell, admin, tmp_path):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe lat.* --name feed --latency-field ts\n")
    assert run(shell, '%rtk_publish --stamp ts lat.a {"v": 1}') == 1
    report = run(shell, '%rtk_publish --stamp ts --count 5 lat.b {"v": i}')
    assert report.published == 5
    now = time.time()
    admin.publish("lat.c", json.dumps({"ts": now - 0.5}))
    admin.publish("lat.c", json.dumps({"ts": int((now - 0.5) * 1000)}))
    wait_until(lambda: feed.stats.delivered == 8, 5, "8 messages")
    frame = feed.latency()
    assert list(frame.columns) == COLUMNS
    assert list(frame["channel"]) == ["lat.a", "lat.b", "lat.c"]
    assert list(frame["count"]) == [1, 5, 2] and frame["count"].dtype == "int64"
    assert (frame["p50_ms"] < 500).iloc[:2].all(), "stamped on publish: fresh"
    c = frame.set_index("channel").loc["lat.c"]
    assert 500 <= c["p50_ms"] < 750 and 500 <= c["max_ms"] < 750
    # The captured frame (live df, and the same exported and read back) agrees with live.
    for capture in (feed.df, read_capture(feed.export(tmp_path / "cap.parquet"))):
        again = latency_table(capture, "ts")
        assert list(again.columns) == COLUMNS
        assert list(again["count"]) == [1, 5, 2]
        for col in ("p50_ms", "p99_ms", "max_ms"):
            assert again[col].to_numpy() == pytest.approx(frame[col].to_numpy(), abs=0.01)
    feed.panel.refresh()
    html = feed.panel.counters.value
    assert "latency p50 / p99 / max:" in html, html
    assert re.search(r"lat\.c 5\d\d / 5\d\d / 5\d\d ms", html), html
    snap = feed.snapshot()
    assert snap.latency[0] == 3 and [row[0] for row in snap.latency[1]] == [
        "lat.a",
        "lat.b",
        "lat.c",
    ]
    assert snap.key()[-1] == snap.latency
    # Many channels: the panel shows the 5 busiest and says how many more there are.
    for k in range(7):
        for _ in range(k + 6):  # 6 to 12: busier than lat.b
            admin.publish(f"lat.many{k}", json.dumps({"ts": time.time()}))
    wait_until(lambda: feed.stats.delivered == 8 + 63, 5, "71 messages")
    feed.panel.refresh()
    html = feed.panel.counters.value
    assert [row[0] for row in feed.snapshot().latency[1]] == [f"lat.many{k}" for k in range(2, 7)]
    assert "+5 more channels (<code>feed.latency()</code>)" in html and "lat.many1 " not in html


def test_magic_without_latency_field_and_bad_stamps(shell):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe nolat --name feed\n")
    assert feed.subscriber.latency is None and feed.snapshot().latency is None
    feed.panel.refresh()
    assert "latency" not in feed.panel.counters.value
    with pytest.raises(ValueError, match="start it with --latency-field FIELD"):
        feed.latency()
    with pytest.raises(UsageError, match="latency_field"):
        run(shell, "%%rtk_subscribe nolat --name feed2 --latency-field a..b\n")
    with pytest.raises(UsageError, match="needs a dict payload"):
        run(shell, "%rtk_publish --stamp ts nolat [1, 2]")
    with pytest.raises(UsageError, match="--stamp"):
        run(shell, "%rtk_publish --stamp nolat")


def test_percentiles_are_nearest_rank():
    """p50 and p99 are nearest-rank percentiles (rank ceil(q*n)): of latencies 1..100 ms, p99
    is 99 ms, not the max; of 2 values, p50 is the lower."""
    from redis_toolkit_nb._latency import LatencyTracker

    tracker = LatencyTracker("ts")
    for i in range(1, 101):
        tracker.observe((1000.0 + i / 1000, "c", None, {"ts": 1000.0}, 0))
    (row,) = tracker.summary()
    assert (round(row.p50 * 1000, 6), round(row.p99 * 1000, 6)) == (50.0, 99.0)
    assert round(row.max * 1000, 6) == 100.0
    pair = LatencyTracker("ts")
    for i in (1, 2):
        pair.observe((1000.0 + i / 1000, "c", None, {"ts": 1000.0}, 0))
    assert round(pair.summary()[0].p50 * 1000, 6) == 1.0
