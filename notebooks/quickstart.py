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
# # Quickstart: publish, subscribe, and watch a live DataFrame
#
# Redis Pub/Sub in three moves: **subscribe** to channels, **publish** messages to them,
# and **look** at what arrived. `%load_ext redis_toolkit_nb` connects to `$REDIS_URL`,
# else to a Redis on `localhost:6379`, else it starts an embedded server by itself, so
# this notebook runs as is. Choose *Run > Run All Cells* and scroll through.

# %%
# %load_ext redis_toolkit_nb

# %%
# %rtk_connect

# %% [markdown]
# ## Subscribe
#
# `%%rtk_subscribe` starts a subscription in the background and **returns at once**: its
# output is a live panel (counters, a rate chart per channel, the newest rows, a log) that
# keeps updating while the next cells run. The subscription object is bound to the
# `--name` you give, here `news`.

# %%
# %%rtk_subscribe news updates --name news

# %% [markdown]
# ## Publish
#
# The payload of `%rtk_publish` is a Python expression: a dict literal (JSON as is, no
# `{var}` mangling), a variable, a number, an f-string. It is serialized to JSON on the
# wire. The result is the number of subscribers that received it.

# %%
# %rtk_publish news {"type": "breaking_news", "title": "Big Update", "body": "v2 is out"}

# %%
headline = {"title": "Second update", "tags": ["redis", "jupyter"]}
# %rtk_publish updates headline

# %% [markdown]
# `--count` and `--rate` turn it into a small load generator: here 200 messages at up to
# 1,000 per second. Inside the payload, `i` is the message's index (0, 1, 2, ...).

# %%
# %rtk_publish updates {"source": "load", "seq": i} --count 200 --rate 1000

# %% [markdown]
# ## Wait for the messages, then look at them
#
# Messages arrive on a background thread. When a cell needs them, it waits with a
# deadline, polling, never with a blind `sleep`:

# %%
import time


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)


wait_for(lambda: news.stats.delivered >= 202, what='202 messages')

# %% [markdown]
# `news.df` is a pandas DataFrame of the newest messages, oldest first: `time` (UTC),
# `channel`, `pattern` (empty for plain channels), `data` and `size` in bytes.

# %%
news.df.head()

# %%
news.df.groupby("channel")["size"].agg(["count", "sum"])

# %% [markdown]
# `df_expanded()` flattens dict payloads into columns:

# %%
news.df_expanded().head(3)

# %% [markdown]
# ## Pause, resume, and discarding on purpose
#
# **Pause** (the panel's button, or `news.pause()`) freezes the panel's view so you can
# read it; messages keep arriving in `news.df` and the counters, and the panel says
# "N new since paused". Resume shows them. **Discard incoming** (`news.discard()`) is
# different: messages are still read (so the server never cuts the subscriber off) but
# dropped on purpose, counted in `stats.skipped`, never lost silently.

# %%
news.pause()
# %rtk_publish news "published while paused"
wait_for(lambda: news.snapshot().new_since_pause == 1, what="the message, captured")
print(news.df["data"].iloc[-1], "| new since paused:", news.snapshot().new_since_pause)
news.resume()
news.discard()
# %rtk_publish news "published while discarding"
wait_for(lambda: news.stats.skipped >= 1, what="the discarded message")
news.discard(False)
news.stats

# %% [markdown]
# ## Run code for every message
#
# Give `%%rtk_subscribe` a body and it runs for every message with `channel`, `data` and
# `message` bound; its `print` goes to the panel's log. An error in the body is shown in
# the log too and counted in `stats.handler_errors`; the subscription keeps going. Names
# the body assigns stay local to one message: keep state in an object you mutate, like
# the list `critical` here.

# %%
critical = []

# %%
# %%rtk_subscribe alerts --name alerts
if data["level"] == "critical":
    critical.append(data["text"])
    print("CRITICAL:", data["text"])  # print goes to the panel's log

# %%
# %rtk_publish alerts {"level": "info", "text": "disk 60% full"}
# %rtk_publish alerts {"level": "critical", "text": "disk 95% full"}
# %rtk_publish alerts "not a dict: the body raises on this one"
# %rtk_publish alerts {"level": "critical", "text": "disk full"}
wait_for(lambda: alerts.stats.delivered >= 4, what="4 alerts")
critical

# %%
# %rtk subs

# %% [markdown]
# ## Check
#
# The figures this notebook should end with (the test suite reads this line too):

# %%
# Check cell: a one-line summary of what this notebook did.
import json

summary = {
    "received": news.stats.received,
    "skipped": news.stats.skipped,
    "rows": len(news.df),
    "by_channel": news.stats.by_channel,
    "critical": critical,
    "handler_errors": alerts.stats.handler_errors,
}
print(json.dumps(summary))

# %%
alerts.stop()

# %% [markdown]
# `news` is still running: publish to `news` or `updates` from another notebook or a
# terminal (`redis-cli -u <url> publish news hello`) and watch its panel. Stop it with
# `news.stop()`, `%rtk stop news`, or everything with `%rtk stop --all`.
#
# Next: `patterns_and_routing.ipynb`.
