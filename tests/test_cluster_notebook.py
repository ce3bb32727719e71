"""The notebook layer on Redis Cluster: ``--sharded`` magics, ``%rtk shards``, the panel's
nodes and moves, the Cluster tab; through a re-raising IPython shell on a real 3+3 loopback
cluster per engine (``cluster_support``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from cluster_support import LoopbackCluster, cluster_cli
from conftest import ENGINES, _binary, wait_until
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython
from redis.crc import key_slot

from redis_toolkit_nb import RedisToolkit
from redis_toolkit_nb.embedded import answers, start_cluster

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module", params=sorted(ENGINES))
def lc(request: pytest.FixtureRequest):
    binary = _binary(request.param)
    cluster = LoopbackCluster(binary, cluster_cli(request.param, binary))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ip():
    # start_ipython() returns the shell only on its first call in a process.
    return start_ipython() or get_ipython()


def _shell(ip, monkeypatch, url: str):
    monkeypatch.setenv("REDIS_URL", url)
    ip.run_line_magic("load_ext", "redis_toolkit_nb")
    magics = ip.magics_manager.registry["RtkMagics"]
    magics.show_connection = False
    return ip


def _unload(ip) -> None:
    ip.run_line_magic("unload_ext", "redis_toolkit_nb")
    for name in [n for n in ip.user_ns if n.startswith(("sub", "shard", "feed", "x_"))]:
        ip.user_ns.pop(name, None)


@pytest.fixture
def shell(ip, lc, monkeypatch):
    """The shell with the extension loaded, connecting to the cluster through REDIS_URL."""
    _shell(ip, monkeypatch, lc.url)
    try:
        yield ip
    finally:
        _unload(ip)


@pytest.fixture
def standalone_shell(ip, server, monkeypatch):
    _shell(ip, monkeypatch, server.url)
    try:
        yield ip
    finally:
        _unload(ip)


def run(ip, code: str):
    """Run a cell; raise what it raised (UsageError included); return its value."""
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def _node(lc: LoopbackCluster, channel: str) -> str:
    return f"127.0.0.1:{lc.slot_owner(key_slot(channel.encode()))}"


# ---- 1. the magics ----------------------------------------------------------------------------
def test_subscribe_help_lists_the_options(shell):
    doc = shell.find_cell_magic("rtk_subscribe").__doc__
    for option in ("--sharded", "--name", "--max-rows", "--decode", "CHANNEL_OR_PATTERN"):
        assert option in doc
    with pytest.raises(UsageError) as err:
        run(shell, "%%rtk_subscribe --sharded --bogus a\npass")
    text = str(err.value)
    assert text.count("usage:") == 1 and "usage: %%rtk_subscribe" in text and "--bogus" in text
    assert "::" not in text


def test_sharded_magics_say_kind_and_node(shell, lc):
    run(shell, "%%rtk_subscribe --sharded orders:{eu} orders:{us} --name shard_feed\n")
    feed = shell.user_ns["shard_feed"]
    assert sorted(feed.sharded_channels) == ["orders:{eu}", "orders:{us}"]
    assert run(shell, '%rtk_publish --sharded orders:{eu} {"n": 1}') == 1
    report = run(shell, '%rtk_publish --sharded --count 20 --rate 2000 orders:{us} {"i": i}')
    assert report.published == 20 and report.receivers == 20
    # A classic PUBLISH does not reach a sharded subscription (another namespace).
    run(shell, "%rtk_publish orders:{eu} 2")
    wait_until(lambda: feed.stats.delivered == 21, 5, "21 sharded messages")
    df = feed.df
    assert list(df.columns) == ["time", "channel", "pattern", "data", "size", "kind", "node"]
    assert set(df["kind"]) == {"sharded"}
    for channel in ("orders:{eu}", "orders:{us}"):
        assert set(df[df["channel"] == channel]["node"]) == {_node(lc, channel)}
    assert [d["i"] for d in df[df["channel"] == "orders:{us}"]["data"]] == list(range(20))
    header = feed.panel.header.value
    assert "sharded channels: orders:{eu}, orders:{us}" in header and "moves 0" in header
    subs = run(shell, "%rtk subs")
    assert subs.set_index("name").loc["shard_feed", "subscribed"] == "orders:{eu}, orders:{us}"


def test_classic_rows_on_a_cluster_say_channel_or_pattern_and_the_node(shell, lc):
    run(shell, "%%rtk_subscribe news news.* --name feed\n")
    feed = shell.user_ns["feed"]
    run(shell, "%rtk_publish news 1")
    run(shell, "%rtk_publish news.eu 2")
    wait_until(lambda: feed.stats.delivered == 2, 5, "two classic messages")
    df = feed.df
    assert list(df["kind"]) == ["channel", "pattern"]
    (classic,) = [n for n, s in feed.stats.nodes.items() if s.classic]
    assert set(df["node"]) == {classic}


def test_sharded_publish_on_a_standalone_server(standalone_shell, server):
    run(standalone_shell, "%%rtk_subscribe --sharded solo --name shard_solo\n")
    feed = standalone_shell.user_ns["shard_solo"]
    assert run(standalone_shell, "%rtk_publish --sharded solo 7") == 1
    assert run(standalone_shell, "%rtk_publish solo 8") == 0  # classic: another namespace
    wait_until(lambda: feed.stats.delivered == 1, 5, "one message")
    assert list(feed.df["node"]) == [f"127.0.0.1:{server.port}"]
    assert list(feed.df["kind"]) == ["sharded"]


def test_a_slot_move_shows_in_the_rows_the_panel_and_the_log(shell, lc):
    channel = "moving:{m}"
    slot = key_slot(channel.encode())
    run(shell, f"%%rtk_subscribe --sharded {channel} --name shard_move\n")
    feed = shell.user_ns["shard_move"]
    src = lc.slot_owner(slot)
    dst = next(p for p in lc.masters() if p != src)
    try:
        run(shell, f"%rtk_publish --sharded {channel} 'before'")
        wait_until(lambda: feed.stats.delivered == 1, 5, "the first message")
        feed.panel.refresh()
        lc.move_slot(slot, dst)
        wait_until(lambda: feed.stats.moves == 1, 5, "the move")
        wait_until(
            lambda: feed.stats.nodes.get(f"127.0.0.1:{dst}", (0, 0, ()))[2] == (channel,),
            5,
            "the channel confirmed on its new node",
        )
        feed.panel.refresh()
        assert run(shell, f"%rtk_publish --sharded {channel} 'after'") == 1
        wait_until(lambda: feed.stats.delivered == 2, 5, "the message after the move")
        df = feed.df
        assert list(df["node"]) == [f"127.0.0.1:{src}", f"127.0.0.1:{dst}"]
        feed.panel.refresh()
        header = feed.panel.header.value
        assert "moves 1" in header and f"127.0.0.1:{dst}" in header
        gap_ms = feed.stats.max_move_gap_s * 1000
        assert 0 < gap_ms < 500 and f"longest gap {gap_ms:.1f} ms" in header
        assert f"{channel} moved 127.0.0.1:{src} \u2192 127.0.0.1:{dst}" in feed.panel.log.value
    finally:
        lc.move_slot(slot, src)
        lc.ready()


# ---- 2. %rtk shards, 4. the Cluster tab --------------------------------------------------------
def test_rtk_shards_lists_sharded_channels_with_slot_and_owner(shell, lc):
    run(shell, "%%rtk_subscribe --sharded orders:{eu} orders:{us} audit --name shard_feed\n")
    frame = run(shell, "%rtk shards")
    assert list(frame.columns) == ["channel", "slot", "node", "subscribers"]
    assert list(frame["channel"]) == ["audit", "orders:{eu}", "orders:{us}"]
    for row in frame.itertuples(index=False):
        assert row.slot == key_slot(row.channel.encode())
        assert row.node == _node(lc, row.channel) and row.subscribers == 1
    only = run(shell, "%rtk shards orders:*")
    assert list(only["channel"]) == ["orders:{eu}", "orders:{us}"]
    with pytest.raises(UsageError, match="usage: %rtk shards"):
        run(shell, "%rtk shards a b")


def test_rtk_shards_on_a_standalone_server(standalone_shell, server):
    run(standalone_shell, "%%rtk_subscribe --sharded solo --name shard_solo\n")
    frame = run(standalone_shell, "%rtk shards")
    assert frame.to_dict("records") == [
        {
            "channel": "solo",
            "slot": key_slot(b"solo"),
            "node": f"127.0.0.1:{server.port}",
            "subscribers": 1,
        }
    ]


def test_cluster_tab_shows_nodes_channels_and_moves(shell, lc):
    channel = "tab:{t}"
    slot = key_slot(channel.encode())
    run(shell, f"%%rtk_subscribe --sharded {channel} --name shard_tab\n")
    dash = run(shell, "%rtk panel")
    tabs = dash.tabs
    assert tabs.get_title(len(tabs.children) - 1) == "Cluster"
    tab = dash.cluster
    nodes = tab.nodes.value
    for port in lc.masters():
        assert f"127.0.0.1:{port}" in nodes
    assert nodes.count("<td>master</td>") == 3 and nodes.count("<td>replica</td>") == 3
    assert "0-" in nodes  # slot ranges
    src = lc.slot_owner(slot)
    assert f"<td>{channel}</td><td>{slot}</td><td>127.0.0.1:{src}</td>" in tab.channels.value
    assert "shard_tab</code>: 0 move(s)" in tab.moves.value
    dst = next(p for p in lc.masters() if p != src)
    feed = shell.user_ns["shard_tab"]
    try:
        lc.move_slot(slot, dst)
        wait_until(lambda: feed.stats.moves == 1 and feed.stats.connected, 5, "the move")
        wait_until(lambda: channel in feed.stats.nodes.get(f"127.0.0.1:{dst}", (0, 0, ()))[2])
        tab._map_at = 0.0  # read the slot map now, not in up to 2 s
        tab.refresh()
        assert f"<td>127.0.0.1:{dst}</td>" in tab.channels.value
        assert "shard_tab</code>: 1 move(s)" in tab.moves.value
        assert f"{channel} 127.0.0.1:{src} \u2192 127.0.0.1:{dst}" in tab.moves.value
    finally:
        dash.close()
        lc.move_slot(slot, src)
        lc.ready()


# ---- 3. the embedded cluster ------------------------------------------------------------------
OWNER = """
import sys, time
from redis_toolkit_nb.embedded import start_cluster
cluster = start_cluster(masters=3)
print(" ".join(str(n.pid) for n in cluster.nodes), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_start_cluster_serves_sharded_pubsub_and_moves_a_slot(no_thread_leaks):
    started = time.monotonic()
    cluster = start_cluster(masters=3)
    rec: list[tuple[str, object]] = []
    tk = pub = None
    try:
        took = time.monotonic() - started
        assert took < 10, f"start_cluster took {took:.1f} s"
        assert len(cluster.nodes) == 3 and len(cluster.masters()) == 3
        # Ready means every bus link is up: a PUBLISH right away reaches both other masters.
        first = cluster.masters()[0]
        with cluster.client(first) as c:
            pipe = c.pipeline(transaction=False)
            for i in range(100):
                pipe.publish("bus", i)
            pipe.execute()
            info = c.execute_command("CLUSTER INFO")
        assert int(info["cluster_stats_messages_publish_sent"]) == 200
        assert cluster.url == f"redis://127.0.0.1:{cluster.masters()[0]}/0"
        tk = RedisToolkit(
            url=cluster.url,
            sharded_channels=["orders:{eu}", "orders:{us}"],
            message_handler=lambda c, d: rec.append((c, d)),
        )
        pub = RedisToolkit(url=cluster.url)
        assert pub.cluster is not None and len(pub.cluster.map.masters) == 3
        assert pub.publisher("orders:{eu}", 1, sharded=True) == 1
        src = cluster.owner("orders:{eu}")
        dst = next(p for p in cluster.masters() if p != src)
        assert cluster.move_slot("orders:{eu}", to=dst) == src
        assert cluster.owner("orders:{eu}") == dst
        wait_until(lambda: tk.stats.moves == 1 and tk.stats.connected, 5, "the move")
        assert pub.publisher("orders:{eu}", 2, sharded=True) == 1
        wait_until(lambda: len(rec) == 2, 5, "both messages")
        assert rec == [("orders:{eu}", 1), ("orders:{eu}", 2)]
    finally:
        for t in (tk, pub):
            if t is not None:
                t.cleanup()
        cluster.stop()
    assert not any(n.running for n in cluster.nodes)
    assert all(not answers("127.0.0.1", p) for p in cluster.ports)


def test_embedded_cluster_stops_when_its_owner_is_sigkilled():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert owner.returncode == -signal.SIGKILL  # no atexit ran
        wait_until(lambda: not any(_alive(p) for p in pids), 10, "the orphaned nodes to stop")
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.stdout.close()


def test_rtk_connect_embedded_cluster(ip, monkeypatch, capsys):
    _shell(ip, monkeypatch, "redis://127.0.0.1:1/0")  # never used: the magic says where
    try:
        cluster = run(ip, "%rtk_connect --embedded-cluster")
        out = capsys.readouterr().out
        assert f"connected to {cluster.url}" in out and "3 masters x 0 replicas" in out
        assert run(ip, "%rtk_connect --embedded-cluster") is cluster  # started once
        run(ip, "%%rtk_subscribe --sharded news:{a} news:{b} --name shard_emb\n")
        feed = ip.user_ns["shard_emb"]
        run(ip, "%rtk_publish --sharded --count 10 news:{a} i")
        run(ip, "%rtk_publish --sharded --count 10 news:{b} i")
        wait_until(lambda: feed.stats.delivered == 20, 5, "20 messages")
        nodes = set(feed.df["node"])
        assert nodes == {f"127.0.0.1:{cluster.owner(c)}" for c in ("news:{a}", "news:{b}")}
        with pytest.raises(UsageError, match="usage: %rtk_connect --embedded-cluster"):
            run(ip, "%rtk_connect --embedded-cluster redis://x")
        with pytest.raises(UsageError, match="go with --embedded-cluster"):
            run(ip, "%rtk_connect --replicas 1")
    finally:
        _unload(ip)
    assert not any(n.running for n in cluster.nodes), "unloading stops the embedded cluster"


def test_cluster_tab_never_connects_on_its_own(ip, lc, monkeypatch):
    """The tab refreshes on a background thread: it reads the notebook's connection, and
    never opens one (after %unload_ext, or before the first magic connected)."""
    from redis_toolkit_nb.notebook.cluster_tab import ClusterTab
    from redis_toolkit_nb.notebook.state import NotebookState

    state = NotebookState({}, default_url=lambda: lc.url)
    tab = ClusterTab(state)
    try:
        tab.refresh()
        assert state._toolkit is None and "not connected yet" in tab.nodes.value
        state.connect()
        tab.refresh()
        assert tab.nodes.value.count("<td>master</td>") == 3
    finally:
        tab.close()
        state.close()
