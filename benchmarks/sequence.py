"""Ingest with sequence checking (``RedisOptions.seq_field``) on against off.

Run from the repository root (a private server on a free loopback port)::

    .venv/bin/python -m benchmarks.sequence                 # 200,000 messages, 3 rounds
    .venv/bin/python -m benchmarks.sequence -n 1000000 --rounds 5

A separate process publishes ``n`` numbered ~100-byte JSON payloads (prepared RESP written
at once to a raw socket, so the publisher is never the bottleneck); the
subscriber (default options, no handler) reads them, and the rate is ``n`` over the time from
the first message received to the last delivered. Rounds alternate off and on; the medians
and their ratio are printed, with the share delivered (must be 100%).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from redis_toolkit_nb import RedisOptions, RedisServer, RedisToolkit, Subscriber

CHANNEL = "bench-seq"

_PUBLISHER = """
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
pad = "x" * 60
head = b"*3\\r\\n$7\\r\\nPUBLISH\\r\\n$9\\r\\nbench-seq\\r\\n"
parts = []
for k in range(n):
    body = ('{"seq":%d,"pad":"%s"}' % (k, pad)).encode()
    parts.append(head + b"$%d\\r\\n%s\\r\\n" % (len(body), body))
wire = b"".join(parts)
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(wire)  # the server queues the replies (no limit for normal clients)
got = 0
while got < n:
    got += sock.recv(1 << 20).count(b":")
"""


def one_round(srv: RedisServer, n: int, seq_field: str | None) -> tuple[float, int]:
    """(messages per second, messages delivered) of one burst of ``n``."""
    with RedisToolkit(url=srv.url) as tk:
        sub = Subscriber(tk.client, options=RedisOptions(seq_field=seq_field))
        sub.start([CHANNEL])
        try:
            proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(srv.port), str(n)])
            deadline = time.monotonic() + 300
            while sub.totals().received == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            first = time.monotonic()
            while sub.totals().delivered < n and time.monotonic() < deadline:
                time.sleep(0.005)
            last = time.monotonic()
            proc.wait(60)
            delivered = sub.totals().delivered
            if seq_field is not None:
                assert sub.sequence is not None
                t = sub.sequence.totals()
                assert t.gaps == t.duplicates == t.reorders == 0, t
            return delivered / (last - first), delivered  # a round cut short: what arrived
        finally:
            sub.stop(5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    worst = 1.0
    with RedisServer() as srv:
        for _ in range(args.rounds):
            for label, field in (("off", None), ("on", "seq")):
                rate, delivered = one_round(srv, args.n, field)
                rates[label].append(rate)
                worst = min(worst, delivered / args.n)
                print(f"{label:>3}: {rate:12,.0f} msg/s  delivered {delivered:,}/{args.n:,}")
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"median off {off:,.0f} msg/s, on {on:,.0f} msg/s: on/off {on / off:.2f}x; "
        f"worst delivered {worst:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
