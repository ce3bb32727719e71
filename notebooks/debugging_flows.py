# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Debugging message flows
#
# Pub/Sub keeps nothing and says nothing: a message lost on the way, a field a publisher
# renamed, a subscriber falling behind all look the same from outside, quiet. This notebook
# takes a **flaky publisher** and finds each of its faults with the tools the toolkit adds:
# sequence **gaps**, **schema drift**, **latency**, the server's **buffer gauge**. Then it
# **replays** a capture at 10x into a fresh channel, watches the **keyspace events** of a
# small app, asks **who receives** a publish, and ends with exercises that check themselves
# with `%rtk_expect`.

# %%
# %load_ext redis_toolkit_nb

# %%
import secrets
import time

# This session's channels and keys: a random prefix keeps them apart from everyone else's.
PREFIX = f"demo-{secrets.token_hex(3)}"
ORDERS = f"{PREFIX}:orders"
REPLAY = f"{PREFIX}:orders-replay"


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)


# %% [markdown]
# ## Watch the orders channel
#
# Three options turn on the checks, each on the dispatcher thread as messages arrive:
#
# - `--seq-field seq`: the publisher numbers its orders; gaps, duplicates and late arrivals
#   are found per channel;
# - `--latency-field ts`: the publisher stamps each order with its send time (epoch seconds
#   or milliseconds); p50/p99/max per channel;
# - the schema of every payload is followed by default (`--no-schema` turns it off): which
#   fields, of which types, and when that changes.
#
# (`%%rtk_subscribe` takes names literally, so with a computed name the cell calls the
# magic from Python.)

# %%
get_ipython().run_line_magic(
    "rtk_subscribe", f"{ORDERS} --name feed --seq-field seq --latency-field ts"
)

# %% [markdown]
# ## The flaky publisher
#
# It sends 120 orders, numbered 1 to 120, and it is flaky in four ways a subscriber can't
# see by itself: it **skips** some numbers (lost before they were sent), sends one order
# **twice**, sends two **out of order**, and from order 61 on, a new release of it sends
# `qty` as a string and adds a `coupon` field. Every tenth order spent 250 ms in a queue
# before it left (its stamp is older than its send).

# %%
from redis_toolkit_nb import RedisToolkit

publisher = RedisToolkit()
skipped = {17, 18, 19, 44, 90}
plan = [n for n in range(1, 121) if n not in skipped]
plan.insert(plan.index(31), 30)  # 30 again: a duplicate
i, j = plan.index(70), plan.index(71)
plan[i], plan[j] = plan[j], plan[i]  # 71 before 70: a reorder


def order(n):
    body = {"seq": n, "sku": f"sku-{n % 7}", "qty": n % 5 + 1, "ts": time.time()}
    if n % 10 == 0:
        body["ts"] -= 0.25  # queued for 250 ms before it was sent
    if n > 60:  # the new release
        body["qty"] = str(body["qty"])
        body["coupon"] = "WINTER" if n % 3 == 0 else None
    return body


for n in plan:
    publisher.publisher(ORDERS, order(n))
    time.sleep(0.008)  # about a second of traffic, so a replay has gaps to keep

wait_for(lambda: feed.stats.delivered >= len(plan), what=f"{len(plan)} orders")
feed

# %% [markdown]
# ## Sequence gaps
#
# `feed.gaps()` lists every irregularity: a **gap** (numbers skipped: `missing` of them), a
# **duplicate**, a **reorder** (a number that fills an earlier hole: one fewer missing). The
# `missing` column sums to what is missing now, and `disconnected` says whether the
# subscriber itself lost its connection in between (here it never did: the publisher lost
# them).

# %%
gaps = feed.gaps()
gaps

# %%
gaps.groupby("kind")["missing"].agg(["count", "sum"])

# %% [markdown]
# ## Schema drift
#
# `feed.schema()` is one row per channel and field (dotted paths into nested dicts): the
# types seen, how often, the null rate, first and last seen. `feed.schema_changes()` lists
# each drift as it happened: a field that appeared, disappeared or changed type.

# %%
feed.schema()

# %%
changes = feed.schema_changes()
changes

# %% [markdown]
# `feed.json_schema(channel)` writes what was seen as a JSON Schema (draft 2020-12), a
# starting point for a contract between publisher and subscribers:

# %%
contract = feed.json_schema(ORDERS)
contract["properties"]["qty"]

# %% [markdown]
# ## Latency
#
# With `--latency-field ts`, each message's age on arrival (receive time minus its stamp)
# is kept per channel. Every tenth order waited 250 ms, so p99 shows them while p50 does not.
# `publisher(..., stamp="ts")` and `%rtk_publish --stamp ts` put the send time in by
# themselves.

# %%
latency = feed.latency()
latency

# %% [markdown]
# ## A slow subscriber, seen from the server
#
# A subscriber that can't keep up makes the **server** queue its messages, in an output
# buffer the server cuts off at `client-output-buffer-limit pubsub` (a soft limit held for
# some seconds, or a hard one at once), and everything in it is lost. The gauge reads that
# buffer (`CLIENT LIST`: `omem`) over a separate connection, against the limits.
#
# Here a subscriber whose handler is stuck, and whose own read-ahead is kept small
# (`overflow="block"`, a 1 MB backlog) so that the server's buffer is the one that fills.
# The flood stops as soon as the gauge warns, long before the server would cut it off.

# %%
import threading

from redis_toolkit_nb import RedisOptions

SLOW = f"{PREFIX}:slow"
stuck = threading.Event()
slow_options = RedisOptions(overflow="block", queue_size=100, max_backlog_bytes=1 << 20)
slow = RedisToolkit(channels=[SLOW], message_handler=lambda c, d: stuck.wait(30),
                    options=slow_options)
readings = [slow.subscriber.server_buffer()]
chunk = ["x" * 4000] * 50  # 200 kB per round
while readings[-1].level == "ok" and len(readings) < 200:
    publisher.publish_many(SLOW, chunk)
    readings.append(slow.subscriber.server_buffer())
print(readings[0].text())
print(readings[-1].text())

# %% [markdown]
# Released, it catches up and the buffer empties. In a live panel (`%%rtk_subscribe`) the
# same gauge is on the counters line, read about once a second, in colour from half the soft
# limit; `feed.server_buffer` is the latest reading.

# %%
stuck.set()
wait_for(lambda: slow.subscriber.server_buffer().level == "ok", what="the buffer to drain")
after_release = slow.subscriber.server_buffer()
slow.cleanup()
print(after_release.text())
print(feed.server_buffer.text())

# %% [markdown]
# ## Record, then replay at 10x into a fresh channel
#
# A capture is a DataFrame (`feed.df`), and `feed.export(path)` writes it to a file
# (`read_capture(path)` reads it back). `%rtk_replay` publishes it again in order, keeping the
# gaps between messages divided by `--speed`, and here `--map` sends it to another channel so
# the live one is not disturbed. A second subscription checks it all arrived.

# %%
import tempfile
from pathlib import Path

from redis_toolkit_nb import read_capture

folder = Path(tempfile.mkdtemp(prefix="rtk-capture-"))
capture = read_capture(feed.export(folder / "orders.parquet"))
get_ipython().run_line_magic("rtk_subscribe", f"{REPLAY} --name copy --seq-field seq")

# %%
summary = get_ipython().run_line_magic("rtk_replay", f"capture --speed 10 --map {ORDERS}={REPLAY}")
summary

# %%
# %rtk_expect copy count>=116 within=10

# %% [markdown]
# The copy has the same gaps as the original (the capture holds what arrived, faults
# included), and took about a tenth of the time.

# %%
copy_gaps = copy.gaps()
span = capture["time"].iloc[-1] - capture["time"].iloc[0]
print(f"captured over {span.total_seconds():.2f} s, replayed in {summary.duration:.2f} s")
copy_gaps[["kind", "expected", "got", "missing"]]

# %% [markdown]
# ## What an application does to its keys
#
# Keyspace notifications are Pub/Sub too: the server publishes an event for each change to
# a key. `%rtk keyspace PATTERN` turns them on (restoring the server's setting when it stops;
# if the server does not allow it, it says what to ask its owner) and shows each event as a
# row: `db`, `key`, `event`. Here a small cart app: a SET, an EXPIRE, an INCR, a DEL, and a
# key that expires by itself.

# %%
get_ipython().run_line_magic("rtk", f"keyspace {PREFIX}:cart:* --name keys")

# %%
app = publisher.client
app.set(f"{PREFIX}:cart:1", "apple")
app.expire(f"{PREFIX}:cart:1", 60)
app.incr(f"{PREFIX}:cart:count")
app.delete(f"{PREFIX}:cart:1")
app.set(f"{PREFIX}:cart:tmp", "x", px=50)
wait_for(lambda: "expired" in set(keys.df["event"]), what="the expiry")
keys.df[["db", "key", "event"]]

# %% [markdown]
# ## Who receives a publish?
#
# `%rtk explain CHANNEL` answers from both sides: this kernel's subscriptions that match it
# (by name or by pattern), how many copies each connection gets, and the server's own
# counts (`PUBSUB NUMSUB` for the channel; patterns only as a number, `NUMPAT`, since Redis
# lists no pattern's subscribers). A subscription holding the channel *and* a pattern that
# matches it gets every message twice (a `message` and a `pmessage`): it is flagged.

# %%
get_ipython().run_line_magic("rtk_subscribe", f"{ORDERS} {PREFIX}:ord* --name twice")
explained = get_ipython().run_line_magic("rtk", f"explain {ORDERS}")
explained

# %% [markdown]
# ## Exercises
#
# Each exercise ends with an `%rtk_expect` line: it waits a few seconds for what it
# describes, and fails with the difference (what was expected, what arrived) if it is not
# met. The solutions are filled in; change them and see the check fail.
#
# **1.** Send the orders 1 to 10 to the channel `ex1` with no gap.

# %%
EX1 = f"{PREFIX}:ex1"
get_ipython().run_line_magic("rtk_subscribe", f"{EX1} --name ex1 --seq-field seq")
publisher.publish_many(EX1, [{"seq": n, "sku": "sku-1", "qty": 1} for n in range(1, 11)])

# %%
# %rtk_expect ex1 count>=10 no-gaps fields=sku,qty within=5

# %% [markdown]
# **2.** A check that fails says why. Here it asks for a field the orders don't have:

# %%
try:
    ex1.expect(count=10, fields=["price"], within=0.5)
except AssertionError as error:
    failed_check = str(error)
print(failed_check)

# %% [markdown]
# ## Check

# %%
# Check cell: a one-line summary of what this notebook did.
import json

summary_json = {
    "prefix": PREFIX,
    "sent": len(plan),
    "delivered": feed.stats.delivered,
    "gap_kinds": gaps["kind"].value_counts().to_dict(),
    "missing": int(gaps["missing"].sum()),
    "disconnected": bool(gaps["disconnected"].any()),
    "changes": sorted(
        {(r.field, r.change) for r in changes.itertuples()}, key=lambda x: (x[0], x[1])
    ),
    "qty_types": contract["properties"]["qty"],
    "latency_p50_ms": float(latency["p50_ms"].iloc[0]),
    "latency_max_ms": float(latency["max_ms"].iloc[0]),
    "gauge_first": readings[0].level,
    "gauge_peak": readings[-1].level,
    "gauge_after": after_release.level,
    "replayed": summary.sent,
    "replay_duration": summary.duration,
    "capture_span": span.total_seconds(),
    "copy_missing": int(copy_gaps["missing"].sum()),
    "key_events": sorted(set(keys.df["event"])),
    "explain_copies": explained.copies(),
    "explain_numsub": explained.numsub,
    "failed_check": "price" in failed_check,
}
print(json.dumps(summary_json, default=str))

# %%
# %rtk stop --all
publisher.cleanup()
