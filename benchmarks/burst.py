"""The harness of ``benchmarks.sequence`` and ``benchmarks.tracking``: a 1M-style burst of
numbered JSON written at once to a raw socket (prepared RESP, so the publisher is never the
bottleneck), read by a subscriber with some options off and then on, rounds alternating.

The rate of a round is what was delivered over the time from the first message received to
the last delivered; a round the server cuts off (its output-buffer limit) ends at once and
counts what arrived.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from redis_toolkit_nb import RedisOptions, RedisServer, RedisToolkit, Subscriber

_PUBLISHER = """
import socket, sys, time
port, n, channel, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
head = b"*3\\r\\n$7\\r\\nPUBLISH\\r\\n$%d\\r\\n%s\\r\\n" % (len(channel), channel)
parts = []
for k in range(n):
    data = (body % {"k": k, "ts": time.time()}).encode()
    parts.append(head + b"$%d\\r\\n%s\\r\\n" % (len(data), data))
wire = b"".join(parts)
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(wire)  # the server queues the replies (no limit for normal clients)
got = 0
while got < n:
    got += sock.recv(1 << 20).count(b":")
"""


def one_round(
    srv: RedisServer,
    n: int,
    options: RedisOptions,
    channel: str,
    body: str,
    check: Callable[[Subscriber, int], object] | None = None,
) -> tuple[float, int]:
    """(messages per second, messages delivered) of one burst of ``n`` payloads ``body %
    {"k": number, "ts": send time}`` on ``channel``; ``check(subscriber, n)`` runs after a
    round delivered whole."""
    with RedisToolkit(url=srv.url) as tk:
        sub = Subscriber(tk.client, options=options)
        sub.start([channel])
        try:
            args = [sys.executable, "-c", _PUBLISHER, str(srv.port), str(n), channel, body]
            proc = subprocess.Popen(args)
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
            if check is not None and delivered == n:  # (a round cut short says so in its count)
                check(sub, n)
            return delivered / (last - first), delivered  # a round cut short: what arrived
        finally:
            sub.stop(5.0)


def compare(
    n: int,
    rounds: int,
    on: RedisOptions,
    channel: str,
    body: str,
    check: Callable[[Subscriber, int], object] | None = None,
) -> tuple[float, float, float]:
    """Rounds of default options ("off") against ``on``, alternating on one private server;
    each round is printed. Returns the medians (off, on) and the worst share delivered."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    worst = 1.0
    with RedisServer() as srv:
        for _ in range(rounds):
            for label, options in (("off", RedisOptions()), ("on", on)):
                rate, delivered = one_round(
                    srv, n, options, channel, body, check if label == "on" else None
                )
                rates[label].append(rate)
                worst = min(worst, delivered / n)
                print(f"{label:>3}: {rate:12,.0f} msg/s  delivered {delivered:,}/{n:,}")
    return statistics.median(rates["off"]), statistics.median(rates["on"]), worst
