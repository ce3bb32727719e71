"""The largest payload a subscriber really receives, found by bisection on a real server.

Run from the repository root (a private server per engine on a free loopback port)::

    .venv/bin/python -m benchmarks.size_cap                  # both engines, a few limits
    .venv/bin/python -m benchmarks.size_cap --limit 4mb       # one pubsub hard limit

For each engine and ``client-output-buffer-limit pubsub HARD 0 0`` it bisects the payload
size between "a raw-socket subscriber gets the message whole" and "the server cuts the
subscriber off", and prints the deliverable maximum, its distance from the hard limit, and
what ``redis_toolkit_nb._sizecap.deliverable`` (the toolkit's conservative rule) allows.
The server accounts a client's output buffer by the allocator's size classes (jemalloc),
not by the bytes queued, which is why the maximum sits below the hard limit.
"""

from __future__ import annotations

import argparse
import socket
import time

import hiredis
import redis

from redis_toolkit_nb import RedisServer
from redis_toolkit_nb._sizecap import deliverable
from redis_toolkit_nb.embedded import bundled_binary

CHANNEL = b"cap"
MIB = 1024 * 1024
LIMITS = ["32mb", "4mb", "5mb", "20mb", "5242879", "1mb"]


class Listener:
    """One raw-socket subscriber; reconnects after the server cut it off."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def _connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL))
        reader = hiredis.Reader()
        while (reply := reader.gets()) is False:
            reader.feed(sock.recv(4096))
        assert reply[0] == b"subscribe", reply
        self.sock = sock

    def receives(self, publisher: redis.Redis, size: int) -> bool:
        if self.sock is None:
            self._connect()
        assert self.sock is not None
        publisher.publish(CHANNEL, b"x" * size)
        reader = hiredis.Reader()
        self.sock.settimeout(10)
        while True:
            reply = reader.gets()
            if reply is not False:
                return len(reply[2]) == size
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.sock.close()
                self.sock = None
                return False
            reader.feed(data)


def bisect(binary: str, limit: str) -> tuple[str, int, int, float]:
    """(allocator, hard limit in bytes, deliverable maximum, seconds)."""
    start = time.monotonic()
    with RedisServer(binary) as srv:
        pub = redis.Redis(port=srv.port)
        pub.config_set("client-output-buffer-limit", f"pubsub {limit} 0 0")
        text = str(pub.config_get("client-output-buffer-limit")["client-output-buffer-limit"])
        words = text.split()
        hard = int(words[words.index("pubsub") + 1])
        allocator = pub.info("memory").get("mem_allocator", "?")
        listener = Listener(srv.port)
        # Valkey 8.1 delivers a payload a little over its hard limit: start above it.
        good, bad = 0, 2 * hard
        assert not listener.receives(pub, bad), "twice the hard limit was delivered"
        while bad - good > 1:
            mid = (good + bad) // 2
            if listener.receives(pub, mid):
                good = mid
            else:
                bad = mid
        pub.close()
    return str(allocator), hard, good, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", action="append", help="pubsub hard limit(s) to try")
    args = parser.parse_args()
    engines = {"redis": "redis-server", "valkey": bundled_binary()}
    print(
        "| engine | allocator | hard limit | deliverable max | hard - max | max / hard | "
        "toolkit allows | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for limit in args.limit or LIMITS:
        for engine, binary in engines.items():
            if not binary:
                continue
            allocator, hard, best, took = bisect(binary, limit)
            allowed = deliverable(hard)
            assert allowed <= best, f"the toolkit's rule allows {allowed} > {best}"
            print(
                f"| {engine} | {allocator} | {limit} = {hard:,} | {best:,} | "
                f"{hard - best:,} | {best / hard:.4f} | {allowed:,} | {took:.1f} |"
            )


if __name__ == "__main__":
    main()
