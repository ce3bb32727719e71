"""Record and replay: ``read_capture`` reads ``export()``'s files back as ``feed.df``;
``RedisToolkit.replay`` and ``%rtk_replay`` publish a capture again on its schedule, checked by a
real subscriber on a private server."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import wait_until
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb import RedisOptions, RedisToolkit, Subscriber, read_capture, replay_plan

pd = pytest.importorskip("pandas")

#: How far a message may arrive from its schedule (relative to the first one) on this shared,
#: loaded 2-core machine: sends are timed with sleep(), arrivals stamped by the reader.
TOLERANCE = 0.05


def _frame(rows: list[tuple[float, str, object]]) -> pd.DataFrame:
    """A capture like feed.df: (seconds, channel, data) rows."""
    base = 1_700_000_000.0
    return pd.DataFrame(
        {
            "time": pd.to_datetime([base + t for t, _, _ in rows], unit="s", utc=True),
            "channel": [c for _, c, _ in rows],
            "pattern": [None] * len(rows),
            "data": [d for _, _, d in rows],
            "size": [len(json.dumps(d)) for _, _, d in rows],
        }
    )


class Received:
    """A real subscriber that stamps every arrival (reader time, channel, data)."""

    def __init__(self, server, names):
        self.rows: list[tuple[float, str, object]] = []
        self.lock = threading.Lock()
        self.tk = RedisToolkit(url=server.url)
        self.sub = Subscriber(
            self.tk.client, options=RedisOptions(buffer_size=0), on_message=self._add
        )
        self.sub.start(names)

    def _add(self, record):
        with self.lock:
            self.rows.append((record[0], record[1], record[3]))

    def close(self):
        self.sub.stop(2.0)
        self.tk.close()


@pytest.fixture
def receiver(server):
    made: list[Received] = []

    def make(*names):
        made.append(Received(server, names))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_read_capture_round_trips_every_export_format(shell, admin, tmp_path):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe cap cap.* --name feed\n")
    payloads = [
        {"seq": 1, "price": 9.5, "tags": ["a", "b"], "meta": {"k": None}},
        42,
        3.25,
        [1, "two"],
        "plain text",
        "null",  # text that happens to read as JSON's null
        True,
    ]
    for k, p in enumerate(payloads):
        admin.publish("cap" if k % 2 else "cap.x", p if isinstance(p, str) else json.dumps(p))
    wait_until(lambda: feed.stats.delivered == len(payloads), 5, "every payload")
    df = feed.df
    for name in ("c.parquet", "c.json", "c.jsonl", "c.csv"):
        back = read_capture(feed.export(tmp_path / name))
        assert list(back.columns) == list(df.columns), name
        assert dict(back.dtypes) == dict(df.dtypes), (name, back.dtypes)
        pd.testing.assert_frame_equal(back, df, check_exact=True, obj=name)
    # "null" published as text came back... as JSON's null, exactly as the subscriber decoded it.
    assert df["data"].iloc[5] is None and df["pattern"].iloc[0] == "cap.*"


def test_read_capture_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_capture(tmp_path / "none.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"\.parquet, \.json/\.jsonl"):
        read_capture(tmp_path / "x.txt")
    (tmp_path / "y.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="not a capture.*time, channel, pattern, data, size"):
        read_capture(tmp_path / "y.jsonl")


def test_replay_keeps_the_schedule_divided_by_speed(server, receiver):
    gaps = [0.0, 0.05, 0.05, 0.2, 0.0, 0.1, 0.3, 0.02, 0.02, 0.25]
    rows, t = [], 0.0
    for k, gap in enumerate(gaps):
        t += gap
        rows.append((t, "sched", {"k": k}))
    frame = _frame(rows)
    rx = receiver("sched")
    with RedisToolkit(url=server.url) as tk:
        summary = tk.replay(frame, speed=2.0)
    wait_until(lambda: len(rx.rows) == len(rows), 5, "every replayed message")
    assert [d for _, _, d in rx.rows] == [d for _, _, d in rows], "in order, as captured"
    first = rx.rows[0][0]
    for (arrived, _, data), (at, _, _) in zip(rx.rows, rows, strict=True):
        due = at / 2.0
        assert abs((arrived - first) - due) < TOLERANCE, (data, arrived - first, due)
    assert summary.sent == len(rows) and summary.receivers == len(rows)
    assert summary.speed == 2.0 and summary.duration >= sum(gaps) / 2.0
    assert 0 <= summary.lag_p50 <= summary.lag_p99 <= summary.lag_max < TOLERANCE
    assert summary.channels == {"sched": len(rows)} and "replayed 10 messages" in repr(summary)


def test_channel_map_and_prefix(server, receiver):
    frame = _frame([(0, "orders", 1), (0.01, "prices", 2), (0.02, "orders", 3)])
    rx = receiver("copy:*")
    with RedisToolkit(url=server.url) as tk:
        summary = tk.replay(frame, speed=0, channel_map={"orders": "o2"}, prefix="copy:")
    wait_until(lambda: len(rx.rows) == 3, 5, "3 replayed messages")
    assert [(c, d) for _, c, d in rx.rows] == [("copy:o2", 1), ("copy:prices", 2), ("copy:o2", 3)]
    assert summary.channels == {"copy:o2": 2, "copy:prices": 1}


def test_speed_zero_pipelines_runs_in_order(server, receiver):
    rows = [(k * 0.5, "fast.a" if (k // 1000) % 2 else "fast.b", k) for k in range(6000)]
    rx = receiver("fast.*")
    with RedisToolkit(url=server.url) as tk:
        summary = tk.replay(_frame(rows), speed=0)
    # 3,000 seconds of capture, sent at once: pipelined, no schedule, no lag figures.
    assert summary.duration < 10 and summary.lag_p50 is None and summary.receivers is None
    wait_until(lambda: len(rx.rows) == len(rows), 10, "6,000 messages")
    assert [d for _, _, d in rx.rows] == list(range(6000))


def test_replay_rejects_bad_input(server):
    with RedisToolkit(url=server.url) as tk:
        with pytest.raises(ValueError, match="speed must be a number >= 0"):
            tk.replay(_frame([(0, "a", 1)]), speed=-1)
        with pytest.raises(ValueError, match="no time column"):
            tk.replay(pd.DataFrame({"channel": ["a"], "data": [1]}))
    steps = replay_plan(_frame([(0, "a", 1), (2, "b", 2), (1, "c", 3)]), speed=4)
    assert [s.at for s in steps] == [0, 0.5, 0.5], "an earlier time goes right after"


def test_magic_dry_run_sends_nothing(shell, capsys):  # noqa: F811
    shell.user_ns["cap"] = _frame([(0, "d1", {"a": 1}), (1.5, "d2", 2), (3, "d1", 3)])
    plan = run(shell, "%rtk_replay cap --speed 3 --map d1=e1 --prefix t: --dry-run")
    out = capsys.readouterr().out
    assert "would send 3 messages over 1.000 s to t:d2, t:e1 (nothing sent)" in out
    assert list(plan.columns) == ["at", "channel", "to", "data"]
    assert list(plan["to"]) == ["t:e1", "t:d2", "t:e1"] and list(plan["at"]) == [0, 0.5, 1.0]
    magics = shell.magics_manager.registry["RtkMagics"]
    assert magics.state._toolkit is None, "a dry run does not even connect: nothing sent"


def test_magic_replays_an_exported_file(shell, admin, tmp_path, receiver):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe rec --name feed\n")
    for k in range(30):
        admin.publish("rec", json.dumps({"seq": k}))
    wait_until(lambda: feed.stats.delivered == 30, 5, "30 messages")
    path = feed.export(tmp_path / "rec.parquet")
    rx = receiver("again.rec2")
    summary = run(shell, f"%rtk_replay {path} --speed 0 --map rec=rec2 --prefix again. --limit 20")
    assert summary.sent == 20
    wait_until(lambda: len(rx.rows) == 20, 5, "20 replayed messages")
    assert [d for _, _, d in rx.rows] == [{"seq": k} for k in range(20)]
    # The subscription itself is a source too (its df), and its own feed receives the copy.
    summary = run(shell, "%rtk_replay feed --speed 0 --limit 5")
    wait_until(lambda: feed.stats.delivered == 35, 5, "5 copies back on rec")
    assert summary.sent == 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nothing_here", "neither a variable of this notebook nor a file"),
        ("cap --map a", "--map takes OLD=NEW pairs"),
        ("cap --speed -2", "must be >= 0"),
        ("cap --limit 0", "must be a whole number > 0"),
        ("number", "is a int, not a DataFrame"),
    ],
)
def test_magic_usage_errors(shell, line, message):  # noqa: F811
    shell.user_ns["cap"] = _frame([(0, "a", 1)])
    shell.user_ns["number"] = 5
    with pytest.raises(UsageError, match=message):
        run(shell, f"%rtk_replay {line}")


def test_slow_replay_shows_progress_and_takes_its_time(shell, receiver, capsys):  # noqa: F811
    shell.user_ns["cap"] = _frame([(k * 0.15, "slow", k) for k in range(10)])
    rx = receiver("slow")
    started = time.monotonic()
    summary = run(shell, "%rtk_replay cap")
    assert time.monotonic() - started >= 1.35 and summary.sent == 10
    assert "rtk_replay" in capsys.readouterr().err, "a tqdm progress bar on stderr"
    wait_until(lambda: len(rx.rows) == 10, 5, "10 messages")
