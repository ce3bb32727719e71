"""Ingest with every tracker on (sequence gaps, latency, schema) against all off, and the
trackers' time on a captured DataFrame.

Run from the repository root (a private server on a free loopback port)::

    .venv/bin/python -m benchmarks.tracking                 # 200,000 messages, 3 rounds
    .venv/bin/python -m benchmarks.tracking -n 1000000 --rounds 5

A separate process publishes ``n`` numbered ~100-byte JSON payloads (``benchmarks.burst``:
prepared RESP written at once to a raw socket, so the publisher is never the bottleneck); the
subscriber (no handler) reads them, and the rate is what was delivered over the time from the
first message received to the last delivered. Rounds alternate off and on; the medians and
their ratio are printed, with the share delivered (must be 100%). Then ``schema_of``
(``feed.schema()`` on a capture) and ``gaps_of`` (``feed.gaps()`` on a capture) are timed on
a DataFrame of ``n`` captured rows.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.burst import compare
from redis_toolkit_nb import (
    RedisOptions,
    Subscriber,
    gaps_of,
    schema_of,
)

CHANNEL = "bench-track"

#: Every tracker, on: one line per tracker.
TRACKERS: dict[str, object] = {
    "seq_field": "seq",
    "latency_field": "ts",
    "track_schema": True,
}

BODY = '{"seq":%(k)d,"ts":%(ts).6f,"kind":"tick","pad":"' + "x" * 38 + '"}'


def check(sub: Subscriber, n: int) -> None:
    """Every tracker saw every message: no gap, one latency each, four fields always there."""
    assert sub.sequence is not None and sub.schema is not None
    assert sub.latency is not None and sub.latency.summary()[0].messages == n
    t = sub.sequence.totals()
    assert t.gaps == t.duplicates == t.reorders == 0, t
    rows = sub.schema.rows()
    assert [r[1] for r in rows] == ["seq", "ts", "kind", "pad"], rows
    assert all(r[3] == n for r in rows) and not sub.schema.events, rows


def captured(n: int) -> None:
    """Time ``schema_of`` and the sequence check on ``n`` captured rows (batches of 512
    sharing a time, as a live capture has them)."""
    import pandas as pd

    now = time.time()
    data = [{"seq": k, "ts": now, "kind": "tick", "pad": "x" * 38} for k in range(n) if k != n // 2]
    times = [now + (k // 512) * 0.001 for k in range(len(data))]
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="s", utc=True),
            "channel": CHANNEL,
            "pattern": None,
            "data": data,
            "size": 100,
        }
    )
    start = time.perf_counter()
    schema = schema_of(frame).schema()
    took_schema = time.perf_counter() - start
    assert list(schema["count"]) == [len(data)] * 4, schema
    start = time.perf_counter()
    gaps = gaps_of(frame, "seq").table()
    took_gaps = time.perf_counter() - start
    assert list(gaps["missing"]) == [1], gaps
    print(
        f"captured {len(data):,} rows: schema_of(frame).schema() {took_schema:.2f} s, "
        f'gaps_of(frame, "seq").table() {took_gaps:.2f} s'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    trackers = RedisOptions(**TRACKERS)  # type: ignore[arg-type]
    off, on, worst = compare(args.n, args.rounds, trackers, CHANNEL, BODY, check)
    print(
        f"trackers on: {', '.join(f'{k}={v!r}' for k, v in TRACKERS.items())}\n"
        f"median off {off:,.0f} msg/s, on {on:,.0f} msg/s: on/off {on / off:.2f}x; "
        f"worst delivered {worst:.1%}"
    )
    captured(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
