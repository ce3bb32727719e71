"""Sharded Pub/Sub and Redis Cluster: the subscription state on its own, one server, and a
real 3-master + 3-replica loopback cluster per engine (started once per session)."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis
import test_faults
from _proxy import TcpProxy
from cluster_support import LoopbackCluster, cluster_cli
from conftest import ENGINES, _binary, wait_until
from redis.crc import key_slot

from redis_toolkit_nb import PublishError, RedisToolkit, SubscriptionError
from redis_toolkit_nb._shards import RECONCILE
from redis_toolkit_nb._subscriptions import SHARD, ReplyError, Subscriptions, by_slot


class Recorder(test_faults.Recorder):
    """test_faults' recorder, read per channel."""

    def of(self, channel: str) -> list[object]:
        with self.lock:
            return [d for c, d in self.items if c == channel]


def _invariant(s) -> None:
    assert s.received == s.delivered + s.dropped + s.decode_errors + s.skipped + s.pending


# ---- the subscription state, no server --------------------------------------------------------
def test_sharded_names_are_grouped_by_slot():
    names = [b"a{x}", b"b{x}", b"news", b"x14184"]
    groups = by_slot(SHARD, names)
    assert [b"a{x}", b"b{x}"] in groups and [b"news"] in groups and [b"x14184"] in groups
    assert by_slot("channel", names) == [names]  # classic channels: one command


def test_unsolicited_sunsubscribe_is_a_move_not_an_answer():
    redirects: list[tuple] = []
    subs = Subscriptions("unit", 1.0, [], on_redirect=lambda *a: redirects.append(a))
    subs.request("sub", SHARD, [b"news"])
    subs.opened()
    subs.take()
    subs.on_replies([[b"ssubscribe", b"news", 1]])
    assert subs.connected
    # A PING and a 2-name SSUBSCRIBE are in flight when the node lets "news" go on its own.
    subs.ping()
    subs.request("sub", SHARD, [b"o{t}", b"p{t}"])
    subs.take()
    subs.on_replies([[b"sunsubscribe", b"news", 0]])
    assert b"news" not in subs.confirmed[SHARD] and not subs.connected
    assert subs.take() == [b"*2\r\n$10\r\nSSUBSCRIBE\r\n$4\r\nnews\r\n"]  # asked again at once
    # The replies to the PING and the SSUBSCRIBE still match their commands.
    subs.on_replies([b"PONG", [b"ssubscribe", b"o{t}", 1], [b"ssubscribe", b"p{t}", 2]])
    assert subs.confirmed[SHARD] == {b"o{t}", b"p{t}"}
    # The node no longer owns the slot: MOVED hands "news" to the owner.
    subs.on_replies([ReplyError("MOVED 5161 127.0.0.1:7001")])
    assert redirects == [([b"news"], 5161, "127.0.0.1", 7001)]
    assert b"news" not in subs.wanted[SHARD] and subs.connected and not subs.refused
    assert subs.clock.homeless == 1  # the move's gap runs until it is confirmed elsewhere


# ---- one server (7.0+): sharded channels are a namespace of their own ---------------------------
def test_sharded_on_a_standalone_server(server, no_thread_leaks):
    rec = Recorder()
    sub = RedisToolkit(url=server.url, sharded_channels=["s:{a}", "s:{b}"], message_handler=rec)
    pub = RedisToolkit(url=server.url)
    try:
        assert sub.stats.sharded_channels == ("s:{a}", "s:{b}")
        assert pub.publisher("s:{a}", {"n": 1}, sharded=True) == 1
        assert pub.publisher("s:{a}", "classic") == 0  # PUBLISH does not reach SSUBSCRIBE
        assert pub.publish_many("s:{b}", list(range(500)), sharded=True) == 500
        wait_until(lambda: len(rec.items) == 501, what="every sharded message")
        assert rec.of("s:{a}") == [{"n": 1}] and rec.of("s:{b}") == list(range(500))
        sub.subscribe("t*", sharded=True)  # taken literally: no sharded patterns
        assert "t*" in sub.stats.sharded_channels and sub.stats.patterns == ()
        sub.unsubscribe("s:{a}", sharded=True)
        assert pub.publisher("s:{a}", 2, sharded=True) == 0
        s = sub.stats
        assert s.connected and s.moves == 0 and list(s.nodes.values())[0].classic
        _invariant(s)
    finally:
        sub.cleanup()
        pub.cleanup()


def test_asking_whether_it_is_a_cluster_leaves_no_connection(own_server):
    """Classic publishing asks once whether the server is a cluster node (to move when that
    node is lost): the side connection is closed at once, not left to the garbage collector."""
    admin = redis.Redis.from_url(own_server.url)
    before = len(admin.client_list())
    gc.disable()  # a reference cycle must not be what closes it
    try:
        with RedisToolkit(url=own_server.url) as pub:
            assert pub.publisher("x", 1) == 0
            assert pub.cluster is None
            assert len(admin.client_list()) == before + 1  # the publishing connection only
    finally:
        gc.enable()
        admin.close()


# ---- a real cluster per engine ----------------------------------------------------------------
@pytest.fixture(scope="session", params=sorted(ENGINES))
def cluster(request: pytest.FixtureRequest):
    binary = _binary(request.param)
    lc = LoopbackCluster(binary, cluster_cli(request.param, binary))
    try:
        yield lc.start()
    finally:
        lc.stop()


def _names_per_master(lc: LoopbackCluster, prefix: str) -> dict[int, str]:
    """One channel name per master (a name whose slot that master owns)."""
    out: dict[int, str] = {}
    i = 0
    while len(out) < 3:
        name = f"{prefix}{i}"
        out.setdefault(lc.slot_owner(key_slot(name.encode())), name)
        i += 1
    return out


def test_sharded_across_three_shards(cluster, no_thread_leaks):
    names = _names_per_master(cluster, "feed:")
    extra = [f"{{{names[m]}}}:more" for m in names]  # same slots: one SSUBSCRIBE each
    rec = Recorder()
    sub = RedisToolkit(
        url=cluster.url, sharded_channels=[*names.values(), *extra], message_handler=rec
    )
    pub = RedisToolkit(url=cluster.url)
    try:
        assert pub.cluster is not None and len(pub.cluster.map.masters) == 3
        s = sub.stats
        sharded_nodes = {k: v for k, v in s.nodes.items() if v.sharded_channels}
        assert len(sharded_nodes) == 3 and s.connected
        for master, name in names.items():
            assert name in sharded_nodes[f"127.0.0.1:{master}"].sharded_channels
            with cluster.client(master) as c:
                assert dict(c.pubsub_shardnumsub(name))[name.encode()] == 1
        for name in [*names.values(), *extra]:
            assert pub.publisher(name, name, sharded=True) == 1
            assert pub.publish_many(name, range(100), sharded=True) == 100
        wait_until(lambda: len(rec.items) == 6 * 101, what="every shard's messages")
        for name in [*names.values(), *extra]:
            assert rec.of(name) == [name, *range(100)]
        _invariant(sub.stats)
    finally:
        sub.cleanup()
        pub.cleanup()


class _Publisher(threading.Thread):
    """SPUBLISH numbered messages at ~1 kHz through a toolkit (following MOVED)."""

    def __init__(self, toolkit: RedisToolkit, channel: str) -> None:
        super().__init__(daemon=True)
        self.toolkit, self.channel = toolkit, channel
        self.sent: list[int] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            try:
                self.toolkit.publisher(self.channel, i, sharded=True)
                self.sent.append(i)
            except Exception:  # noqa: BLE001 - a dead master: counted, retried
                self.errors += 1
            i += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def _flowing(rec: Recorder, channel: str, more: int = 50) -> None:
    seen = len(rec.of(channel))
    wait_until(lambda: len(rec.of(channel)) >= seen + more, what=f"{channel} flowing")


def test_slot_migration_and_back(cluster, no_thread_leaks):
    channel = "migrating"
    slot = key_slot(channel.encode())
    home = cluster.slot_owner(slot)
    other = next(m for m in cluster.masters() if m != home)
    rec = Recorder()
    sub = RedisToolkit(url=cluster.url, sharded_channels=[channel], message_handler=rec)
    pub = _Publisher(RedisToolkit(url=cluster.url), channel)
    pub.start()
    try:
        _flowing(rec, channel)
        cluster.move_slot(slot, other)
        wait_until(lambda: sub.stats.moves == 1, what="the move followed")
        held = sub.stats.nodes[f"127.0.0.1:{other}"].sharded_channels
        assert held == (channel,)
        _flowing(rec, channel)
        cluster.move_slot(slot, home)
        wait_until(lambda: sub.stats.moves == 2, what="the move back followed")
        _flowing(rec, channel)
        s = sub.stats
        assert s.connected and s.sharded_channels == (channel,)
        assert s.max_move_gap_s < 0.05, s.max_move_gap_s
        assert 0 < s.move_gap_s <= 2 * s.max_move_gap_s
        got = rec.of(channel)
        assert got == sorted(got) and len(set(got)) == len(got)  # in order, no duplicates
    finally:
        pub.stop()
        pub.toolkit.cleanup()
        sub.cleanup()
        if cluster.slot_owner(slot) != home:
            cluster.move_slot(slot, home)
    _invariant(s)


def test_publish_many_sharded_across_a_move(cluster, no_thread_leaks):
    channel = "bulk-moving"
    slot = key_slot(channel.encode())
    home = cluster.slot_owner(slot)
    other = next(m for m in cluster.masters() if m != home)
    rec = Recorder()
    sub = RedisToolkit(url=cluster.url, sharded_channels=[channel], message_handler=rec)
    pub = RedisToolkit(url=cluster.url)
    total = 12_000

    def values():
        for i in range(total):
            if i == 5_000:  # mid-chunk: what was built goes to the old owner, MOVED follows
                cluster.move_slot(slot, other)
                wait_until(lambda: sub.stats.moves == 1, what="the subscriber re-homed")
            yield i

    try:
        assert pub.publish_many(channel, values(), sharded=True) == total
        assert pub.cluster.owner(channel.encode()) == ("127.0.0.1", other)
        wait_until(lambda: len(rec.of(channel)) == total, what="every message")
        assert rec.of(channel) == list(range(total))  # in order, nothing twice
    finally:
        sub.cleanup()
        pub.cleanup()
        if cluster.slot_owner(slot) != home:
            cluster.move_slot(slot, home)


def _held(sub: RedisToolkit, port: int) -> tuple[str, ...]:
    node = sub.stats.nodes.get(f"127.0.0.1:{port}")
    return node.sharded_channels if node is not None and node.connected else ()


def test_failover_and_failback(cluster, no_thread_leaks):
    channel = "failing-over"
    master = cluster.slot_owner(key_slot(channel.encode()))
    replica = cluster.replica_of(master)
    rec = Recorder()
    sub = RedisToolkit(url=cluster.url, sharded_channels=[channel], message_handler=rec)
    pub = _Publisher(RedisToolkit(url=cluster.url), channel)
    pub.start()
    try:
        _flowing(rec, channel)
        cluster.failover(replica)
        wait_until(lambda: sub.stats.moves >= 1, what="the failover followed")
        _flowing(rec, channel)
        # Re-homed to the new master: at once on Valkey (the demoted master lets the channel
        # go), by the periodic reconcile on Redis 7.0 (the demoted master, now a replica,
        # keeps serving it).
        wait_until(
            lambda: channel in _held(sub, replica), RECONCILE + 3, "the channel on the new master"
        )
        _flowing(rec, channel)
        cluster.failover(master, takeover=True)  # fail back
        wait_until(
            lambda: channel in _held(sub, master), RECONCILE + 3, "the channel back on its master"
        )
        _flowing(rec, channel)
        s = sub.stats
        assert s.connected and s.sharded_channels == (channel,)
        assert s.max_move_gap_s < 0.5, s.max_move_gap_s
    finally:
        pub.stop()
        pub.toolkit.cleanup()
        sub.cleanup()
        cluster.ready()
    _invariant(s)


def test_kill_a_master(cluster, no_thread_leaks):
    """SIGKILL the master of a sharded channel and of a classic subscriber's node: both
    move, and sharded delivery resumes within about a second of the replica's promotion."""
    channel = "killed-master"
    master = cluster.slot_owner(key_slot(channel.encode()))
    replica = cluster.replica_of(master)
    survivor = next(m for m in cluster.masters() if m != master)
    rec = Recorder()
    sub = RedisToolkit(url=cluster.url, sharded_channels=[channel], message_handler=rec)
    classic_rec = Recorder()
    classic = RedisToolkit(
        url=f"redis://127.0.0.1:{master}/0", channels=["plain"], message_handler=classic_rec
    )
    pub = _Publisher(RedisToolkit(url=f"redis://127.0.0.1:{survivor}/0"), channel)
    plain = RedisToolkit(url=f"redis://127.0.0.1:{survivor}/0")
    pub.start()
    node = cluster.nodes[master]
    try:
        _flowing(rec, channel)
        os.kill(node.pid, signal.SIGKILL)
        wait_until(lambda: not node.running, what="the master gone")
        wait_until(lambda: sub.stats.disconnects >= 1, what="the subscriber saw the loss")
        # Classic channels: moved to another node at once (the cluster is healthy).
        wait_until(
            lambda: classic.stats.connected and f"127.0.0.1:{master}" not in classic.stats.nodes,
            timeout=5,
            what="the classic subscriber on another node",
        )
        wait_until(lambda: plain.publisher("plain", 1) >= 0 and classic_rec.items, timeout=3)
        wait_until(
            lambda: cluster.slot_owner(key_slot(channel.encode()), survivor) == replica,
            timeout=15,
            what="the replica promoted",
        )
        promoted = time.monotonic()
        seen = len(rec.of(channel))
        wait_until(lambda: len(rec.of(channel)) > seen, timeout=5, what="delivery resumed")
        resumed = time.monotonic() - promoted
        assert resumed < 1.0, resumed
        s = sub.stats
        assert s.moves >= 1 and s.connected
        assert s.nodes[f"127.0.0.1:{replica}"].sharded_channels == (channel,)
    finally:
        pub.stop()
        for tk in (pub.toolkit, plain, classic, sub):
            tk.cleanup()
        node.start()  # rejoins as a replica of its old replica; then fail back
        wait_until(lambda: cluster.replica_up(master), timeout=20, what="the node rejoined")
        cluster.failover(master, takeover=True)
        cluster.ready()
    _invariant(s)


def _name_in_slots(prefix: str, slots: range) -> str:
    """A channel name whose slot is in ``slots``."""
    return next(f"{prefix}{i}" for i in range(10**6) if key_slot(f"{prefix}{i}".encode()) in slots)


def test_cluster_reshard_and_back(cluster, no_thread_leaks):
    """``--cluster reshard`` moves the lowest slots of the source: a channel in them is
    followed to the target and back, delivery goes on, each move counted, the gap short."""
    src = cluster.slot_owner(0)
    dst = next(m for m in cluster.masters() if m != src)
    channel = _name_in_slots("resharded:", range(3))
    rec = Recorder()
    sub = RedisToolkit(url=cluster.url, sharded_channels=[channel], message_handler=rec)
    pub = _Publisher(RedisToolkit(url=cluster.url), channel)
    pub.start()
    try:
        _flowing(rec, channel)
        cluster.reshard(src, dst, 3)
        assert cluster.slot_owner(key_slot(channel.encode())) == dst  # the move happened
        wait_until(lambda: sub.stats.moves == 1, what="the reshard followed")
        assert sub.stats.nodes[f"127.0.0.1:{dst}"].sharded_channels == (channel,)
        _flowing(rec, channel)
        cluster.reshard(dst, src, 3)  # slots 0-2 are now the target's lowest: they go back
        assert cluster.slot_owner(key_slot(channel.encode())) == src
        wait_until(lambda: sub.stats.moves == 2, what="the reshard back followed")
        _flowing(rec, channel)
        s = sub.stats
        assert s.connected and s.sharded_channels == (channel,)
        assert s.nodes[f"127.0.0.1:{src}"].sharded_channels == (channel,)
        assert s.max_move_gap_s < 0.05, s.max_move_gap_s
        got = rec.of(channel)
        assert got == sorted(got) and len(set(got)) == len(got)
    finally:
        pub.stop()
        pub.toolkit.cleanup()
        sub.cleanup()
        for slot in range(3):
            if cluster.slot_owner(slot) != src:
                cluster.move_slot(slot, src)
        cluster.ready()
    _invariant(s)


def test_acl_on_a_cluster(cluster, caplog, no_thread_leaks):
    """An ACL user (set on every node) allowed ``allowed:*`` only: a refused sharded
    subscription or publish is a clear error with the server's refusal as its cause, the
    permitted channels work on every shard, and the password shows up nowhere."""
    caplog.set_level(logging.DEBUG, logger="redis_toolkit_nb")
    password = "carol-Cluster-pw-7731"
    rules = ["on", f">{password}", "~*", "+@all", "resetchannels", "&allowed:*"]
    cluster.acl_user("carol", "reset", *rules)
    seed = cluster.any_master()
    url = f"redis://carol:{password}@127.0.0.1:{seed}/0"
    allowed = _names_per_master(cluster, "allowed:")
    # Refused names owned by another master than the one the toolkit was given.
    secret = next(n for m, n in _names_per_master(cluster, "secret:").items() if m != seed)
    texts: list[str] = []

    def refused(error: pytest.ExceptionInfo, kind: type) -> None:
        assert isinstance(error.value, kind)
        assert isinstance(error.value.__cause__, redis.exceptions.NoPermissionError)
        texts.extend([str(error.value), repr(error.value), str(error.value.__cause__)])

    with pytest.raises(SubscriptionError, match=secret) as info:
        RedisToolkit(url=url, sharded_channels=[secret], message_handler=print)
    refused(info, SubscriptionError)
    rec = Recorder()
    sub = RedisToolkit(url=url, sharded_channels=list(allowed.values()), message_handler=rec)
    pub = RedisToolkit(url=url)
    try:
        assert len([n for n in sub.stats.nodes.values() if n.sharded_channels]) == 3
        for name in allowed.values():
            assert pub.publisher(name, name, sharded=True) == 1
        wait_until(lambda: len(rec.items) == 3, what="a message from every shard")
        with pytest.raises(SubscriptionError, match=secret) as info:
            sub.subscribe(secret, sharded=True)
        refused(info, SubscriptionError)
        assert sub.stats.sharded_channels == tuple(allowed.values())  # untouched
        # A refused and a permitted name in one call, on one node (the refusal is answered
        # first): only the refused one is given up, and the error says so.
        late = _names_per_master(cluster, "allowed:late:")[
            cluster.slot_owner(key_slot(secret.encode()))
        ]
        with pytest.raises(SubscriptionError, match=f"{late} subscribed nonetheless") as info:
            sub.subscribe(secret, late, sharded=True)
        refused(info, SubscriptionError)
        assert late in sub.stats.sharded_channels and secret not in sub.stats.sharded_channels
        assert pub.publisher(late, "late", sharded=True) == 1
        rec.wait_for((late, "late"))
        with pytest.raises(PublishError) as info:
            pub.publisher(secret, 1, sharded=True)
        refused(info, PublishError)
        with pytest.raises(PublishError) as info:
            pub.publish_many(secret, [1, 2], sharded=True)
        texts += [str(info.value), repr(info.value)]
        s = sub.stats
        assert s.connected and secret not in s.sharded_channels
        texts += [repr(s), str(s.last_error), repr(sub), repr(pub), sub.url, pub.url]
    finally:
        sub.cleanup()
        pub.cleanup()
        for port, node in cluster.nodes.items():
            if node.running:
                with cluster.client(port) as c:
                    c.execute_command("ACL", "DELUSER", "carol")
    assert caplog.records, "nothing was logged: the test would prove nothing"
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    leaks = [t for t in texts if password in t]
    assert not leaks, leaks
    _invariant(s)


def _restore_master(cluster: LoopbackCluster, port: int) -> None:
    """Restart a killed master; if its replica was promoted meanwhile, fail back."""
    node = cluster.nodes[port]
    node.start()
    wait_until(
        lambda: port in cluster.masters() or cluster.replica_up(port),
        timeout=20,
        what="the node rejoined",
    )
    if port not in cluster.masters():
        cluster.failover(port, takeover=True)
    cluster.ready()


def test_classic_publishing_moves_when_its_node_dies(cluster, caplog, no_thread_leaks):
    """``publisher()`` and ``publish_many()`` of classic channels, given one node of a
    cluster, move to another node when that one is killed (any node relays a PUBLISH to
    every subscriber); they stay there, and nothing is published twice."""
    doomed = cluster.any_master()
    survivor = next(m for m in cluster.masters() if m != doomed)
    rec = Recorder()
    sub = RedisToolkit(
        url=f"redis://127.0.0.1:{survivor}/0", channels=["broadcast"], message_handler=rec
    )
    one = RedisToolkit(url=f"redis://127.0.0.1:{doomed}/0")
    many = RedisToolkit(url=f"redis://127.0.0.1:{doomed}/0")
    node = cluster.nodes[doomed]
    try:
        assert one.publisher("broadcast", "before") == 0  # the receiver is on another node
        assert many.publish_many("broadcast", ["b1", "b2"]) == 2
        rec.wait_for(("broadcast", "b2"))
        os.kill(node.pid, signal.SIGKILL)
        wait_until(lambda: not node.running, what="the node gone")
        started = time.monotonic()
        assert one.publisher("broadcast", "after") in (0, 1)  # 1 if the survivor took it
        took = time.monotonic() - started
        assert took < 1.0, took  # a few ms on loopback: no wait for a promotion
        assert many.publish_many("broadcast", [f"m{i}" for i in range(3000)]) == 3000
        assert one.publisher("broadcast", "again") in (0, 1)  # no second move
        rec.wait_for(("broadcast", "again"))
        got = [d for c, d in rec.items]
        expected = ["before", "b1", "b2", "after", *(f"m{i}" for i in range(3000)), "again"]
        assert got == expected  # each once, in order
        moved = [r.getMessage() for r in caplog.records if "publishing moved" in r.message]
        assert len(moved) == 2 and all(f"from 127.0.0.1:{doomed}" in m for m in moved), moved
    finally:
        for tk in (one, many, sub):
            tk.cleanup()
        if not node.running:
            _restore_master(cluster, doomed)


def test_classic_publishing_by_a_user_who_may_not_read_the_slot_map(cluster):
    """An ACL user without ``CLUSTER SLOTS`` publishes classic channels as before (the toolkit
    cannot learn the other nodes, so it cannot move: that must not fail the publish)."""
    password = "dave-NoSlots-pw-5"
    cluster.acl_user("dave", "reset", "on", f">{password}", "~*", "&*", "+@all", "-cluster")
    try:
        with RedisToolkit(url=f"redis://dave:{password}@127.0.0.1:{cluster.any_master()}/0") as tk:
            assert tk.publisher("plain", 1) == 0
            assert tk.publish_many("plain", [1, 2]) == 2
            assert tk.publisher("plain", 2) == 0
    finally:
        for port, node in cluster.nodes.items():
            if node.running:
                with cluster.client(port) as c:
                    c.execute_command("ACL", "DELUSER", "dave")


def test_resp3_on_a_cluster(cluster, no_thread_leaks):
    """``?protocol=3``: every node's connection speaks RESP3 (confirmations and messages are
    pushes), sharded channels on every shard, a classic channel and a move all work."""
    names = _names_per_master(cluster, "resp3:")
    moving = names[cluster.any_master()]
    slot = key_slot(moving.encode())
    home = cluster.slot_owner(slot)
    other = next(m for m in cluster.masters() if m != home)
    url = f"{cluster.url}?protocol=3"
    rec = Recorder()
    sub = RedisToolkit(
        url=url, channels=["plain3"], sharded_channels=list(names.values()), message_handler=rec
    )
    pub = RedisToolkit(url=url)
    try:
        assert sub.client.connection_pool.connection_kwargs.get("protocol") == 3
        for master in names:  # every node's reader speaks RESP3
            with cluster.client(master) as c:
                assert "3" in {e.get("resp") for e in c.client_list(_type="pubsub")}, master
        for name in names.values():
            assert pub.publish_many(name, range(100), sharded=True) == 100
        assert pub.publisher("plain3", "classic") in (0, 1)
        wait_until(lambda: len(rec.items) == 301, what="every message over RESP3")
        cluster.move_slot(slot, other)
        wait_until(lambda: sub.stats.moves == 1, what="the move followed")
        assert pub.publisher(moving, "moved", sharded=True) == 1
        rec.wait_for((moving, "moved"))
        for name in names.values():
            assert rec.of(name)[:100] == list(range(100))
        s = sub.stats
        assert s.connected and s.max_move_gap_s < 0.05, s.max_move_gap_s
    finally:
        sub.cleanup()
        pub.cleanup()
        if cluster.slot_owner(slot) != home:
            cluster.move_slot(slot, home)
    _invariant(s)


def _cut_and_recover(
    proxy: TcpProxy,
    sub: RedisToolkit,
    pub: RedisToolkit,
    rec: Recorder,
    channel: str,
    sharded: bool,
    n: int,
) -> None:
    """Cut the proxied link in the middle of a 200 KB message on ``channel`` (the ``n``-th
    cut), then check the recovery."""
    # The previous cut may still be healing on this link: wait for the subscription, then
    # publish until one arrives (a classic PUBLISH crosses the cluster bus, and one sent
    # while the link is down reaches nobody: at-most-once).
    wait_until(
        lambda: (
            sub.stats.connected
            and channel in (sub.stats.sharded_channels if sharded else sub.stats.channels)
        ),
        what=f"{channel} subscribed before the cut",
    )

    def before_arrived() -> bool:
        if (channel, "before") in rec.items:
            return True
        assert pub.publisher(channel, "before", sharded=sharded) in (0, 1)
        return False

    wait_until(before_arrived, what=f"a message on {channel} before the cut")
    big = "x" * 200_000
    sent_before = proxy.downstream_bytes
    proxy.cut_after(100_000)  # half of the next message, then RST both ways
    pub.publisher(channel, big, sharded=sharded)
    wait_until(lambda: proxy.resets >= n, what="the proxy cut the link mid-message")
    assert proxy.downstream_bytes - sent_before >= 100_000
    wait_until(
        lambda: (
            sub.stats.reconnects >= n
            and sub.stats.connected
            and channel in (sub.stats.sharded_channels if sharded else sub.stats.channels)
        ),
        timeout=5,
        what=f"{channel} subscribed again after the cut",
    )
    assert sub.stats.truncated == n  # the half message is counted as lost, not hidden
    assert (channel, big) not in rec.items

    def after_arrived() -> bool:  # as "before": a PUBLISH while the link heals reaches nobody
        if (channel, "after") in rec.items:
            return True
        assert pub.publisher(channel, "after", sharded=sharded) in (0, 1)
        return False

    wait_until(after_arrived, what=f"a message on {channel} after the cut")


def test_link_cut_mid_message_to_one_node(cluster, no_thread_leaks):
    """A node's link cut in the middle of a message (a proxy in front of the node, which
    announces the proxy's port): its readers reconnect, count the half message as truncated
    and lost, and receive what comes next, like on one server; the other nodes never notice."""
    node = cluster.any_master()
    far = next(m for m in cluster.masters() if m != node)
    sharded = _names_per_master(cluster, "cut:")
    mine, other = sharded[node], sharded[far]
    rec = Recorder()
    with TcpProxy("127.0.0.1", node) as proxy:
        with cluster.client(node) as c:
            c.config_set("cluster-announce-port", proxy.port)
        sub = pub = None
        try:
            wait_until(lambda: cluster.slot_owner(key_slot(mine.encode()), node) == proxy.port)
            sub = RedisToolkit(
                url=proxy.url,
                channels=["cut:plain"],
                sharded_channels=[mine, other],
                message_handler=rec,
                options=test_faults.FAST,
            )
            pub = RedisToolkit(url=f"redis://127.0.0.1:{far}/0")
            through = f"127.0.0.1:{proxy.port}"
            assert sub.stats.nodes[through].sharded_channels == (mine,)  # read via the proxy
            _cut_and_recover(proxy, sub, pub, rec, mine, sharded=True, n=1)
            _cut_and_recover(proxy, sub, pub, rec, "cut:plain", sharded=False, n=2)
            assert pub.publisher(other, "untouched", sharded=True) == 1
            rec.wait_for((other, "untouched"))
            assert sub.stats.nodes[f"127.0.0.1:{far}"].connected
            _invariant(sub.stats)
        finally:
            for tk in (sub, pub):
                if tk is not None:
                    tk.cleanup()
            with cluster.client(node) as c:
                c.config_set("cluster-announce-port", 0)
            wait_until(lambda: node in cluster.masters(), what="the real port announced again")
            cluster.ready()


# ---- a TLS cluster (Redis 7 from PATH: the bundled Valkey is built without TLS) ---------------
@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):
    openssl, binary = shutil.which("openssl"), shutil.which("redis-server")
    if not openssl or not binary:
        pytest.fail("openssl and redis-server are needed for the TLS cluster")
    d = tmp_path_factory.mktemp("tls-cluster")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # Three masters, no replicas: what TLS changes is the links, not the failover.
    lc = LoopbackCluster(binary, "redis-cli", replicas=0, tls=(cert, key))
    try:
        yield lc.start(), cert
    finally:
        lc.stop()


def test_tls_cluster(tls_cluster, no_thread_leaks):
    """Given one node's TLS address, every node is read over TLS (the slot map a TLS client
    gets names the TLS ports), sharded and classic channels flow, and a move is followed."""
    cluster, ca = tls_cluster
    names = _names_per_master(cluster, "tls:")
    seed = cluster.tls_ports[cluster.any_master()]

    def client() -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=seed, ssl=True, ssl_ca_certs=ca)

    rec = Recorder()
    sub = RedisToolkit(
        redis=client(),
        channels=["tls:plain"],
        sharded_channels=list(names.values()),
        message_handler=rec,
    )
    pub = RedisToolkit(redis=client())
    moving = names[cluster.any_master()]
    slot = key_slot(moving.encode())
    home = cluster.slot_owner(slot)
    other = next(m for m in cluster.masters() if m != home)
    try:
        tls_nodes = {f"127.0.0.1:{cluster.tls_ports[m]}" for m in names}
        held = {a for a, n in sub.stats.nodes.items() if n.sharded_channels}
        assert held == tls_nodes  # never a plain port
        assert pub.cluster is not None
        assert {
            pub.cluster.client(a).connection_pool.connection_class for a in pub.cluster.map.masters
        } == {redis.SSLConnection}
        for name in names.values():
            assert pub.publish_many(name, range(2000), sharded=True) == 2000
        assert pub.publisher("tls:plain", "classic") in (0, 1)
        wait_until(lambda: len(rec.items) == 6001, what="every message over TLS")
        for name in names.values():
            assert rec.of(name) == list(range(2000))
        cluster.move_slot(slot, other)
        wait_until(lambda: sub.stats.moves == 1, what="the move followed over TLS")
        assert sub.stats.nodes[f"127.0.0.1:{cluster.tls_ports[other]}"].sharded_channels
        assert pub.publisher(moving, "moved", sharded=True) == 1
        rec.wait_for((moving, "moved"))
        s = sub.stats
        assert s.connected and s.max_move_gap_s < 0.05, s.max_move_gap_s
    finally:
        sub.cleanup()
        pub.cleanup()
        if cluster.slot_owner(slot) != home:
            cluster.move_slot(slot, home)
    _invariant(s)
