# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scaling out: Pub/Sub on Redis Cluster
#
# One Redis server carries a lot of Pub/Sub, but not everything. This notebook starts a small
# **Redis Cluster on your machine** (3 masters, each with a replica: 6 processes of the
# bundled Valkey on free loopback ports, stopped with the kernel) and shows:
#
# 1. why classic `PUBLISH` does not scale out on a cluster, and what **sharded** Pub/Sub
#    (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0+) does instead;
# 2. **hash tags**: how `{...}` in a channel name decides which node carries it;
# 3. a **live slot migration** and a **failover** while messages flow: the subscription
#    follows its channel to the new node, and the panel shows the move and how long the
#    channel was unsubscribed (the *gap*: Redis never replays what was published meanwhile).

# %%
# %load_ext redis_toolkit_nb

# %% [markdown]
# `%rtk_connect --embedded-cluster` starts the cluster (a few seconds) and connects the
# notebook to it. It returns the cluster object: `cluster.masters()`, `cluster.owner(...)`,
# `cluster.move_slot(...)` and `cluster.failover(...)` are what we use below to change the
# topology live. (Outside a notebook: `redis_toolkit_nb.embedded.start_cluster()`.)

# %%
# cluster = %rtk_connect --embedded-cluster --replicas 1
cluster

# %%
import json
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


def bus_messages():
    """Pub/Sub messages the nodes sent each other over the cluster bus so far."""
    total = {"publish": 0, "publishshard": 0}
    for port in cluster.ports:
        with cluster.client(port) as node:
            info = node.execute_command("CLUSTER INFO")
        for kind in total:
            total[kind] += int(info.get(f"cluster_stats_messages_{kind}_sent", 0))
    return total


cluster.masters()

# %% [markdown]
# ## 1. Classic vs sharded: what a message costs the cluster
#
# A classic `PUBLISH` may have a subscriber on *any* node, so the node that takes it copies it
# to **every other node** over the cluster bus (each copy carries a ~2 KB header). A sharded
# channel lives on the shard owning its hash slot: `SPUBLISH` goes to that master, which
# copies it to its own replicas only. Let's publish 1,000 messages each way and count the bus
# messages.

# %%
# A node sends a copy only over a bus link that is up: on a busy machine a link can blink for
# a moment, and the count comes out a little short. Then we simply measure again.
for attempt in range(3):
    before = bus_messages()
    # %rtk_publish --count 1000 news {"n": i}
    after_classic = bus_messages()
    # %rtk_publish --sharded --count 1000 orders:{eu} {"n": i}
    after_sharded = bus_messages()
    classic_cost = (after_classic["publish"] - before["publish"]) / 1000
    sharded_cost = (after_sharded["publishshard"] - after_classic["publishshard"]) / 1000
    if classic_cost == int(classic_cost) and sharded_cost == int(sharded_cost):
        break
print(f"bus messages per classic PUBLISH: {classic_cost:g}, per sharded SPUBLISH: {sharded_cost:g}")

# %% [markdown]
# Five copies per classic message (one per other node) against one per sharded message (to
# the shard's replica): classic Pub/Sub gets *more* expensive as the cluster grows, sharded
# Pub/Sub spreads over the shards. The catch: no patterns for sharded channels, and a
# subscriber must read from the node owning each channel, which the toolkit does for you.
#
# ## 2. Hash tags decide where a channel lives
#
# A channel's slot is CRC16 of its name modulo 16384, but when the name holds `{...}`, only
# the part inside the braces counts: `orders:{eu}` and `payments:{eu}` share a slot (and a
# node), `orders:{us}` lands elsewhere.

# %%
for name in ("orders:{eu}", "payments:{eu}", "orders:{us}"):
    print(f"{name:14} slot {cluster.slot(name):5}  on master {cluster.owner(name)}")

# %% [markdown]
# Subscribe to the three, sharded. The live panel says which node each channel is read from
# (one connection per node that holds any), how many times a channel moved, and the gaps.

# %%
# %%rtk_subscribe --sharded orders:{eu} payments:{eu} orders:{us} --name shard_feed

# %% [markdown]
# `%rtk shards` asks every node which sharded channels have subscribers (`PUBSUB
# SHARDCHANNELS`/`SHARDNUMSUB`), with the slot and the master owning it.

# %%
# %rtk shards

# %% [markdown]
# ## 3. A live slot migration
#
# A publisher sends a numbered message to `orders:{eu}` every 5 ms in the background. We then
# migrate the channel's slot to another master, as `redis-cli --cluster reshard` would. The
# old owner tells the subscriber it dropped the channel (an unsolicited `sunsubscribe`); the
# toolkit subscribes again at once, follows the `MOVED` answer to the new owner, and counts
# the move and the gap in `stats`. `payments:{eu}` shares the slot: it moves too (two moves),
# while `orders:{us}` stays where it is (we pick a new home that does not hold it).

# %%
publisher = RedisToolkit(url=cluster.url)
sent = []
stop_publishing = threading.Event()


def publish_orders():
    seq = 0
    while not stop_publishing.is_set():
        publisher.publisher("orders:{eu}", {"seq": seq}, sharded=True)
        sent.append(seq)
        seq += 1
        time.sleep(0.005)  # pacing: about 200 messages a second


thread = threading.Thread(target=publish_orders, daemon=True)
thread.start()
wait_for(lambda: len(sent) >= 50, what="50 orders published")

first_home = cluster.owner("orders:{eu}")
busy = (first_home, cluster.owner("orders:{us}"))
new_home = next(port for port in cluster.masters() if port not in busy)
cluster.move_slot("orders:{eu}", to=new_home)
wait_for(lambda: shard_feed.stats.moves >= 2 and shard_feed.stats.connected, what="the move")
print(
    f"orders:{{eu}} moved {first_home} -> {new_home}: longest gap "
    f"{shard_feed.stats.max_move_gap_s * 1000:.1f} ms"
)

# %% [markdown]
# ## 4. A failover
#
# Now the new owner's replica takes over (`CLUSTER FAILOVER`, what an operator does before
# maintenance). The demoted master drops every sharded channel (two more moves, two more
# gaps) and the toolkit subscribes again. The demoted node is now a replica of the promoted
# one, and a replica serves its shard's sharded channels too (it receives every `SPUBLISH`
# of the shard), so the channels may be confirmed right there, on the same connection.

# %%
promoted = cluster.failover(new_home)
wait_for(lambda: shard_feed.stats.moves >= 4 and shard_feed.stats.connected, what="the failover")
wait_for(lambda: len(sent) >= 400, what="400 orders published")
stop_publishing.set()
thread.join()
wait_for(
    lambda: len(shard_feed.df.query("channel == 'orders:{eu}'")) >= len(sent) - 20,
    what="the last orders delivered",
)
s = shard_feed.stats
reading = [n for n, state in s.nodes.items() if "orders:{eu}" in state.sharded_channels]
print(f"{s.moves} moves; longest gap {s.max_move_gap_s * 1000:.1f} ms")
print(f"{promoted} is the shard's master now; orders:{{eu}} is read from {reading}")

# %% [markdown]
# Every row of `df` says which node it came from (and its `kind`): `orders:{eu}` was read from
# its first master, then from the master it migrated to. Sequence numbers missing from what
# arrived were published during a gap: at 200 messages a second and gaps of a few
# milliseconds, a message or two per move at most.

# %%
orders = shard_feed.df.query("channel == 'orders:{eu}'")
received = [d["seq"] for d in orders["data"] if isinstance(d, dict) and "seq" in d]
missed = sorted(set(sent) - set(received))
print(f"published {len(sent)}, received {len(received)}, missed during the gaps: {missed}")
orders.groupby("node", sort=False).size()

# %% [markdown]
# `%rtk panel`'s **Cluster** tab shows the nodes with their roles and slot ranges, where each
# subscribed sharded channel lives, and the moves over time.

# %%
# %rtk panel

# %%
# Check cell: a one-line summary of what this notebook did.
homes = list(dict.fromkeys(orders["node"]))
print(
    json.dumps(
        {
            "masters": len(cluster.masters()),
            "classic_bus_per_message": classic_cost,
            "sharded_bus_per_message": sharded_cost,
            "same_slot": cluster.slot("orders:{eu}") == cluster.slot("payments:{eu}"),
            "other_slot": cluster.slot("orders:{eu}") != cluster.slot("orders:{us}"),
            "moves": s.moves,
            "max_gap_ms": round(s.max_move_gap_s * 1000, 2),
            "homes": len(homes),
            "homes_list": homes,
            "first_home": f"127.0.0.1:{first_home}",
            "new_home": f"127.0.0.1:{new_home}",
            "promoted": f"127.0.0.1:{promoted}",
            "sent": len(sent),
            "received": len(received),
            "missed": len(missed),
            "kinds": sorted(set(shard_feed.df["kind"])),
        }
    )
)

# %% [markdown]
# Done: stop the subscription and the cluster (they would stop with the kernel anyway).

# %%
# %rtk stop --all
publisher.cleanup()
cluster.stop()
