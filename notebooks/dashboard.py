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
# # A live dashboard
#
# `%rtk panel` is a dashboard for the whole server: **Publish** (a payload editor),
# **Subscribe** (start a subscription from a form), **Channels** (what is active, who
# listens; click one to subscribe) and **Flows** (which channels and patterns carry the
# traffic). This notebook starts some demo traffic so there is something to see; it also
# renders as a stand-alone app with Voila. The demo traffic is bounded and private to this
# session (see below).

# %%
# %load_ext redis_toolkit_nb

# %%
# %rtk_connect

# %% [markdown]
# ## Demo traffic
#
# A background thread publishes about 40 messages a second to a shop, a few sensors and
# a chat room.
#
# - **Bounded**: it stops by itself after 5 minutes or 12,000 messages, whichever comes
#   first; `stop_traffic.set()` stops it at once. It lives in this notebook's kernel, so it
#   also stops when the kernel does: shut down, restarted, or culled. Closing its Voila
#   page asks the server to shut the kernel down; on Binder (the settings in
#   `binder/jupyter/`), a kernel that no page shows any more is shut down within 30 s
#   once it has run for 2 minutes.
# - **Private to this session**: its channel names start with a prefix made for this
#   session, `demo-` and 6 random hex digits (for example `demo-3fa9c1:orders`). On a
#   shared server (Binder, a team's Redis) your subscriptions never see another session's
#   demo traffic, and theirs never see yours.

# %%
import random
import secrets
import threading
import time

from redis_toolkit_nb import RedisToolkit


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)


# This session's channels: a random prefix keeps them apart from every other session's.
PREFIX = f"demo-{secrets.token_hex(3)}"
ORDERS, PAYMENTS = f"{PREFIX}:orders", f"{PREFIX}:payments"
TEMP, HUMIDITY = f"{PREFIX}:sensors:temp", f"{PREFIX}:sensors:humidity"
CHAT = f"{PREFIX}:chat:room:general"
CHANNELS = [ORDERS, PAYMENTS, TEMP, HUMIDITY, CHAT]

DEMO_SECONDS = 300  # the traffic's bounds: whichever comes first
DEMO_MAX_MESSAGES = 12_000
stop_traffic = threading.Event()
demo = {"sent": 0, "ended": None}  # how far it got, and why it ended


def demo_traffic(rate=40.0, seconds=DEMO_SECONDS, max_messages=DEMO_MAX_MESSAGES):
    """Publish random events to ``CHANNELS`` at ``rate`` per second, for at most ``seconds``
    and at most ``max_messages``, until ``stop_traffic`` is set (never forever)."""
    deadline = time.monotonic() + seconds
    sent = 0
    with RedisToolkit() as toolkit:
        while sent < max_messages and time.monotonic() < deadline:
            if stop_traffic.wait(1 / rate):  # paces the traffic; returns at once on stop
                break
            channel = random.choices(CHANNELS, weights=[3, 2, 4, 4, 1])[0]
            toolkit.publisher(channel, {"n": sent, "value": round(random.uniform(0, 100), 1)})
            sent += 1
            demo["sent"] = sent
    demo["ended"] = "stopped" if stop_traffic.is_set() else "bound reached"
    return sent


# A daemon thread: it never keeps the kernel's process alive once the kernel shuts down.
traffic = threading.Thread(target=demo_traffic, name="demo-traffic", daemon=True)
traffic.start()
print(f"demo traffic on {PREFIX}:* for at most {DEMO_SECONDS} s / {DEMO_MAX_MESSAGES:,} messages")

# %% [markdown]
# ## Subscriptions to watch
#
# Each has its own live panel; the dashboard below lists them all. `%%rtk_subscribe`
# takes channel names literally (no `{variables}`: braces belong in names such as
# `orders:{eu}`), so with this session's computed names these cells call the magic from
# Python.

# %%
get_ipython().run_line_magic("rtk_subscribe", f"{ORDERS} {PAYMENTS} --name shop")

# %%
get_ipython().run_line_magic("rtk_subscribe", f"{PREFIX}:sensors:* --name sensors")

# %% [markdown]
# ## The dashboard

# %%
# %rtk panel

# %% [markdown]
# ## The same figures from code
#
# `%rtk channels` lists the active channels (`PUBSUB CHANNELS`, here only this session's:
# `{PREFIX}:*`), `%rtk numsub` counts channel subscribers, `%rtk numpat` the patterns,
# `%rtk subs` this notebook's subscriptions and their figures (`%rtk` expands `{PREFIX}`
# like any line magic). Note that the sensor channels are missing from the first two:
# Redis counts only *channel* subscribers there, and `sensors` listens through the
# pattern `{PREFIX}:sensors:*`.

# %%
wait_for(
    lambda: shop.stats.delivered >= 10 and sensors.stats.delivered >= 10,
    timeout=20,
    what="10 messages in each subscription",
)
# %rtk channels {PREFIX}:*

# %%
# %rtk numsub {ORDERS} {PAYMENTS} {TEMP}

# %%
# %rtk subs

# %% [markdown]
# Rates: messages per channel since the start, and per second over the last seconds
# (from each subscription's DataFrame).

# %%
import pandas as pd

pd.DataFrame({"shop": shop.stats.by_channel, "sensors": sensors.stats.by_channel}).fillna(0)

# %%
frames = pd.concat([shop.df, sensors.df])
per_second = pd.crosstab(frames["time"].dt.floor("1s"), frames["channel"])
per_second.tail(5)

# %% [markdown]
# ## Check

# %%
# Check cell: a one-line summary of what this notebook did.
import json

summary = {
    "shop_received": shop.stats.received,
    "sensors_received": sensors.stats.received,
    "shop_channels": sorted(shop.stats.by_channel),
    "sensor_patterns": list(sensors.stats.patterns),
    "traffic_running": traffic.is_alive(),
    "prefix": PREFIX,
    "bounds": [DEMO_SECONDS, DEMO_MAX_MESSAGES],
    "only_own_channels": all(
        channel.startswith(f"{PREFIX}:") for channel in pd.concat([shop.df, sensors.df])["channel"]
    ),
}
print(json.dumps(summary))

# %% [markdown]
# The demo traffic stops by itself within 5 minutes (or 12,000 messages), and with this
# kernel; the panels keep running until you stop them. Stop both now with
# `stop_traffic.set()` and `%rtk stop --all`. Next: `exploring_traffic.ipynb`.
