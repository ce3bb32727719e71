"""Ingest with every tracker on (sequence gaps, latency, schema) against all off, and the
trackers' time on a captured DataFrame.

Run from the repository root (a private server on a free loopback port)::

    .venv/bin/python -m benchmarks.tracking                 # 200,000 messages, 3 rounds
    .venv/bin/python -m benchmarks.tracking -n 1000000 --rounds 5

A separate process publishes ``n`` numbered ~100-byte JSON payloads (prepared RESP written
at once to a raw socket, so the publisher is never the bottleneck); the subscriber (no
handler) reads them, and the rate is ``n`` over the time from the first message received to
the last delivered. Rounds alternate off and on; the medians and their ratio are printed,
with the share delivered (must be 100%). Then ``schema_of`` (``feed.schema()`` on a capture)
and ``gaps_of`` (``feed.gaps()`` on a capture) are timed on a DataFrame of ``n`` captured rows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from redis_toolkit_nb import (
    RedisOptions,
    RedisServer,
    RedisToolkit,
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

_PUBLISHER = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
head = b"*3\\r\\n$7\\r\\nPUBLISH\\r\\n$11\\r\\nbench-track\\r\\n"
parts = []
for k in range(n):
    body = ('{"seq":%d,"ts":%.6f,"kind":"tick","pad":"%s"}' % (k, time.time(), "x" * 38)).encode()
    parts.append(head + b"$%d\\r\\n%s\\r\\n" % (len(body), body))
wire = b"".join(parts)
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(wire)  # the server queues the replies (no limit for normal clients)
got = 0
while got < n:
    got += sock.recv(1 << 20).count(b":")
"""


def one_round(srv: RedisServer, n: int, on: bool) -> tuple[float, int]:
    """(messages per second, messages delivered) of one burst of ``n``."""
    options = RedisOptions(**TRACKERS) if on else RedisOptions()  # type: ignore[arg-type]
    with RedisToolkit(url=srv.url) as tk:
        sub = Subscriber(tk.client, options=options)
        sub.start([CHANNEL])
        try:
            proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(srv.port), str(n)])
            deadline = time.monotonic() + 300
            while sub.totals().received == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            first = time.monotonic()
            while sub.totals().delivered < n and time.monotonic() < deadline:
                if sub.totals().disconnects:
                    break  # the server cut it off (its output buffer limit): a short round
                time.sleep(0.005)
            last = time.monotonic()
            proc.wait(60)
            delivered = sub.totals().delivered
            if on and delivered == n:  # (a round the server cut short says so in its count)
                assert sub.sequence is not None and sub.schema is not None
                assert sub.latency is not None and sub.latency.summary()[0].messages == n
                t = sub.sequence.totals()
                assert t.gaps == t.duplicates == t.reorders == 0, t
                rows = sub.schema.rows()
                assert [r[1] for r in rows] == ["seq", "ts", "kind", "pad"], rows
                assert all(r[3] == n for r in rows) and not sub.schema.events, rows
            return delivered / (last - first), delivered  # a round cut short: what arrived
        finally:
            sub.stop(5.0)


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
    rates: dict[str, list[float]] = {"off": [], "on": []}
    worst = 1.0
    with RedisServer() as srv:
        for _ in range(args.rounds):
            for label in ("off", "on"):
                rate, delivered = one_round(srv, args.n, label == "on")
                rates[label].append(rate)
                worst = min(worst, delivered / args.n)
                print(f"{label:>3}: {rate:12,.0f} msg/s  delivered {delivered:,}/{args.n:,}")
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"trackers on: {', '.join(f'{k}={v!r}' for k, v in TRACKERS.items())}\n"
        f"median off {off:,.0f} msg/s, on {on:,.0f} msg/s: on/off {on / off:.2f}x; "
        f"worst delivered {worst:.1%}"
    )
    captured(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
