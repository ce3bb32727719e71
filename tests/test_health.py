"""The server-side health gauge: the subscriber connection's output buffer on the server
(``CLIENT LIST``: ``omem``) against ``client-output-buffer-limit pubsub``, read over a separate
connection, on real servers (both engines)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import redis
from conftest import wait_until
from test_faults import FAST

from redis_toolkit_nb import RedisToolkit, ServerBuffer, active_subscribers

MB = 1024 * 1024
PASSWORD = "health-pw"


@pytest.fixture(autouse=True)
def _stop_what_a_failed_test_left():
    before = set(active_subscribers())
    yield
    for sub in set(active_subscribers()) - before:
        sub.stop(timeout=1.0)


def test_gauge_rises_under_a_slow_handler_and_falls_when_released(own_server):
    admin = RedisToolkit(url=own_server.url)
    admin.client.config_set("client-output-buffer-limit", "pubsub 16mb 4mb 60")
    release = threading.Event()

    def slow(channel, data):
        release.wait(30)

    # "block" and a small queue and backlog: the reader stops reading while the handler is
    # stuck, so the server's buffer for this connection fills.
    opts = FAST.replace(overflow="block", queue_size=100, max_backlog_bytes=MB)
    sub = RedisToolkit(url=own_server.url, channels=["flood"], message_handler=slow, options=opts)
    try:
        first = sub.subscriber.server_buffer()
        assert isinstance(first, ServerBuffer)
        assert first.error is None, first.error
        assert (first.soft, first.hard, first.soft_seconds) == (4 * MB, 16 * MB, 60)
        assert first.omem is not None and first.omem < 64 * 1024
        assert first.level == "ok" and first.fraction is not None and first.fraction < 0.5
        assert first.client_id is not None and first.node == f"127.0.0.1:{own_server.port}"
        assert "of 4 MB soft / 16 MB hard" in first.text()

        # Flood in steps of 200 kB until the gauge warns (above half the soft limit), well
        # before the server would cut the subscriber off at the hard limit.
        chunk = ["z" * 4000] * 50
        deadline = time.monotonic() + 60
        reading = first
        while reading.level == "ok" and time.monotonic() < deadline:
            admin.publish_many("flood", chunk)
            reading = sub.subscriber.server_buffer()
        assert reading.level == "warn", reading
        assert reading.omem is not None and 2 * MB <= reading.omem < 16 * MB
        assert reading.fraction is not None and reading.fraction >= 0.5
        assert "warn" in repr(reading)
        # The gauge watched the real connection: the server still has it (not cut off).
        assert sub.stats.disconnects == 0
        assert [c["id"] for c in admin.client.client_list(_type="pubsub")] == [
            str(reading.client_id)
        ]

        release.set()
        wait_until(
            lambda: (r := sub.subscriber.server_buffer()).level == "ok" and r.omem < 64 * 1024,
            timeout=30,
            what="the server's buffer drained once the handler was released",
        )
        assert sub.stats.disconnects == 0
    finally:
        release.set()
        sub.cleanup()
        admin.client.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        admin.cleanup()


def _user(admin: redis.Redis, name: str, *rules: str) -> str:
    admin.execute_command(
        "ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all", *rules
    )
    return name


@pytest.mark.parametrize(
    ("rules", "refused", "ask"),
    [
        (["-client|list"], "CLIENT LIST", "+client|list"),
        (["-config"], "CONFIG GET", "+config|get"),
        (["-client|list", "-client|id"], "CLIENT LIST", "+client|list"),
    ],
)
def test_acl_refusal_says_which_command_and_what_to_ask(server, admin, rules, refused, ask):
    name = _user(admin, f"gauge{abs(hash(tuple(rules))) % 10000}", *rules)
    url = f"redis://{name}:{PASSWORD}@{server.host}:{server.port}/0"
    sub = RedisToolkit(url=url, channels=["acl-gauge"], message_handler=lambda c, d: None)
    try:
        reading = sub.subscriber.server_buffer()
        assert reading.level == "unknown"
        assert reading.error is not None and refused in reading.error and ask in reading.error
        assert name in reading.error  # who the owner should grant it to
        assert PASSWORD not in reading.error and PASSWORD not in repr(reading)
        if refused == "CLIENT LIST":
            assert reading.omem is None  # never a guess (no zero)
        else:
            assert reading.omem is not None  # what was read is given; the limits are not
            assert reading.soft is None and reading.hard is None and reading.fraction is None
        assert refused in reading.text()
    finally:
        sub.cleanup()
        admin.execute_command("ACL", "DELUSER", name)


def test_without_client_id_the_connection_is_found_by_its_address(server, admin):
    """CLIENT ID refused on the subscriber's connection: CLIENT LIST TYPE pubsub and the
    connection's local address find it instead."""
    name = _user(admin, "gauge-noid", "-client|id")
    url = f"redis://{name}:{PASSWORD}@{server.host}:{server.port}/0"
    sub = RedisToolkit(url=url, channels=["noid-gauge"], message_handler=lambda c, d: None)
    try:
        reading = sub.subscriber.server_buffer()
        assert reading.error is None, reading.error
        assert reading.omem is not None and reading.level == "ok"
        mine = [c for c in admin.client_list(_type="pubsub") if c["user"] == name]
        assert [c["id"] for c in mine] == [str(reading.client_id)]
    finally:
        sub.cleanup()
        admin.execute_command("ACL", "DELUSER", name)


def test_on_a_cluster_each_node_is_read_and_the_worst_is_named():
    """One connection per node holding sharded channels: each is read on its own node, and
    ``server_buffer()`` names the node whose buffer fills."""
    from redis_toolkit_nb.embedded import start_cluster

    cluster = start_cluster(masters=3)
    release = threading.Event()
    opts = FAST.replace(overflow="block", queue_size=100, max_backlog_bytes=MB)
    names: dict[int, str] = {}
    i = 0
    while len(names) < 3:
        names.setdefault(cluster.owner(f"gauge:{i}"), f"gauge:{i}")
        i += 1
    sub = RedisToolkit(
        url=cluster.url,
        sharded_channels=list(names.values()),
        message_handler=lambda c, d: release.wait(30),
        options=opts,
    )
    try:
        for port in cluster.masters():
            cluster.client(port).config_set("client-output-buffer-limit", "pubsub 16mb 4mb 60")
        readings = sub.subscriber.server_buffers()
        assert all(r.error is None and r.level == "ok" for r in readings), readings
        assert {f"127.0.0.1:{p}" for p in names} <= {r.node for r in readings}
        port, name = next(iter(names.items()))
        chunk = ["z" * 4000] * 50
        deadline = time.monotonic() + 60
        while sub.subscriber.server_buffer().level == "ok" and time.monotonic() < deadline:
            sub.publish_many(name, chunk, sharded=True)
        worst = sub.subscriber.server_buffer()
        assert worst.level == "warn" and worst.node == f"127.0.0.1:{port}", worst
        others = [r for r in sub.subscriber.server_buffers() if r.node != worst.node]
        assert others and all(r.level == "ok" for r in others)
    finally:
        release.set()
        sub.cleanup()
        cluster.stop()


def test_a_stopped_subscriber_says_so(server):
    sub = RedisToolkit(url=server.url, channels=["gone"], message_handler=lambda c, d: None)
    sub.cleanup()
    reading = sub.subscriber.server_buffer()
    assert reading.level == "unknown" and reading.omem is None
    assert "not connected" in reading.error


# ---- the notebook layer ---------------------------------------------------------------------
pytest.importorskip("ipywidgets")


@pytest.fixture
def state(server):
    from redis_toolkit_nb.notebook.state import NotebookState

    st = NotebookState({}, default_url=lambda: server.url)
    yield st
    st.close()


def test_panel_shows_the_server_buffer_and_warns_in_colour(state):
    from redis_toolkit_nb.notebook.panel import counters_text

    sub = state.subscribe(["panel-gauge"], name="feed")
    wait_until(lambda: sub.server_buffer is not None, 5, "the first sample (refresher)")
    reading = sub.server_buffer
    assert reading.error is None and reading.level == "ok"
    snap = sub.snapshot()
    assert snap.server_buffer is reading
    wait_until(lambda: "server buffer" in sub.panel.counters.value, 5, "the panel's figure")
    assert "of 8 MB soft / 32 MB hard" in sub.panel.counters.value
    assert "rtk-buffer-warn" not in sub.panel.counters.value

    warn = dataclasses.replace(reading, omem=5 * MB, fraction=5 / 8, level="warn")
    text = counters_text(dataclasses.replace(snap, server_buffer=warn))
    assert "rtk-buffer-warn" in text and "5.0 MB of 8 MB soft" in text
    assert dataclasses.replace(snap, server_buffer=warn).key() != snap.key()
    sub.stop()
    assert sub.snapshot().server_buffer is None  # no connection: nothing to say
