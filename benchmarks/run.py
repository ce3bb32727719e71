"""The throughput benchmark: the toolkit against redis-py, the original redis-toolkit,
valkey-glide and a hand-written ceiling loop.

Run from the repository root::

    .venv/bin/python -m benchmarks.run            # the full run (a few minutes)
    .venv/bin/python -m benchmarks.run --quick    # a smoke run (seconds), as CI does
    .venv/bin/python -m benchmarks.run --markdown benchmarks/RESULTS.md

It starts its own ``redis-server`` on a free loopback port (never 6379), runs every contender
in a fresh process, alternating them round by round, and prints one table: rates, how much
of each burst was delivered, peak RSS, server disconnects, ratios against the baselines
(redis-py, and the ceiling: a raw socket + hiredis loop with nothing else in it), the targets
of issues 3 and 8, and the machine. Subscribers are fed by ``redis-benchmark -c 1 -P 64``,
which is also the server's ceiling (PUBLISH with nobody listening).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from redis_toolkit_nb import RedisOptions, RedisServer, RedisToolkit

ROOT = Path(__file__).resolve().parent.parent
# ~100 bytes of JSON; redis-benchmark replaces __rand_int__ (with -r) by 12 random digits, so
# every payload differs and decodes to a fresh object, as real traffic would.
PAYLOAD = (
    '{"id":"__rand_int__","sensor":"temperature-01","value":21.5,"unit":"C",'
    '"ok":true,"tags":["a","b"],"seq":1}'
)
CHANNEL = "bench"
PATTERN_SUB, PATTERN_CHANNEL = "bench.*", "bench.sensor"
CUTOFF_LINE = "output buffer limits"  # redis-server's log line when it cuts a client off


@dataclass
class Sizes:
    ingest: int
    burst: int
    rounds: int
    publish_many: int
    publish_one: int
    ceiling: int
    latency_seconds: float
    memory_total: int
    memory_warmup: int
    memory_round: int


# Burst sizes are multiples of 64 (redis-benchmark's -P), so it publishes exactly that many.
FULL = Sizes(512_000, 1_000_000, 3, 200_000, 20_000, 1_000_000, 5.0, 10_000_000, 1_000_000, 80_000)
QUICK = Sizes(51_200, 102_400, 1, 20_000, 2_000, 102_400, 1.0, 400_000, 160_000, 80_000)


@dataclass
class Row:
    section: str
    contender: str
    rate: str = ""
    delivered: str = ""
    disconnects: str = ""
    ratio: str = ""
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---- helpers ---------------------------------------------------------------------------------
def spawn_worker(
    module: str, spec: dict[str, Any], what: str, stdin: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """``python -m module --worker SPEC`` in a fresh process, returned once it printed
    ``READY`` (its subscription confirmed); ``what`` names it if it fails first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--worker", json.dumps(spec)],
        cwd=ROOT,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        proc.kill()
        raise RuntimeError(f"{what} failed: {proc.communicate()[1][-2000:]}")
    return proc


def bench_cmd(srv: RedisServer, n: int, channel: str, payload: str = PAYLOAD) -> list[str]:
    """redis-benchmark arguments: one connection, 64 commands per write. Arguments after the
    options are sent as the command, each one a separate RESP bulk string (no shell quoting
    involved since we pass argv directly)."""
    exe = shutil.which("redis-benchmark")
    if not exe:
        sys.exit("redis-benchmark is not on PATH (apt-get install redis-tools)")
    return [
        exe,
        "-h",
        srv.host,
        "-p",
        str(srv.port),
        "-c",
        "1",
        "-P",
        "64",
        "-n",
        str(n),
        "-r",
        "1000000",
        "-q",
        "publish",
        channel,
        payload,
    ]


def cutoffs(srv: RedisServer) -> int:
    """How many times the server has cut a client off for its output buffer so far."""
    log = Path(srv._dir or "", "server.log")  # noqa: SLF001 - the harness owns this server
    try:
        return log.read_text(errors="replace").count(CUTOFF_LINE)
    except OSError:
        return 0


def publishes(srv: RedisServer) -> int:
    """PUBLISH commands the server has executed so far."""
    stats = redis.Redis.from_url(srv.url).info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def run_worker(spec: dict[str, Any], srv: RedisServer, publish: Any) -> dict[str, Any]:
    """Start a contender process, wait for READY, call ``publish()``, collect its RESULT."""
    before = cutoffs(srv)
    pub_before = publishes(srv)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.workers", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # The original redis-toolkit prints a banner on stdout: skip lines up to READY.
        while (line := proc.stdout.readline()) and line.strip() != "READY":
            pass
        if not line:
            proc.wait(30)
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"worker {spec['kind']} failed to start: {err[-2000:]}")
        t0 = time.monotonic()
        published = publish()
        out, err = proc.communicate(timeout=spec["timeout"] + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    results = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not results:
        raise RuntimeError(f"worker {spec['kind']} failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(results[-1][len("RESULT ") :])
    result["t0"] = t0
    result["publish_seconds"] = published
    result["published"] = publishes(srv) - pub_before
    result["cutoffs"] = cutoffs(srv) - before
    return result


def burst(srv: RedisServer, n: int, channel: str) -> Any:
    def go() -> float:
        t = time.monotonic()
        subprocess.run(bench_cmd(srv, n, channel), check=True, capture_output=True)
        return time.monotonic() - t

    return go


def fmt_rate(x: float) -> str:
    return f"{x / 1000:,.0f}k msg/s" if x >= 10_000 else f"{x:,.0f} msg/s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ---- measurements ----------------------------------------------------------------------------
CEILING_TARGET = 0.8  # issue 8: the toolkit within 0.8x of the hand-written ceiling loop


def glide_version() -> str | None:
    """valkey-glide-sync's version, or None when it is not installed (it is optional)."""
    if importlib.util.find_spec("glide_sync") is None:
        return None
    try:
        return importlib.metadata.version("valkey-glide-sync")
    except importlib.metadata.PackageNotFoundError:
        return "?"


SUBSCRIBERS = {
    "toolkit": "redis_toolkit_nb",
    "ceiling": "raw socket + hiredis batch loop, one thread (the practical Python ceiling)",
    "glide": "valkey-glide-sync callback + orjson.loads",
    "redispy": "redis-py get_message + orjson.loads",
    "original": "redis-toolkit 0.4.0",
}
GLIDE_MISSING = "not installed (pip install -e '.[bench]')"


@dataclass
class Contender:
    key: str
    kind: str
    label: str
    extra: dict[str, Any] = field(default_factory=dict)


def compete(
    srv: RedisServer,
    contenders: list[Contender],
    sub: str,
    pub: str,
    n: int,
    rounds: int,
    idle: float,
    timeout: float,
) -> dict[str, list[dict[str, Any]]]:
    """Run every contender ``rounds`` times against a burst of ``n``, rotating who goes first
    each round so a slow stretch of the machine does not always hit the same one."""
    got: dict[str, list[dict[str, Any]]] = {c.key: [] for c in contenders}
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            spec = {
                "kind": c.kind,
                "url": srv.url,
                "subscribe": sub,
                "n": n,
                "idle": idle,
                "timeout": timeout,
            } | c.extra
            res = run_worker(spec, srv, burst(srv, n, pub))
            res["rate"] = res["count"] / max(res["last"] - res["t0"], 1e-9)
            got[c.key].append(res)
    return got


def median_rate(runs: list[dict[str, Any]]) -> float:
    return statistics.median(x["rate"] for x in runs)


def rate_cell(runs: list[dict[str, Any]]) -> str:
    peak = max(x["peak_rss"] for x in runs) / (1024 * 1024)
    return f"{fmt_rate(median_rate(runs))}, peak RSS {peak:.0f} MB"


def subscriber_contenders(pattern: bool = False) -> list[Contender]:
    found = [
        Contender("toolkit", "toolkit", SUBSCRIBERS["toolkit"]),
        Contender("ceiling", "ceiling", SUBSCRIBERS["ceiling"]),
    ]
    version = glide_version()
    if version:
        label = SUBSCRIBERS["glide"].replace("sync", f"sync {version}")
        found.append(Contender("glide", "glide", label))
    found.append(Contender("redispy", "redispy", SUBSCRIBERS["redispy"]))
    if not pattern:  # the original library has no pattern subscriptions
        found.append(Contender("original", "original", SUBSCRIBERS["original"]))
    return found


def glide_missing_row(section: str) -> list[Row]:
    if glide_version():
        return []
    return [Row(section, SUBSCRIBERS["glide"], GLIDE_MISSING)]


def measure_ingest(srv: RedisServer, sz: Sizes, pattern: bool) -> list[Row]:
    sub, pub = (PATTERN_SUB, PATTERN_CHANNEL) if pattern else (CHANNEL, CHANNEL)
    contenders = subscriber_contenders(pattern)
    n = sz.ingest
    # Default options: the burst arrives faster than any Python handler runs, and what the
    # toolkit's handler queue cannot hold waits unparsed in the reader's backlog.
    got = compete(srv, contenders, sub, pub, n, sz.rounds, idle=1.0, timeout=120)
    section = "ingest, pattern" if pattern else "ingest, channel"
    base = median_rate(got["redispy"])
    ceiling = median_rate(got["ceiling"])
    rows = []
    for c in contenders:
        runs = got[c.key]
        rate = median_rate(runs)
        delivered = min(x["count"] / x["published"] for x in runs)
        ratio = rate / base if base else 0.0
        of_ceiling = rate / ceiling if ceiling else 0.0
        target = ""
        if c.key == "toolkit":
            need = 2.5 if pattern else 3.0
            target = f">= {need}x redis-py: {verdict(ratio >= need)}"
            if not pattern:
                ok = of_ceiling >= CEILING_TARGET and delivered == 1.0
                target += f"; >= {CEILING_TARGET}x ceiling, 100% delivered: {verdict(ok)}"
        rows.append(
            Row(
                section,
                c.label,
                rate_cell(runs),
                f"{delivered:.1%} of {n:,} (worst round)",
                str(sum(x["cutoffs"] for x in runs)),
                f"{ratio:.2f}x redis-py, {of_ceiling:.2f}x ceiling",
                target,
                {"rates": [round(x["rate"]) for x in runs]},
            )
        )
    return rows + glide_missing_row(section)


def measure_burst(srv: RedisServer, sz: Sizes) -> list[Row]:
    n = sz.burst
    contenders = subscriber_contenders()
    contenders.insert(
        1,
        Contender(
            "toolkit0",
            "toolkit",
            f"redis_toolkit_nb, max_backlog_bytes=0 (the {QUEUE:,} queue alone; drop_oldest)",
            {"max_backlog_bytes": 0},
        ),
    )
    contenders[0].label = "redis_toolkit_nb, default options"
    got = compete(srv, contenders, CHANNEL, CHANNEL, n, sz.rounds, idle=1.5, timeout=180)
    section = f"burst of {n:,}"
    ceiling = median_rate(got["ceiling"])
    rows = []
    for c in contenders:
        runs = got[c.key]
        worst = min(runs, key=lambda x: x["count"] / max(x["published"], 1))
        rate = median_rate(runs)
        of_ceiling = rate / ceiling if ceiling else 0.0
        delivered = (
            f"{worst['count']:,} of {worst['published']:,} "
            f"({worst['count'] / worst['published']:.1%})"
        )
        if len(runs) > 1:
            delivered += " (worst round)"
        if "dropped" in worst:
            delivered += f"; dropped (counted) {worst['dropped']:,}"
        target = ""
        if c.key == "toolkit":
            whole = all(
                x["count"] == x["published"] == n
                and x["cutoffs"] == 0
                and x.get("disconnects", 0) == 0
                for x in runs
            )
            close = of_ceiling >= CEILING_TARGET
            target = (
                f"{n:,} handler calls, 0 disconnects: {verdict(whole)}; "
                f">= {CEILING_TARGET}x ceiling: {verdict(close)}"
            )
        rows.append(
            Row(
                section,
                c.label,
                rate_cell(runs),
                delivered,
                str(sum(x["cutoffs"] for x in runs)),
                f"{of_ceiling:.2f}x ceiling",
                target,
            )
        )
    return rows + glide_missing_row(section)


def _values(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "sensor": "temperature-01", "value": 21.5, "unit": "C", "ok": True, "seq": i}
        for i in range(count)
    ]


def measure_publish(srv: RedisServer, sz: Sizes) -> list[Row]:
    # The original library prints banners and INFO lines at import and creation, even with
    # its logging turned down: keep them out of the report.
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        from redis_toolkit import RedisOptions as OldOptions
        from redis_toolkit import RedisToolkit as OldToolkit

        old = OldToolkit(
            redis=redis.Redis.from_url(srv.url),
            options=OldOptions(is_logger_info=False, log_level="ERROR"),
        )
    client = redis.Redis.from_url(srv.url)
    tk = RedisToolkit(url=srv.url)
    many = _values(sz.publish_many)
    one = _values(sz.publish_one)
    dumps = orjson.dumps

    def toolkit_many() -> None:
        assert tk.publish_many("pm", many) == len(many)

    def redispy_pipeline() -> None:
        for i in range(0, len(many), 1000):
            pipe = client.pipeline(transaction=False)
            for v in many[i : i + 1000]:
                pipe.publish("pm", dumps(v))
            pipe.execute()

    # One at a time: blocks of BLOCK calls, the contenders interleaved block by block, so
    # a slow stretch of the machine weighs on all of them alike.
    block = 200

    def toolkit_one(values: list[Any]) -> None:
        publish = tk.publisher
        for v in values:
            publish("p1", v)

    def redispy_one(values: list[Any]) -> None:
        publish = client.publish
        for v in values:
            publish("p1", dumps(v))

    def original_one(values: list[Any]) -> None:
        publish = old.publisher
        for v in values:
            publish("p1", v)

    bulk = {"publish_many": toolkit_many, "pipeline": redispy_pipeline}
    single = {"publisher": toolkit_one, "publish": redispy_one, "original": original_one}
    times: dict[str, list[float]] = {k: [] for k in [*bulk, *single]}
    cpu: dict[str, list[float]] = {k: [] for k in single}
    try:
        for r in range(max(sz.rounds, 3)):
            names = list(bulk)
            for name in names[r % 2 :] + names[: r % 2]:
                t = time.perf_counter()
                bulk[name]()
                times[name].append(time.perf_counter() - t)
        for r, i in enumerate(range(0, len(one), block)):
            names = list(single)
            for name in names[r % 3 :] + names[: r % 3]:
                values = one[i : i + block]
                t, c = time.perf_counter(), time.thread_time()
                single[name](values)
                times[name].append((time.perf_counter() - t) / len(values))
                cpu[name].append((time.thread_time() - c) / len(values))
    finally:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            old.cleanup()
        tk.cleanup()
        client.close()

    rate_many = sz.publish_many / statistics.median(times["publish_many"])
    rate_pipe = sz.publish_many / statistics.median(times["pipeline"])
    # Median per-call time over the blocks: robust to a burst of load from elsewhere.
    us = {k: statistics.median(times[k]) * 1e6 for k in single}
    cpu_us = {k: sum(cpu[k]) / len(cpu[k]) * 1e6 for k in single}
    ceiling = measure_ceiling(srv, sz.ceiling)
    cost = us["publisher"] / us["publish"]
    return [
        Row(
            "bulk publish",
            f"publish_many(), {sz.publish_many:,} dicts",
            fmt_rate(rate_many),
            ratio=f"{rate_many / rate_pipe:.2f}x",
            target=f">= 4x pipeline: {verdict(rate_many / rate_pipe >= 4)}",
        ),
        Row(
            "bulk publish",
            "redis-py pipeline(transaction=False), 1,000 per batch, orjson",
            fmt_rate(rate_pipe),
            ratio="1.00x",
        ),
        Row(
            "bulk publish",
            "redis-benchmark -c 1 -P 64 PUBLISH, no subscriber (server ceiling)",
            fmt_rate(ceiling),
            ratio=f"{ceiling / rate_pipe:.2f}x",
        ),
        Row(
            "one at a time",
            "publisher()",
            f"{1e6 / us['publisher']:,.0f} msg/s ({us['publisher']:.1f} us/call, "
            f"{cpu_us['publisher']:.1f} us CPU)",
            ratio=f"{cost:.2f}x the cost",
            target=f"<= 1.10x redis-py publish(): {verdict(cost <= 1.10)}",
        ),
        Row(
            "one at a time",
            "redis-py publish(orjson.dumps(v))",
            f"{1e6 / us['publish']:,.0f} msg/s ({us['publish']:.1f} us/call, "
            f"{cpu_us['publish']:.1f} us CPU)",
            ratio="1.00x",
        ),
        Row(
            "one at a time",
            "redis-toolkit 0.4.0 publisher()",
            f"{1e6 / us['original']:,.0f} msg/s ({us['original']:.1f} us/call, "
            f"{cpu_us['original']:.1f} us CPU)",
            ratio=f"{us['original'] / us['publish']:.2f}x the cost",
        ),
    ]


def measure_ceiling(srv: RedisServer, n: int) -> float:
    out = subprocess.run(
        bench_cmd(srv, n, "nobody-listens"), check=True, capture_output=True, text=True
    ).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    if not found:
        raise RuntimeError(f"cannot read redis-benchmark's output: {out[-500:]}")
    return float(found[-1])


def paced_publisher(srv: RedisServer, rate: int, seconds: float) -> Any:
    """Publish ``rate`` messages a second for ``seconds``, each stamped with time.time_ns()
    when it is packed; due messages go out every millisecond in one pipeline."""

    def go() -> int:
        client = redis.Redis.from_url(srv.url)
        total = int(rate * seconds)
        pad = "x" * 40
        sent = 0
        start = time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                pipe = client.pipeline(transaction=False)
                for i in range(sent, due):
                    pipe.publish(CHANNEL, orjson.dumps({"t": time.time_ns(), "seq": i, "p": pad}))
                pipe.execute()
                sent = due
            else:
                time.sleep(max(0.0, start + (sent + 1) / rate - time.monotonic()))
        client.close()
        return sent

    return go


def measure_latency(srv: RedisServer, sz: Sizes, rate: int = 10_000) -> list[Row]:
    n = int(rate * sz.latency_seconds)
    rows = []
    for kind in ("toolkit", "redispy"):
        spec = {
            "kind": kind,
            "url": srv.url,
            "subscribe": CHANNEL,
            "n": n,
            "idle": 2.0,
            "timeout": 60,
            "latency": True,
        }
        res = run_worker(spec, srv, paced_publisher(srv, rate, sz.latency_seconds))
        lat = sorted(res["latencies"])
        if not lat:
            raise RuntimeError(f"{kind}: no message arrived in the latency run")

        def pct(p: float, lat: list[int] = lat) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6

        rows.append(
            Row(
                f"latency at {rate:,} msg/s",
                SUBSCRIBERS[kind],
                f"p50 {pct(0.50):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1] / 1e6:.2f} ms",
                f"{len(lat):,} of {n:,}",
                str(res["cutoffs"]),
                "",
                "reported" if kind == "toolkit" else "",
            )
        )
    return rows


def measure_memory(srv: RedisServer, sz: Sizes, buffer_size: int = 100_000) -> list[Row]:
    spec = {
        "kind": "memory",
        "url": srv.url,
        "subscribe": CHANNEL,
        "n": sz.memory_total,
        "warmup": sz.memory_warmup,
        "round": sz.memory_round,
        "buffer_size": buffer_size,
        "bench_cmd": bench_cmd(srv, sz.memory_round, CHANNEL),
        "timeout": 600,
    }
    res = run_worker(spec, srv, lambda: None)
    mb = 1024 * 1024
    growth = (res["rss_end"] - res["rss_warm"]) / mb
    peak = (res["rss_max"] - res["rss_warm"]) / mb
    return [
        Row(
            "memory",
            f"buffer_size={buffer_size:,}, {res['pushed']:,} messages pushed",
            f"RSS {res['rss_warm'] / mb:.0f} MB after {sz.memory_warmup:,} -> "
            f"{res['rss_end'] / mb:.0f} MB at the end (peak +{peak:.1f} MB)",
            f"{res['count']:,} delivered, {res['dropped']:,} dropped, {res['buffered']:,} buffered",
            str(res["cutoffs"]),
            f"+{growth:.1f} MB",
            f"growth < 50 MB: {verdict(growth < 50)}",
        )
    ]


# ---- report ----------------------------------------------------------------------------------
def machine(srv: RedisServer) -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = redis.Redis.from_url(srv.url).info("server")

    def ver(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "redis-py": ver("redis"),
        "hiredis": ver("hiredis"),
        "orjson": ver("orjson"),
        "redis-toolkit (original)": ver("redis-toolkit"),
        "valkey-glide-sync": ver("valkey-glide-sync"),
        "redis_toolkit_nb": ver("redis_toolkit_nb"),
        "server": f"redis-server {info.get('redis_version')} on 127.0.0.1 (loopback)",
    }


def render(rows: list[Row], mach: dict[str, str], command: str, seconds: float, load: float) -> str:
    out = [
        f"Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"Command: `{command}` ({seconds:.0f} s)",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in mach.items()),
        f"Load average (1 min) at start {load:.2f}, at end {os.getloadavg()[0]:.2f} "
        "(anything else running shares the cores and lowers every figure)",
        f"Payload: ~{len(PAYLOAD.replace('__rand_int__', '0' * 12))}-byte JSON, published by "
        "`redis-benchmark -c 1 -P 64`",
        "",
        "| measurement | contender | rate | delivered | server cut-offs | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.section, r.contender, r.rate, r.delivered, r.disconnects, r.ratio, r.target]
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(out) + "\n" + NOTES


#: The toolkit's default parsed queue (``RedisOptions.queue_size``), named in a row's label.
QUEUE = RedisOptions().queue_size

NOTES = """
Notes:
- Subscriber rates are handler calls divided by the time from the start of the burst to the
  last handler call (median of the rounds). Each contender runs in a fresh process.
- "server cut-offs": times redis-server logged closing a client for its output buffer
  (`client-output-buffer-limit pubsub 32mb 8mb 60`); what was in flight then is lost.
- The toolkit runs with default options: what its dispatcher has not taken yet waits unparsed
  in the reader's backlog (max_backlog_bytes=256 MB); the dispatcher parses what it delivers,
  so a burst is delivered whole. The max_backlog_bytes=0 row shows the queue alone: the
  excess is dropped by the overflow policy, and counted.
- "ceiling" is benchmarks/workers.py's run_ceiling: one thread, a raw socket, SUBSCRIBE over
  RESP2, recv_into a 64 KB buffer, hiredis.Reader, orjson.loads and a counting
  handler(channel, data) per message; no queue, no reconnect, no overflow policy. The ratio
  toolkit/ceiling is what the toolkit's safety (a reader thread, a bounded queue, a
  dispatcher, stats) costs; issue 8's target is >= 0.8x with every message of the burst.
- valkey-glide-sync subscribes through its configuration and calls back per message (its Rust
  core reads the socket and queues what the callback has not taken yet, without limit: hence
  its peak RSS). After a server cut-off it reconnects and resubscribes, and counts on.
- Peak RSS is the worker process's VmHWM (the most it had resident), worst round.
- redis-py, redis-toolkit 0.4.0 and the ceiling rates count only what they handled before
  being cut off: the ceiling has no backlog, so it is cut off whenever it falls 32 MB behind
  the publisher, and its rate then covers the part of the burst it handled.
- The redis-benchmark row is its own limit with one connection and 64 commands per write;
  publish_many writes 2,000 per write and can exceed it.
"""

SECTIONS = ("ingest", "pattern", "burst", "publish", "latency", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke)")
    parser.add_argument("--rounds", type=int, help="rounds of the alternating comparisons")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    sz = QUICK if args.quick else FULL
    if args.rounds:
        sz.rounds = args.rounds
    only = set(args.only or SECTIONS)
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    load = os.getloadavg()[0]
    rows: list[Row] = []
    with RedisServer("redis-server") as srv:
        mach = machine(srv)
        for name, step in (
            ("ingest", lambda: measure_ingest(srv, sz, pattern=False)),
            ("pattern", lambda: measure_ingest(srv, sz, pattern=True)),
            ("burst", lambda: measure_burst(srv, sz)),
            ("publish", lambda: measure_publish(srv, sz)),
            ("latency", lambda: measure_latency(srv, sz)),
            ("memory", lambda: measure_memory(srv, sz)),
        ):
            if name in only:
                print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr)
                rows += step()
    report = render(rows, mach, command.strip(), time.monotonic() - started, load)
    print(report)
    if args.markdown:
        args.markdown.write_text("# Benchmark results\n\n" + report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
