"""Request-reply round trips and asyncio ``listen()`` ingest, against their baselines.

Run from the repository root::

    .venv/bin/python -m benchmarks.reqreply            # the full run (about a minute)
    .venv/bin/python -m benchmarks.reqreply --quick    # a smoke run

It starts its own ``redis-server`` on a free loopback port and measures, alternating the
contenders round by round, each side in a fresh process:

- request round trips per second, one requester and one responder: ``request()`` against
  ``serve()``, and the hand-written redis-py equivalent (one ``PSUBSCRIBE`` for the replies,
  ``get_message`` loops, orjson) in the same run;
- ingest of a burst published by ``redis-benchmark -c 1 -P 64``: ``async for`` over
  ``aio.RedisToolkit.listen()`` in ``asyncio.run`` against the sync subscriber with a counting
  handler (target: at least 0.8x of it, everything delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import redis

from benchmarks.run import bench_cmd, spawn_worker
from redis_toolkit_nb import RedisServer

REQ_CHANNEL = "bench:req"
BURST_CHANNEL = "bench"
IDLE = 2.0  # seconds without a message after which a subscriber reports what it got


# ---- workers (each in its own process) -------------------------------------------------------
def _ready() -> None:
    print("READY", flush=True)


def serve_toolkit(spec: dict[str, Any]) -> dict[str, Any]:
    from redis_toolkit_nb import RedisToolkit

    tk = RedisToolkit(url=spec["url"])
    tk.serve(REQ_CHANNEL, lambda data: {"echo": data})
    _ready()
    sys.stdin.read()  # until the harness closes our stdin
    served = tk.request_stats.served
    tk.cleanup()
    return {"served": served}


def serve_redispy(spec: dict[str, Any]) -> dict[str, Any]:
    """The hand-written responder: a redis-py ``get_message`` loop, orjson, ``publish``."""
    client = redis.Redis.from_url(spec["url"])
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(REQ_CHANNEL)
    while ps.get_message(timeout=1.0) is None and not ps.subscribed:
        pass
    _ready()
    served = 0
    import select

    while not select.select([sys.stdin], [], [], 0)[0]:
        msg = ps.get_message(timeout=0.2)
        if msg is None:
            continue
        request = orjson.loads(msg["data"])
        client.publish(request["response_channel"], orjson.dumps({"echo": request["data"]}))
        served += 1
    ps.close()
    client.close()
    return {"served": served}


def listen_sync(spec: dict[str, Any]) -> dict[str, Any]:
    from redis_toolkit_nb import RedisToolkit

    count = 0

    def handler(channel: str, data: Any) -> None:
        nonlocal count
        count += 1

    tk = RedisToolkit(url=spec["url"], channels=[BURST_CHANNEL], message_handler=handler)
    _ready()
    last_count, first, last = 0, 0.0, 0.0
    while count < spec["n"]:
        now = time.monotonic()
        if count != last_count:
            first = first or now
            last_count, last = count, now
        elif last and now - last > IDLE:
            break
        time.sleep(0.002)
    last = time.monotonic() if count >= spec["n"] else last
    s = tk.stats
    tk.cleanup()
    return {"count": count, "first": first, "last": last, "dropped": s.dropped}


def listen_aio(spec: dict[str, Any]) -> dict[str, Any]:
    from redis_toolkit_nb.aio import RedisToolkit

    async def main() -> dict[str, Any]:
        n = spec["n"]
        count = 0
        first = 0.0
        async with RedisToolkit(url=spec["url"]) as tk, tk.listen(BURST_CHANNEL) as stream:

            async def watchdog() -> None:
                # Ends the loop below if the burst stops short (a lost message would hang it).
                seen, quiet = -1, time.monotonic()
                while True:
                    await asyncio.sleep(0.1)
                    if count != seen:
                        seen, quiet = count, time.monotonic()
                    elif time.monotonic() - quiet > IDLE:
                        stream.close()
                        return

            dog = asyncio.create_task(watchdog())
            _ready()
            async for _channel, _data in stream:  # the plain loop a user writes
                if not count:
                    first = time.monotonic()
                count += 1
                if count == n:
                    break
            last = time.monotonic()
            dog.cancel()
            dropped = stream.stats.dropped
        return {"count": count, "first": first, "last": last, "dropped": dropped}

    return asyncio.run(main())


KINDS = {
    "serve-toolkit": serve_toolkit,
    "serve-redispy": serve_redispy,
    "listen-sync": listen_sync,
    "listen-aio": listen_aio,
}


# ---- requesters (in the harness process) -----------------------------------------------------
def request_toolkit(url: str, n: int) -> float:
    from redis_toolkit_nb import RedisToolkit

    with RedisToolkit(url=url) as tk:
        tk.request(REQ_CHANNEL, -1)  # warm: the reply subscription starts here
        t = time.perf_counter()
        for i in range(n):
            if tk.request(REQ_CHANNEL, i) != {"echo": i}:
                raise RuntimeError("wrong reply")
        return n / (time.perf_counter() - t)


def request_redispy(url: str, n: int) -> float:
    """The hand-written requester: one pattern subscription for the replies, a publish and a
    ``get_message`` loop per request."""
    client = redis.Redis.from_url(url)
    ps = client.pubsub(ignore_subscribe_messages=True)
    uid = uuid.uuid4().hex
    ps.psubscribe(f"responses:{uid}:*")
    while ps.get_message(timeout=1.0) is None and not ps.subscribed:
        pass

    def ask(i: int) -> Any:
        rid = f"{uid}:{i}"
        channel = f"responses:{rid}"
        request = {"id": rid, "response_channel": channel, "data": i}
        client.publish(REQ_CHANNEL, orjson.dumps(request))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = ps.get_message(timeout=1.0)
            if msg is not None and msg["channel"] == channel.encode():
                return orjson.loads(msg["data"])
        raise TimeoutError("no reply")

    ask(-1)
    t = time.perf_counter()
    for i in range(n):
        if ask(i) != {"echo": i}:
            raise RuntimeError("wrong reply")
    rate = n / (time.perf_counter() - t)
    ps.close()
    client.close()
    return rate


# ---- harness ---------------------------------------------------------------------------------
def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return spawn_worker("benchmarks.reqreply", spec, f"worker {spec['kind']}")


def finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate("", timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def round_trips(url: str, n: int) -> dict[str, float]:
    rates = {}
    for kind, requester in (("toolkit", request_toolkit), ("redispy", request_redispy)):
        proc = spawn({"kind": f"serve-{kind}", "url": url})
        try:
            rates[kind] = requester(url, n)
        finally:
            finish(proc, 30)
    return rates


def ingest(srv: RedisServer, n: int) -> dict[str, dict[str, Any]]:
    results = {}
    for kind in ("listen-sync", "listen-aio"):
        proc = spawn({"kind": kind, "url": srv.url, "n": n})
        t0 = time.monotonic()
        subprocess.run(bench_cmd(srv, n, BURST_CHANNEL), check=True, capture_output=True)
        result = finish(proc, 300)
        result["rate"] = result["count"] / max(result["last"] - t0, 1e-9)
        results[kind] = result
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reqreply")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print("RESULT " + json.dumps(KINDS[spec["kind"]](spec)), flush=True)
        return 0
    requests, burst, rounds = (500, 102_400, 1) if args.quick else (5_000, 1_000_000, 3)
    rt: dict[str, list[float]] = {"toolkit": [], "redispy": []}
    ing: dict[str, list[dict[str, Any]]] = {"listen-sync": [], "listen-aio": []}
    with RedisServer("redis-server") as srv:
        for _ in range(rounds):
            for kind, rate in round_trips(srv.url, requests).items():
                rt[kind].append(rate)
            for kind, result in ingest(srv, burst).items():
                ing[kind].append(result)
    med = {k: statistics.median(v) for k, v in rt.items()}
    irate = {k: statistics.median(r["rate"] for r in v) for k, v in ing.items()}
    worst = {k: min(r["count"] for r in v) for k, v in ing.items()}
    ratio = irate["listen-aio"] / irate["listen-sync"]
    print(f"| measurement | contender | rate (median of {rounds}) | delivered (worst) | ratio |")
    print("|---|---|---|---|---|")
    print(
        f"| {requests:,} request round trips | request() / serve() | "
        f"{med['toolkit']:,.0f} req/s | | {med['toolkit'] / med['redispy']:.2f}x |"
    )
    print(
        f"| {requests:,} request round trips | redis-py by hand (get_message loops) | "
        f"{med['redispy']:,.0f} req/s | | 1.00x |"
    )
    for kind, label in (
        ("listen-aio", "aio listen(), async for"),
        ("listen-sync", "sync subscriber, counting handler"),
    ):
        pct = 100 * worst[kind] / burst
        r = irate[kind] / irate["listen-sync"]
        print(
            f"| burst of {burst:,} | {label} | {irate[kind]:,.0f} msg/s | {pct:.1f}% | {r:.2f}x |"
        )
    ok = ratio >= 0.8 and worst["listen-aio"] == burst
    print(f"\nasync listen() target (>= 0.8x of sync, 100% delivered): {'MET' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
