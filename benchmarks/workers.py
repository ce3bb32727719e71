"""Contenders, each run in a fresh process by ``benchmarks.run``.

``python -m benchmarks.workers '<json spec>'`` starts one subscriber (the toolkit, a redis-py
``get_message`` loop, the original ``redis-toolkit`` 0.4.0, valkey-glide's callback, or the
hand-written ceiling loop), prints ``READY`` once the server has confirmed the subscription,
counts what it receives until it has ``n`` messages or the stream has been quiet for ``idle``
seconds, and prints one JSON line with the figures (and the process's peak RSS).

A fresh process per measurement keeps contenders from sharing a GIL, a heap or leftover
threads. Times are ``time.monotonic()``, which is system-wide on Linux, so the parent can
subtract its own start time from the worker's last-message time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis

# Seconds between two looks at a handler-driven counter (the end time is this precise).
POLL = 0.005


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_rss_bytes() -> int:
    """The most this process has had resident so far (VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _ready() -> None:
    print("READY", flush=True)


def _wait_numsub(client: redis.Redis, channel: str, timeout: float = 10.0) -> None:
    """Wait until the server lists a subscriber on ``channel`` (for subscribers that do not
    say when they are ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1:
            return
        time.sleep(0.01)
    raise RuntimeError(f"no subscriber appeared on {channel!r}")


def _watch(counter: Any, n: int, idle: float, deadline: float) -> tuple[int, float, float]:
    """Poll ``counter()`` until it reaches ``n`` or stops moving for ``idle`` seconds.

    Returns (count, time of the first change, time of the last change).
    """
    last_count = 0
    first = last = 0.0
    while True:
        now = time.monotonic()
        count = counter()
        if count != last_count:
            if not last_count:
                first = now
            last_count, last = count, now
        if count >= n:
            return count, first, last
        if now > deadline or (last and now - last > idle):
            return count, first, last
        time.sleep(POLL)


def run_toolkit(spec: dict[str, Any]) -> dict[str, Any]:
    from redis_toolkit_nb import RedisOptions, RedisToolkit

    count = 0
    latencies: list[int] = []

    if spec.get("latency"):

        def handler(channel: str, data: Any) -> None:
            latencies.append(time.time_ns() - data["t"])

    else:

        def handler(channel: str, data: Any) -> None:
            nonlocal count
            count += 1

    opts: dict[str, Any] = {}
    if spec.get("queue_size"):
        opts["queue_size"] = spec["queue_size"]
    if "max_backlog_bytes" in spec:
        opts["max_backlog_bytes"] = spec["max_backlog_bytes"]
    if "buffer_size" in spec:
        opts["buffer_size"] = spec["buffer_size"]
    tk = RedisToolkit(
        url=spec["url"],
        channels=[spec["subscribe"]],
        message_handler=handler,
        options=RedisOptions(**opts),
    )
    try:
        _ready()
        counter = (lambda: len(latencies)) if spec.get("latency") else (lambda: count)
        got, first, last = _watch(
            counter, spec["n"], spec["idle"], time.monotonic() + spec["timeout"]
        )
        s = tk.stats
        return {
            "count": got,
            "first": first,
            "last": last,
            "received": s.received,
            "dropped": s.dropped,
            "disconnects": s.disconnects,
            "latencies": latencies if spec.get("latency") else None,
        }
    finally:
        tk.cleanup()


def run_redispy(spec: dict[str, Any]) -> dict[str, Any]:
    client = redis.Redis.from_url(spec["url"])
    ps = client.pubsub()
    name = spec["subscribe"]
    if _is_pattern(name):
        ps.psubscribe(name)
    else:
        ps.subscribe(name)
    deadline = time.monotonic() + 10
    while ps.get_message(timeout=1.0) is None:  # the subscription confirmation
        if time.monotonic() > deadline:
            raise RuntimeError("redis-py did not confirm the subscription")
    _ready()
    loads = orjson.loads
    get_message = ps.get_message
    latency = bool(spec.get("latency"))
    latencies: list[int] = []
    n, idle = spec["n"], spec["idle"]
    count = 0
    first = last = 0.0
    disconnects = 0
    end = time.monotonic() + spec["timeout"]
    while count < n:
        try:
            msg = get_message(ignore_subscribe_messages=True, timeout=0.2)
        except redis.ConnectionError:
            # redis-py reconnects and resubscribes on the next call; what was in flight is gone.
            disconnects += 1
            continue
        now = time.monotonic()
        if msg is None:
            if (last and now - last > idle) or now > end:
                break
            continue
        data = loads(msg["data"])
        if latency:
            latencies.append(time.time_ns() - data["t"])
        if not count:
            first = now
        count += 1
        last = now
    ps.close()
    client.close()
    return {
        "count": count,
        "first": first,
        "last": last,
        "disconnects": disconnects,
        "latencies": latencies if latency else None,
    }


def run_original(spec: dict[str, Any]) -> dict[str, Any]:
    """The original ``redis-toolkit`` 0.4.0 from PyPI, with its per-message logging off (its
    default logs every message at INFO, which would only make it slower)."""
    from redis_toolkit import RedisOptions, RedisToolkit

    count = 0

    def handler(channel: str, data: Any) -> None:
        nonlocal count
        count += 1

    client = redis.Redis.from_url(spec["url"])
    tk = RedisToolkit(
        redis=client,
        channels=[spec["subscribe"]],
        message_handler=handler,
        options=RedisOptions(is_logger_info=False, log_level="ERROR"),
    )
    try:
        _wait_numsub(redis.Redis.from_url(spec["url"]), spec["subscribe"])
        _ready()
        got, first, last = _watch(
            lambda: count, spec["n"], spec["idle"], time.monotonic() + spec["timeout"]
        )
        return {"count": got, "first": first, "last": last}
    finally:
        tk.cleanup()


def _address(url: str) -> tuple[str, int]:
    """Host and port of a ``redis://`` URL (the harness's servers have no password)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def run_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """The practical Python ceiling: one thread, a raw socket, no queue, no library.

    SUBSCRIBE over RESP2, then ``recv_into`` a large buffer, feed ``hiredis.Reader`` and, for
    every message, decode the payload with orjson and call a counting handler(channel, data)
    (channel names as ``str``, like the toolkit's). Nothing else: no reconnect, no health
    check, no stop signal, no overflow policy. A server cut-off ends the run (counted).
    """
    import hiredis

    host, port = _address(spec["url"])
    name = spec["subscribe"]
    pattern = _is_pattern(name)
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_resp(b"PSUBSCRIBE" if pattern else b"SUBSCRIBE", name.encode()))
    reader = hiredis.Reader()
    buf = bytearray(spec.get("recv_buffer", 64 * 1024))
    view = memoryview(buf)
    while (reply := reader.gets()) is False:  # the subscription confirmation
        got = sock.recv_into(buf)
        if not got:
            raise RuntimeError("the server closed the connection before confirming")
        reader.feed(view, 0, got)
    _ready()

    count = 0

    def handler(channel: str, data: Any) -> None:
        nonlocal count
        count += 1

    loads = orjson.loads
    names: dict[bytes, str] = {}
    n, idle = spec["n"], spec["idle"]
    first = last = 0.0
    disconnects = 0
    end = time.monotonic() + spec["timeout"]
    recv_into, feed, gets, clock = sock.recv_into, reader.feed, reader.gets, time.monotonic
    # First wait: up to the whole run for the burst to start; afterwards ``idle`` of quiet.
    sock.settimeout(min(spec["timeout"], 30.0))
    while count < n:
        try:
            got = recv_into(buf)
        except TimeoutError:
            if count or clock() > end:
                break
            continue
        except OSError:
            disconnects += 1
            break
        if not got:
            disconnects += 1  # the server cut this subscriber off
            break
        if not first:
            first = clock()
            sock.settimeout(idle)
        feed(view, 0, got)
        # [b"message", channel, payload] or [b"pmessage", pattern, channel, payload]
        while (reply := gets()) is not False:
            channel = reply[-2]
            handler(
                names.get(channel) or names.setdefault(channel, channel.decode()), loads(reply[-1])
            )
        last = clock()
    sock.close()
    return {"count": count, "first": first, "last": last, "disconnects": disconnects}


def run_glide(spec: dict[str, Any]) -> dict[str, Any]:
    """valkey-glide-sync (Rust core): the subscription is part of the client's configuration
    and every message is handed to a callback, which decodes it with orjson and counts."""
    from glide_sync import GlideClient, GlideClientConfiguration, NodeAddress

    host, port = _address(spec["url"])
    name = spec["subscribe"]
    modes = GlideClientConfiguration.PubSubChannelModes
    count = 0
    loads = orjson.loads

    def callback(msg: Any, context: Any) -> None:
        nonlocal count
        loads(msg.message)
        count += 1

    config = GlideClientConfiguration(
        [NodeAddress(host, port)],
        pubsub_subscriptions=GlideClientConfiguration.PubSubSubscriptions(
            {modes.Pattern if _is_pattern(name) else modes.Exact: {name}}, callback, None
        ),
    )
    client = GlideClient.create(config)
    try:
        # The client subscribes on its own; its state says when the server has confirmed.
        deadline = time.monotonic() + 10
        while not any(client.get_subscriptions().actual_subscriptions.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"glide did not subscribe to {name!r}")
            time.sleep(0.01)
        _ready()
        got, first, last = _watch(
            lambda: count, spec["n"], spec["idle"], time.monotonic() + spec["timeout"]
        )
        return {"count": got, "first": first, "last": last}
    finally:
        client.close()


def run_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Push ``n`` messages through a toolkit subscriber with ``buffer_size`` entries, in
    rounds of ``round`` (each fully delivered before the next), and sample RSS."""
    from redis_toolkit_nb import RedisOptions, RedisToolkit

    count = 0

    def handler(channel: str, data: Any) -> None:
        nonlocal count
        count += 1

    tk = RedisToolkit(
        url=spec["url"],
        channels=[spec["subscribe"]],
        message_handler=handler,
        options=RedisOptions(buffer_size=spec["buffer_size"]),
    )
    _ready()
    cmd = spec["bench_cmd"]
    per_round = spec["round"]
    samples: list[tuple[int, int]] = []
    base = 0
    pushed = 0
    try:
        while pushed < spec["n"]:
            subprocess.run(cmd, check=True, capture_output=True)
            pushed += per_round
            deadline = time.monotonic() + 60
            while True:
                s = tk.stats
                if s.received >= pushed and s.pending == 0 and count + s.dropped >= s.received:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round stalled at {s}")
                time.sleep(0.005)
            rss = rss_bytes()
            samples.append((pushed, rss))
            if not base and pushed >= spec["warmup"]:
                base = rss
        s = tk.stats
        return {
            "count": count,
            "received": s.received,
            "dropped": s.dropped,
            "disconnects": s.disconnects,
            "buffered": len(tk.subscriber.buffer) if tk.subscriber and tk.subscriber.buffer else 0,
            "rss_warm": base,
            "rss_end": samples[-1][1],
            "rss_max": max(r for _, r in samples if _ >= spec["warmup"]),
            "pushed": pushed,
        }
    finally:
        tk.cleanup()


KINDS = {
    "toolkit": run_toolkit,
    "redispy": run_redispy,
    "original": run_original,
    "ceiling": run_ceiling,
    "glide": run_glide,
    "memory": run_memory,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = KINDS[spec["kind"]](spec)
    result["pid"] = os.getpid()
    result["peak_rss"] = peak_rss_bytes()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
