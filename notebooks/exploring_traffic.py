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
# # Exploring captured traffic with pandas
#
# A subscription's `.df` is an ordinary pandas DataFrame, so everything pandas does
# applies: filter, group by channel, resample into rates, plot, export. First capture
# some traffic, then explore it.

# %%
# %load_ext redis_toolkit_nb

# %%
import secrets
import time

# This session's channels: a random prefix keeps them apart from every other session's.
PREFIX = f"demo-{secrets.token_hex(3)}"
TEMP, HUMIDITY = f"{PREFIX}:sensors:temp", f"{PREFIX}:sensors:humidity"
ORDERS = f"{PREFIX}:orders"


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)


# %% [markdown]
# ## Capture
#
# The demo traffic below is private to this session: its channel names start with a
# prefix made for it, `demo-` and 6 random hex digits (`PREFIX`, for example
# `demo-3fa9c1:sensors:temp`), so on a shared server (Binder, a team's Redis) no one
# else's traffic lands in this capture, and yours never lands in theirs. It is bounded
# too: 599 messages over two seconds, published by the cell itself.
#
# `--max-rows` bounds how many of the newest messages the DataFrame keeps.
# `%%rtk_subscribe` takes channel names literally (no `{variables}`: braces belong in
# names such as `orders:{eu}`), so with computed names the cell calls the magic from
# Python.

# %%
get_ipython().run_line_magic(
    "rtk_subscribe", f"{PREFIX}:sensors:* {ORDERS} --name capture --max-rows 5000"
)

# %% [markdown]
# Two seconds of traffic whose rate changes over time: temperatures from three sensors
# (busier and busier), humidity at a steady pace, and a trickle of orders.
# `publish_many` sends each batch in one pipelined write.

# %%
import random

from redis_toolkit_nb import RedisToolkit

random.seed(7)
sent = {TEMP: 0, HUMIDITY: 0, ORDERS: 0}
with RedisToolkit() as toolkit:
    start = time.monotonic()
    for tick in range(20):
        temps = [
            {"sensor": f"t{i % 3}", "value": round(random.gauss(21, 1.5), 2)}
            for i in range(10 * (1 + tick // 5))
        ]
        hums = [{"sensor": "h1", "value": round(random.uniform(30, 60), 1)} for _ in "abcd"]
        orders = [
            {"order_id": f"A-{tick}-{i}", "amount": round(random.uniform(5, 200), 2)}
            for i in range(tick % 3)
        ]
        sent[TEMP] += toolkit.publish_many(TEMP, temps)
        sent[HUMIDITY] += toolkit.publish_many(HUMIDITY, hums)
        sent[ORDERS] += toolkit.publish_many(ORDERS, orders)
        next_tick = start + (tick + 1) * 0.1
        time.sleep(max(0.0, next_tick - time.monotonic()))  # pacing, not a wait

total = sum(sent.values())
wait_for(lambda: capture.stats.delivered >= total, what=f"all {total} messages")
sent

# %% [markdown]
# ## Look

# %%
df = capture.df
print(len(df), "rows")
df.dtypes

# %% [markdown]
# `df_expanded()` turns the dict payloads into columns (`sensor`, `value`, `order_id`,
# `amount`), which makes filtering easy:

# %%
flat = capture.df_expanded()
hot = flat[(flat["channel"] == TEMP) & (flat["value"] > 23)]
hot[["time", "sensor", "value"]].head()

# %% [markdown]
# ## Group by channel

# %%
by_channel = df.groupby("channel").agg(
    messages=("size", "count"), bytes=("size", "sum"), mean_size=("size", "mean")
)
by_channel

# %%
flat[flat["channel"] == TEMP].groupby("sensor")["value"].describe()

# %% [markdown]
# ## Resample into rates
#
# One column per channel (`get_dummies`), summed into 200 ms bins, times 5: messages
# per second over time.

# %%
import pandas as pd

per_channel = pd.get_dummies(df.set_index("time")["channel"])
rates = per_channel.resample("200ms").sum() * 5
rates.tail()

# %%
import matplotlib.pyplot as plt

ax = rates.plot(figsize=(8, 3), title="Messages per second, by channel")
ax.set_ylabel("msg/s")
plt.show()

# %% [markdown]
# ## Export
#
# `capture.export(path)` writes the DataFrame to `.csv`, `.parquet` or `.json`, with
# each payload as JSON text, so any mix of payload types fits one column. Any other frame
# exports with pandas itself, like the flattened hot readings below. (A temporary folder
# here; use your own path.)

# %%
import json
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory(prefix="rtk-export-") as tmp:
    folder = Path(tmp)
    csv_path = capture.export(folder / "traffic.csv")
    parquet_path = capture.export(folder / "traffic.parquet")
    hot.to_parquet(folder / "hot.parquet", index=False)
    for path in sorted(folder.iterdir()):
        print(f"{path.name}: {path.stat().st_size:,} bytes")

    csv_back = pd.read_csv(csv_path)
    parquet_back = pd.read_parquet(parquet_path)
    hot_back = pd.read_parquet(folder / "hot.parquet")

first_payload = json.loads(parquet_back["data"].iloc[0])
first_payload

# %% [markdown]
# ## Check

# %%
# Check cell: a one-line summary of what this notebook did.
def short(counts):
    """The counts keyed by channel name without this session's prefix."""
    return {channel.removeprefix(f"{PREFIX}:"): n for channel, n in counts.items()}


summary = {
    "prefix": PREFIX,
    "only_own_channels": bool(df["channel"].str.startswith(f"{PREFIX}:").all()),
    "sent": short(sent),
    "rows": len(df),
    "by_channel": short(by_channel["messages"].to_dict()),
    "hot_readings": len(hot),
    "hot_all_above_23": bool((hot["value"] > 23).all()),
    "peak_temp_rate": int(rates[TEMP].max()),
    "messages_in_rates": int(rates.sum().sum() / 5),
    "csv_rows": len(csv_back),
    "parquet_rows": len(parquet_back),
    "parquet_columns": sorted(parquet_back.columns),
    "hot_rows_exported": len(hot_back),
    "first_payload": first_payload,
}
print(json.dumps(summary))

# %%
capture.stop()
