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
# renders as a stand-alone app with Voila.

# %%
# %load_ext redis_toolkit_nb

# %%
# %rtk_connect

# %% [markdown]
# ## Demo traffic
#
# A background thread publishes about 40 messages a second to a shop, a few sensors and
# a chat room, for at most 10 minutes. `stop_traffic.set()` stops it at once.

# %%
import random
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


stop_traffic = threading.Event()
CHANNELS = ["orders", "payments", "sensors:temp", "sensors:humidity", "chat:room:general"]


def demo_traffic(rate=40.0, minutes=10.0):
    """Publish random events until stopped or for ``minutes`` (never forever)."""
    deadline = time.monotonic() + minutes * 60
    with RedisToolkit() as toolkit:
        n = 0
        while not stop_traffic.is_set() and time.monotonic() < deadline:
            channel = random.choices(CHANNELS, weights=[3, 2, 4, 4, 1])[0]
            toolkit.publisher(channel, {"n": n, "value": round(random.uniform(0, 100), 1)})
            n += 1
            stop_traffic.wait(1 / rate)  # paces the traffic; returns at once on stop


traffic = threading.Thread(target=demo_traffic, name="demo-traffic", daemon=True)
traffic.start()

# %% [markdown]
# ## Subscriptions to watch
#
# Each has its own live panel; the dashboard below lists them all.

# %%
# %%rtk_subscribe orders payments --name shop

# %%
# %%rtk_subscribe sensors:* --name sensors

# %% [markdown]
# ## The dashboard

# %%
# %rtk panel

# %% [markdown]
# ## The same figures from code
#
# `%rtk channels` lists the active channels (`PUBSUB CHANNELS`), `%rtk numsub` counts
# channel subscribers, `%rtk numpat` the patterns, `%rtk subs` this notebook's
# subscriptions and their figures. Note that the sensor channels are missing from the
# first two: Redis counts only *channel* subscribers there, and `sensors` listens
# through the pattern `sensors:*`.

# %%
wait_for(
    lambda: shop.stats.delivered >= 10 and sensors.stats.delivered >= 10,
    timeout=20,
    what="10 messages in each subscription",
)
# %rtk channels

# %%
# %rtk numsub orders payments sensors:temp

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
}
print(json.dumps(summary))

# %% [markdown]
# The traffic and the panels keep running. Stop them with `stop_traffic.set()` and
# `%rtk stop --all`. Next: `exploring_traffic.ipynb`.
