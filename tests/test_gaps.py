"""Sequence gaps: ``RedisOptions.seq_field`` / ``--seq-field`` find gaps, duplicates and
reordering per channel on real traffic, and tell a gap a disconnect caused."""

from __future__ import annotations

import json
import time

import pytest
import redis
from conftest import wait_until
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb import OptionsError, RedisOptions, RedisToolkit, Subscriber

pd = pytest.importorskip("pandas")


def _publish(client: redis.Redis, channel: str, *numbers: int) -> None:
    for n in numbers:
        client.publish(channel, json.dumps({"seq": n, "v": "x"}))


def _kinds(tracker) -> list[tuple[str, str, int, int, int]]:
    return [(e.channel, e.kind, e.expected, e.got, e.missing) for e in tracker.events]


def test_off_by_default_and_validated():
    assert RedisOptions().seq_field is None
    assert RedisOptions(seq_field="meta.seq").seq_field == "meta.seq"
    for bad in ("", "a..b", 5):
        with pytest.raises(OptionsError, match="seq_field"):
            RedisOptions(seq_field=bad)


def test_gaps_duplicates_and_reorders_per_channel(server, admin):
    with RedisToolkit(url=server.url) as tk:
        sub = Subscriber(tk.client, options=RedisOptions(seq_field="seq"))
        assert Subscriber(tk.client).sequence is None, "no tracker (no cost) when off"
        sub.start(["a", "b"])
        try:
            _publish(admin, "a", 1, 2, 3, 6, 7, 7, 4, 9, 5, 8)
            _publish(admin, "b", 10, 11, 13)  # its own count: b's gap is b's
            admin.publish("a", json.dumps({"no": "seq"}))
            admin.publish("a", json.dumps({"seq": "12"}))  # not an integer: not checked
            admin.publish("b", "plain text")
            wait_until(lambda: sub.stats.delivered == 16, 5, "16 messages")
            tracker = sub.sequence
            assert _kinds(tracker) == [
                ("a", "gap", 4, 6, 2),  # 4 and 5 missing
                ("a", "duplicate", 8, 7, 0),
                ("a", "reorder", 8, 4, -1),  # 4 came late: one fewer missing
                ("a", "gap", 8, 9, 1),  # 8 missing
                ("a", "reorder", 10, 5, -1),
                ("a", "reorder", 10, 8, -1),
                ("b", "gap", 12, 13, 1),
            ]
            t = tracker.totals()
            assert (t.gaps, t.missing, t.duplicates, t.reorders) == (3, 1, 1, 3)
            assert (t.unsequenced, t.channels) == (3, 2)
            assert sum(e.missing for e in tracker.events) == t.missing
            assert not any(e.disconnected for e in tracker.events)
        finally:
            sub.stop(2.0)


def test_a_hole_filled_in_the_middle_and_nested_fields(server, admin):
    opts = RedisOptions(seq_field="meta.n")
    with RedisToolkit(url=server.url, channels=["n"], message_handler=print, options=opts) as tk:
        for n in (1, 10, 5, 5, 2, 9, 11):
            admin.publish("n", json.dumps({"meta": {"n": n}}))
        wait_until(lambda: tk.stats.delivered == 7, 5, "7 messages")
        tracker = tk.subscriber.sequence
        kinds = [(e.kind, e.got, e.missing) for e in tracker.events]
        assert kinds == [
            ("gap", 10, 8),
            ("reorder", 5, -1),
            ("duplicate", 5, 0),  # 5 was no longer missing
            ("reorder", 2, -1),
            ("reorder", 9, -1),
        ]
        assert tracker.totals().missing == 5  # 3, 4, 6, 7, 8
        assert "1 gaps (5 missing)" in repr(tracker)


def test_a_gap_from_a_disconnect_is_marked(own_server, stop_new_subscribers):
    """Messages published while the subscriber is cut off are lost (at-most-once): the gap
    they leave overlaps the disconnect, and says so; the count of them is exact."""
    admin = redis.Redis(port=own_server.port)
    opts = RedisOptions(seq_field="seq")
    with RedisToolkit(url=own_server.url, channels=["d"], message_handler=None, options=opts) as tk:
        _publish(admin, "d", 1, 2)
        wait_until(lambda: tk.stats.delivered == 2, 5, "2 messages")
        assert admin.client_kill_filter(_type="pubsub") == 1
        # Publish until one reaches nobody: the subscriber is gone, the message lost.
        seq, lost = 3, 0
        while lost == 0:
            receivers = admin.publish("d", json.dumps({"seq": seq}))
            lost += receivers == 0
            assert receivers == 0 or lost == 0, "a message reached it after one was lost"
            seq += 1
        wait_until(lambda: admin.pubsub_numsub("d")[0][1] == 1, 10, "the resubscription")
        assert tk.stats.disconnects >= 1, "the server really cut it off"
        _publish(admin, "d", seq)
        wait_until(lambda: len(tk.subscriber.sequence.events) == 1, 5, "the gap")
        (event,) = tk.subscriber.sequence.events
        assert (event.kind, event.got, event.missing) == ("gap", seq, lost)
        assert event.disconnected, "the gap overlaps the loss of the connection"
        _publish(admin, "d", seq + 3)
        wait_until(lambda: len(tk.subscriber.sequence.events) == 2, 5, "a second gap")
        assert not tk.subscriber.sequence.events[-1].disconnected, "no loss since the last one"


def test_magic_gaps_frame_and_panel(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe g.* --name feed --seq-field seq\n")
    _publish(admin, "g.a", 1, 2, 5, 5, 3)
    _publish(admin, "g.b", 7, 8)
    wait_until(lambda: feed.stats.delivered == 7, 5, "7 messages")
    gaps = feed.gaps()
    assert list(gaps.columns) == [
        "time",
        "channel",
        "kind",
        "expected",
        "got",
        "missing",
        "disconnected",
    ]
    assert list(gaps["kind"]) == ["gap", "duplicate", "reorder"]
    assert list(gaps["missing"]) == [2, 0, -1] and list(gaps["expected"]) == [3, 6, 6]
    assert str(gaps["time"].dtype) == "datetime64[ns, UTC]" and gaps["got"].dtype == "int64"
    assert gaps["disconnected"].dtype == bool and not gaps["disconnected"].any()
    feed.panel.refresh()
    html = feed.panel.counters.value
    assert "gaps 1 (missing 1) · duplicates 1 · reordered 1" in html
    assert html.index("dropped") < html.index("gaps 1"), "next to the loss counters"


def test_gaps_of_a_capture_agree_with_the_live_feed(shell, admin, tmp_path):  # noqa: F811
    """``gaps_of(frame, field)``: the same table from ``feed.df`` or a re-read export as the
    live ``feed.gaps()`` (a capture knows no disconnects: that column is False)."""
    from redis_toolkit_nb import gaps_of, read_capture

    feed = run(shell, "%%rtk_subscribe cap.* --name feed --seq-field seq\n")
    _publish(admin, "cap.a", 1, 2, 5, 5, 3, 9)
    _publish(admin, "cap.b", 7, 8, 10)
    admin.publish("cap.b", "not numbered")
    wait_until(lambda: feed.stats.delivered == 10, 5, "10 messages")
    live = feed.gaps()
    columns = ["channel", "kind", "expected", "got", "missing"]
    assert len(live) == 5
    again = read_capture(feed.export(tmp_path / "cap.parquet"))
    for frame in (feed.df, again):
        tracker = gaps_of(frame, "seq")
        captured = tracker.table()
        assert list(captured.columns) == list(live.columns)
        assert captured[columns].to_dict("records") == live[columns].to_dict("records")
        assert (captured["time"] == live["time"]).all()
        assert tracker.totals() == feed.subscriber.sequence.totals()
    assert str(gaps_of(feed.df, "seq").table("Europe/Paris")["time"].dtype).endswith("Paris]")


def test_magic_without_seq_field(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe nog --name feed\n")
    assert feed.subscriber.sequence is None
    feed.panel.refresh()
    assert "gaps" not in feed.panel.counters.value
    with pytest.raises(ValueError, match="start it with --seq-field FIELD"):
        feed.gaps()
    with pytest.raises(UsageError, match="seq_field"):
        run(shell, "%%rtk_subscribe nog --name feed2 --seq-field a..b\n")


def test_counts_never_run_ahead_of_the_trackers(server, admin, monkeypatch):
    """``by_channel`` (what ``expect(channel=..., no_gaps=True)`` waits on) counts a batch only
    once the trackers have seen it: when it shows all three messages, the gap is known. (A
    tracker slowed down here makes the window wide enough to see.)"""
    from redis_toolkit_nb._sequence import SequenceTracker

    observe = SequenceTracker.observe_batch

    def slowly(self, records, channel=None):
        time.sleep(0.3)
        observe(self, records, channel)

    monkeypatch.setattr(SequenceTracker, "observe_batch", slowly)
    with RedisToolkit(url=server.url) as tk:
        sub = Subscriber(tk.client, options=RedisOptions(seq_field="seq"))
        sub.start(["ahead"])
        try:
            _publish(admin, "ahead", 1, 2, 4)
            deadline = time.monotonic() + 10
            while sub.stats.by_channel.get("ahead", 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert sub.sequence.totals().gaps == 1, "counted before the tracker saw the gap"
        finally:
            sub.stop(2.0)
