"""What one live-panel refresh costs, at 1 channel and at 100k distinct channels.

Run from the repository root (a private server on a free loopback port)::

    .venv/bin/python -m benchmarks.panel_refresh                 # 1 and 100,000 channels
    .venv/bin/python -m benchmarks.panel_refresh --channels 20000 --rounds 50

For each case a ``%%rtk_subscribe``-style subscription to ``bench.*`` receives one message per
distinct channel (pipelined), then the panel is refreshed ``rounds`` times with its
nothing-changed shortcut disabled, so every round builds the snapshot and renders every widget
(the worst case a tick can cost). It prints the median and worst refresh, next to what one
``Subscriber.stats`` (which copies every per-channel counter) costs at the same size. The target:
a refresh under 10 ms at 100k channels, about what it costs at 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from redis_toolkit_nb import RedisServer
from redis_toolkit_nb.notebook.refresher import REFRESHER
from redis_toolkit_nb.notebook.state import NotebookState


def measure(url: str, channels: int, rounds: int) -> dict[str, float]:
    """Refresh times (ms) of a panel whose subscription saw ``channels`` distinct channels."""
    state = NotebookState({}, default_url=lambda: url, announce=lambda _: None)
    try:
        sub = state.subscribe(["bench.*"], name="bench", max_rows=1000)
        REFRESHER.remove(sub.panel)  # only the timed refreshes run
        client = redis.Redis.from_url(url)
        pipe = client.pipeline(transaction=False)
        for i in range(channels):
            pipe.publish(f"bench.{i}", b'{"n":%d}' % i)
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.execute()
        client.close()
        deadline = time.monotonic() + 120
        while sub.stats.delivered < channels and time.monotonic() < deadline:
            time.sleep(0.05)
        times = []
        for _ in range(rounds):
            sub.panel._last_key = None  # render everything, as if every figure changed
            started = time.perf_counter()
            sub.panel.refresh()
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for _ in range(5):
            sub.subscriber.stats  # noqa: B018 - timing the property
        stats_ms = (time.perf_counter() - started) * 1000 / 5
        return {
            "median": statistics.median(times),
            "worst": max(times),
            "stats": stats_ms,
            "delivered": sub.stats.delivered,
        }
    finally:
        state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with RedisServer() as server:
        print("| distinct channels | refresh median | refresh worst | one Subscriber.stats |")
        print("|---|---|---|---|")
        for channels in (1, args.channels):
            r = measure(server.url, channels, args.rounds)
            print(
                f"| {channels:,} | {r['median']:.2f} ms | {r['worst']:.2f} ms | "
                f"{r['stats']:.2f} ms |"
            )


if __name__ == "__main__":
    main()
