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
import time


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
# `--max-rows` bounds how many of the newest messages the DataFrame keeps.

# %%
# %%rtk_subscribe sensors:* orders --name capture --max-rows 5000

# %% [markdown]
# Two seconds of traffic whose rate changes over time: temperatures from three sensors
# (busier and busier), humidity at a steady pace, and a trickle of orders.
# `publish_many` sends each batch in one pipelined write.

# %%
import random

from redis_toolkit_nb import RedisToolkit

random.seed(7)
sent = {"sensors:temp": 0, "sensors:humidity": 0, "orders": 0}
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
        sent["sensors:temp"] += toolkit.publish_many("sensors:temp", temps)
        sent["sensors:humidity"] += toolkit.publish_many("sensors:humidity", hums)
        sent["orders"] += toolkit.publish_many("orders", orders)
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
hot = flat[(flat["channel"] == "sensors:temp") & (flat["value"] > 23)]
hot[["time", "sensor", "value"]].head()

# %% [markdown]
# ## Group by channel

# %%
by_channel = df.groupby("channel").agg(
    messages=("size", "count"), bytes=("size", "sum"), mean_size=("size", "mean")
)
by_channel

# %%
flat[flat["channel"] == "sensors:temp"].groupby("sensor")["value"].describe()

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
summary = {
    "sent": sent,
    "rows": len(df),
    "by_channel": by_channel["messages"].to_dict(),
    "hot_readings": len(hot),
    "hot_all_above_23": bool((hot["value"] > 23).all()),
    "peak_temp_rate": int(rates["sensors:temp"].max()),
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
