"""``%rtk explain CHANNEL`` on a real 3+3 cluster per engine: the slot and owning node of the
channel as a sharded channel, SHARDNUMSUB, and NUMSUB summed over the nodes."""

from __future__ import annotations

from conftest import wait_until
from redis.crc import key_slot
from test_cluster_notebook import ip, lc, run, shell  # noqa: F401 - the cluster fixtures

from redis_toolkit_nb import RedisToolkit


def test_explain_on_a_cluster(shell, lc):  # noqa: F811
    run(shell, "%%rtk_subscribe --sharded orders:{eu} --name shard_feed\n")
    feed = run(shell, "%%rtk_subscribe orders:{eu} orders:* --name feed\n")
    found = run(shell, "%rtk explain orders:{eu}")
    slot = key_slot(b"orders:{eu}")
    assert found.slot == slot
    assert found.node == f"127.0.0.1:{lc.slot_owner(slot)}"
    with RedisToolkit(url=lc.url) as tk:
        assert found.nodes == len(tk.cluster.map.nodes) >= 3
    assert found.shardnumsub == 1 and found.numsub == 1 and found.numpat >= 1
    assert found.copies() == {"feed": 2}, "the sharded one gets SPUBLISH only"
    assert ("shard_feed", "sharded") in [(r.subscription, r.via) for r in found.receivers]
    notes = " ".join(found.notes)
    assert f"summed over the {found.nodes} nodes" in notes and "SPUBLISH only" in notes
    run(shell, "%rtk_publish orders:{eu} 1")
    wait_until(lambda: feed.stats.delivered == 2, 5, "the double delivery")
    assert shell.user_ns["shard_feed"].stats.delivered == 0
