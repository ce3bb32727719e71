"""Ingest with sequence checking (``RedisOptions.seq_field``) on against off.

Run from the repository root (a private server on a free loopback port)::

    .venv/bin/python -m benchmarks.sequence                 # 200,000 messages, 3 rounds
    .venv/bin/python -m benchmarks.sequence -n 1000000 --rounds 5

A separate process publishes ``n`` numbered ~100-byte JSON payloads (``benchmarks.burst``:
prepared RESP written at once to a raw socket, so the publisher is never the bottleneck); the
subscriber (default options, no handler) reads them, and the rate is what was delivered over
the time from the first message received to the last delivered. Rounds alternate off and
on; the medians and their ratio are printed, with the share delivered (must be 100%).
"""

from __future__ import annotations

import argparse

from benchmarks.burst import compare
from redis_toolkit_nb import RedisOptions, Subscriber

CHANNEL = "bench-seq"
BODY = '{"seq":%(k)d,"pad":"' + "x" * 60 + '"}'


def check(sub: Subscriber, n: int) -> None:
    """Every message numbered in order: no gap, duplicate or reorder found."""
    assert sub.sequence is not None
    t = sub.sequence.totals()
    assert t.gaps == t.duplicates == t.reorders == 0, t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    on = RedisOptions(seq_field="seq")
    off, on_rate, worst = compare(args.n, args.rounds, on, CHANNEL, BODY, check)
    print(
        f"median off {off:,.0f} msg/s, on {on_rate:,.0f} msg/s: on/off {on_rate / off:.2f}x; "
        f"worst delivered {worst:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
