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
# # Patterns and multi-channel routing
#
# One subscription can listen to many channels: list them, or use a **glob pattern**
# (`*`, `?`, `[abc]`) that matches channels that do not even exist yet. Then route each
# message by its channel.

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
# ## A pattern subscription
#
# `user:*` matches `user:login`, `user:logout`, `user:update`... The `pattern` column
# tells which pattern matched, `channel` the channel it was published to.

# %%
# %%rtk_subscribe user:* --name users

# %%
# %rtk_publish user:login {"user_id": 1001}
# %rtk_publish user:logout {"user_id": 1002}
# %rtk_publish user:update {"user_id": 1003}
# %rtk_publish account:update {"user_id": 1004}
wait_for(lambda: users.stats.delivered >= 3, what="3 user events")
users.df[["channel", "pattern", "data"]]

# %% [markdown]
# `account:update` does not match `user:*`, so it never arrived. Note what the server
# reports: `PUBSUB NUMSUB` counts only plain channel subscribers, so `user:login` shows
# **0** although `users` receives it; pattern subscriptions show in `NUMPAT`.

# %%
# %rtk numsub user:login

# %%
# %rtk numpat

# %% [markdown]
# ## Routing by channel
#
# The cell body runs for every message with `channel` and `data` bound, so routing is
# an `if` on the channel. Here orders, payments and per-user notifications each go to
# their own list.

# %%
routed = {"orders": [], "payments": [], "notifications": []}

# %%
# %%rtk_subscribe orders payments notifications:* --name router
if channel == "orders":
    routed["orders"].append(data["order_id"])
elif channel == "payments":
    routed["payments"].append(data["amount"])
elif channel.startswith("notifications:"):
    user_id = channel.split(":")[1]
    routed["notifications"].append(f"user {user_id}: {data['message']}")

# %% [markdown]
# Payloads can be f-strings and expressions over your variables (the loop variable `n`
# here):

# %%
for n in range(1, 4):
    # %rtk_publish orders {"order_id": f"A-{n}", "items": n}
# %rtk_publish payments {"amount": 19.99}
# %rtk_publish payments {"amount": 5.00}
# %rtk_publish notifications:1001 {"message": "Your order has shipped"}
# %rtk_publish notifications:1002 {"message": "Welcome!"}
wait_for(lambda: router.stats.delivered >= 7, what="7 routed messages")
routed

# %%
router.df.groupby(["channel", "pattern"], dropna=False).size()

# %% [markdown]
# ## Overlapping subscriptions deliver twice
#
# A subscription to a channel **and** to a pattern matching it receives each message
# twice: once as a plain message, once as a pattern message. Redis does this, not the
# toolkit; the `pattern` column shows which is which.

# %%
# %%rtk_subscribe alerts:disk alerts:* --name overlap

# %%
# receivers = %rtk_publish alerts:disk {"used": "95%"}
wait_for(lambda: overlap.stats.delivered >= 2, what="both copies")
print("PUBLISH reported", receivers, "receiver(s)")
overlap.df[["channel", "pattern", "data"]]

# %% [markdown]
# ## Check

# %%
# Check cell: a one-line summary of what this notebook did.
import json

summary = {
    "user_channels": sorted(users.df["channel"]),
    "user_patterns": sorted(set(users.df["pattern"])),
    "routed": routed,
    "overlap_rows": len(overlap.df),
    "overlap_patterns": sorted(str(p) for p in overlap.df["pattern"]),
}
print(json.dumps(summary))

# %%
# %rtk stop --all

# %% [markdown]
# Next: `request_response.ipynb` builds two-way communication on top of Pub/Sub.
