"""Pub/Sub on a Redis Cluster: sharded vs classic, and the toolkit vs redis-py's ``ClusterPubSub``.

Run from the repository root::

    .venv/bin/python -m benchmarks.cluster            # the full run (about a minute)
    .venv/bin/python -m benchmarks.cluster --quick    # a smoke run

It starts a private 3-master cluster (``redis_toolkit_nb.embedded.start_cluster``, with
``redis-server`` from PATH) and three channels, one per master. Each round, for each
contender, a subscriber process starts, then three ``redis-benchmark`` processes (one per
master, one connection, 64 commands per write) publish N messages each to the channel that
master owns, at the same time. The rate is what the subscriber received per second, from the
publishers' start to its last message. Contenders, alternating round by round:

- the toolkit, sharded (``SSUBSCRIBE``, one connection per master, ``SPUBLISH``);
- the toolkit, classic (``SUBSCRIBE`` on one node, ``PUBLISH``: every message is copied to the
  other masters over the cluster bus);
- redis-py's ``RedisCluster.pubsub()`` sharded (``ssubscribe``, ``get_sharded_message`` loop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.run import PAYLOAD, spawn_worker

IDLE = 2.0  # seconds without a message after which a subscriber reports what it got


# ---- subscribers (each in its own process) ---------------------------------------------------
def _ready() -> None:
    print("READY", flush=True)


def _count_until(n: int, get_count: Any) -> tuple[int, float]:
    """Poll a counter until it reaches ``n`` or stops moving for ``IDLE`` s; returns the count
    and the time of the last increase."""
    last_count, last = 0, time.monotonic()
    while True:
        count = get_count()
        now = time.monotonic()
        if count != last_count:
            last_count, last = count, now
        if count >= n or now - last > IDLE:
            return count, last
        time.sleep(0.002)


def toolkit_subscriber(spec: dict[str, Any]) -> dict[str, Any]:
    from redis_toolkit_nb import RedisToolkit

    count = 0

    def handler(channel: str, data: Any) -> None:
        nonlocal count
        count += 1

    sharded = spec["sharded"]
    tk = RedisToolkit(
        url=spec["url"],
        message_handler=handler,
        **({"sharded_channels": spec["channels"]} if sharded else {"channels": spec["channels"]}),
    )
    _ready()
    got, last = _count_until(spec["n"], lambda: count)
    dropped = tk.stats.dropped
    tk.cleanup()
    return {"count": got, "last": last, "dropped": dropped}


def redispy_subscriber(spec: dict[str, Any]) -> dict[str, Any]:
    """What a redis-py user writes: ``RedisCluster.pubsub()``, ``ssubscribe``, a loop."""
    from redis.cluster import RedisCluster

    rc = RedisCluster.from_url(spec["url"])
    ps = rc.pubsub()
    ps.ssubscribe(*spec["channels"])
    confirmed = 0
    while confirmed < len(spec["channels"]):
        msg = ps.get_sharded_message(timeout=1.0)
        if msg is not None and msg["type"] == "ssubscribe":
            confirmed += 1
    _ready()
    count, last, quiet = 0, time.monotonic(), time.monotonic()
    while count < spec["n"]:
        msg = ps.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
        now = time.monotonic()
        if msg is None:
            if now - quiet > IDLE:
                break
            continue
        count += 1
        last = quiet = now
    ps.close()
    rc.close()
    return {"count": count, "last": last, "dropped": 0}


KINDS = {"toolkit": toolkit_subscriber, "redispy": redispy_subscriber}
CONTENDERS = {
    "toolkit-sharded": ("toolkit", True, "toolkit, sharded (SSUBSCRIBE per master)"),
    "toolkit-classic": ("toolkit", False, "toolkit, classic (SUBSCRIBE on one node)"),
    "redispy-sharded": ("redispy", True, "redis-py ClusterPubSub, sharded"),
}


# ---- harness ---------------------------------------------------------------------------------
def one_run(cluster: Any, channels: dict[int, str], contender: str, n: int) -> dict[str, Any]:
    kind, sharded, _ = CONTENDERS[contender]
    spec = {
        "kind": kind,
        "url": cluster.url,
        "sharded": sharded,
        "channels": list(channels.values()),
        "n": n * len(channels),
    }
    proc = spawn_worker("benchmarks.cluster", spec, contender, stdin=subprocess.DEVNULL)
    command = "spublish" if sharded else "publish"
    exe = shutil.which("redis-benchmark") or sys.exit("redis-benchmark is not on PATH")
    t0 = time.monotonic()
    pubs = [
        subprocess.Popen(
            [exe, "-p", str(port), "-c", "1", "-P", "64", "-n", str(n), "-q", command, ch, PAYLOAD],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port, ch in channels.items()
    ]
    for pub in pubs:
        pub.wait(300)
    published = time.monotonic() - t0
    out, err = proc.communicate(timeout=300)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{contender} failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["rate"] = result["count"] / max(result["last"] - t0, 1e-9)
    result["publish_rate"] = n * len(channels) / published
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print("RESULT " + json.dumps(KINDS[spec["kind"]](spec)), flush=True)
        return 0
    from redis.crc import key_slot

    from redis_toolkit_nb.embedded import start_cluster

    n, rounds = (6_400, 1) if args.quick else (100_032, 3)  # whole pipelines of 64
    load = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    cluster = start_cluster(masters=3, binary=shutil.which("redis-server"))
    try:
        channels: dict[int, str] = {}
        i = 0
        while len(channels) < 3:  # one channel per master
            name = f"bench:{i}"
            channels.setdefault(cluster.owner(key_slot(name.encode())), name)
            i += 1
        for _ in range(rounds):
            for contender in CONTENDERS:
                runs[contender].append(one_run(cluster, channels, contender, n))
    finally:
        cluster.stop()
    total = 3 * n
    med = {c: statistics.median(r["rate"] for r in v) for c, v in runs.items()}
    print(
        f"3-master cluster (redis-server, loopback), 3 channels (one per master), {n:,} "
        f"messages each from 3 redis-benchmark processes at once; load average (1 min) at start "
        f"{load:.2f}, at end {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores\n"
    )
    classic = med["toolkit-classic"]
    print(f"| contender | received/s (median of {rounds}) | delivered (worst) | vs classic |")
    print("|---|---|---|---|")
    for contender, (_, _, label) in CONTENDERS.items():
        worst = min(r["count"] for r in runs[contender])
        print(
            f"| {label} | {med[contender]:,.0f} msg/s | {100 * worst / total:.1f}% | "
            f"{med[contender] / classic:.2f}x |"
        )
    print(
        f"\nsharded / classic on the same cluster: {med['toolkit-sharded'] / classic:.2f}x; "
        f"toolkit / redis-py ClusterPubSub (sharded): "
        f"{med['toolkit-sharded'] / med['redispy-sharded']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
