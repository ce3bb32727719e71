"""The live panel, the dashboard and their charts, checked as widget state (no frontend)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import wait_until

pytest.importorskip("ipywidgets")

from redis_toolkit_nb.notebook import charts  # noqa: E402
from redis_toolkit_nb.notebook.dashboard import Dashboard, flow_links  # noqa: E402
from redis_toolkit_nb.notebook.rates import RateHistory  # noqa: E402
from redis_toolkit_nb.notebook.refresher import REFRESHER  # noqa: E402
from redis_toolkit_nb.notebook.state import NotebookState  # noqa: E402
from redis_toolkit_nb.notebook.subscription import Subscription  # noqa: E402


@pytest.fixture
def state(server):
    st = NotebookState({}, default_url=lambda: server.url)
    yield st
    st.close()


def test_panel_dom_contract_and_counters(state, admin):
    sub = state.subscribe(["w.*", "w-plain"], name="feed")
    panel = sub.panel
    assert "rtk-panel" in panel.widget._dom_classes
    assert "rtk-counters" in panel.counters._dom_classes
    assert "rtk-table" in panel.table._dom_classes
    assert "rtk-log" in panel.log._dom_classes
    # The log scrolls inside a bounded box instead of growing the cell without limit.
    assert panel.log.layout.max_height and panel.log.layout.overflow == "auto"
    assert "received 0" in panel.counters.value
    assert "w.*" in panel.header.value and "w-plain" in panel.header.value
    for i in range(25):
        admin.publish("w.a" if i % 2 else "w-plain", json.dumps({"i": i}))
    wait_until(lambda: sub.stats.delivered == 25, 5, "25 messages")
    panel.refresh()
    assert "received 25" in panel.counters.value
    rows = panel.table.value.split("<tr>")[2:]
    assert len(rows) == panel.table_rows  # bounded
    assert "{&quot;i&quot;:24}" in rows[0]  # newest on top (escaped)
    assert set(panel.filter.options) == {"(all channels)", "w.a", "w-plain"}
    panel.filter.value = "w.a"  # the filter re-renders at once
    assert "w-plain" not in panel.table.value and "{&quot;i&quot;:23}" in panel.table.value
    # After Clear the selected channel has no traffic listed, yet the menu stays usable.
    sub.clear()
    panel.refresh()
    assert panel.filter.value == "w.a" and "w.a" in panel.filter.options
    admin.publish("w.new", json.dumps({"i": 99}))
    wait_until(lambda: sub.stats.delivered == 26, 5, "the 26th message")
    panel.refresh()
    assert "w.new" in panel.filter.options and panel.filter.value == "w.a"
    panel.filter.value = "(all channels)"
    assert "{&quot;i&quot;:99}" in panel.table.value


def test_untrusted_payloads_and_names_are_escaped(state, admin):
    sub = state.subscribe(["x<b>*"], name="feed")
    admin.publish("x<b>chan<img src=x onerror=alert(1)>", "<script>alert(1)</script>")
    wait_until(lambda: sub.stats.delivered == 1, 5, "the message")
    sub.panel.refresh()
    html = sub.panel.table.value + sub.panel.log.value + sub.panel.chart.value
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_buttons_pause_resume_clear_stop(state, admin):
    sub = state.subscribe(["btn"], name="feed")
    panel = sub.panel
    panel.pause_button.click()
    assert sub.paused and panel.pause_button.description == "Resume"
    admin.publish("btn", "while paused")
    wait_until(lambda: sub.stats.skipped == 1, 5, "the paused message to be counted")
    panel.pause_button.click()
    assert not sub.paused and panel.pause_button.description == "Pause"
    admin.publish("btn", "after")
    wait_until(lambda: sub.stats.delivered == 1, 5, "a delivered message")
    panel.clear_button.click()
    assert len(sub.df) == 0 and "no messages yet" in panel.table.value
    assert sub.stats.received == 2  # totals stay
    panel.stop_button.click()
    assert not sub.running and panel.stop_button.disabled and "stopped" in panel.counters.value
    assert "feed" not in state.subscriptions
    assert dict(admin.pubsub_numsub("btn")) == {b"btn": 0}


def test_refresher_updates_the_panel_in_the_background(state, admin):
    sub = state.subscribe(["bg"], name="feed")
    assert sub.panel in REFRESHER.views and REFRESHER.alive
    for _ in range(40):
        admin.publish("bg", "x")
    wait_until(lambda: "received 40" in sub.panel.counters.value, 5, "the refresher")
    wait_until(lambda: 'data-channel="bg"' in sub.panel.chart.value, 5, "the rate chart line")
    sub.stop()
    assert sub.panel not in REFRESHER.views


def test_refresh_cost_is_bounded_by_what_is_shown(state, admin):
    sub = state.subscribe(["big"], name="feed", max_rows=200_000)
    admin_pipe = admin.pipeline(transaction=False)
    for i in range(100_000):
        admin_pipe.publish("big", b'{"n":%d}' % i)
    admin_pipe.execute()
    wait_until(lambda: sub.stats.delivered == 100_000, 30, "100k messages")
    started = time.perf_counter()
    for _ in range(10):
        sub.panel.refresh()
    per_tick = (time.perf_counter() - started) / 10
    assert per_tick < 0.05, f"a refresh with 100k buffered messages took {per_tick * 1000:.1f} ms"
    assert len(sub.df) == 100_000


def test_rate_history_per_second_buckets():
    h = RateHistory(window=60)
    h.sample({"a": 0}, now=1000.0)
    h.sample({"a": 10, "b": 5}, now=1000.5)
    h.sample({"a": 30, "b": 5}, now=1001.2)
    h.sample({"a": 2}, now=1002.1)  # counters cleared: counted from zero
    seconds, series = h.series(now=1003.0)
    assert seconds[-3:] == [1000, 1001, 1002]
    assert series["a"][-3:] == [10, 20, 2] and series["b"][-3:] == [5, 0, 0]
    assert h.recent(3, now=1003.0) == {"a": 32 / 3, "b": 5 / 3}
    _, later = h.series(now=1100.0)
    assert later == {}  # out of the window


def test_charts_are_drawn_svg():
    svg = charts.rate_chart({"a": [0, 5, 10], "b": [1, 1, 1]})
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    flows = charts.flows_chart([("s: p.*", "p.one", 10), ("s: p.*", "p.two", 2)])
    assert flows.count('class="rtk-flow"') == 2 and "p.two" in flows
    assert "no traffic yet" in charts.flows_chart([])


def test_dashboard_tabs(state, admin):
    dash = Dashboard(state)
    try:
        assert "rtk-dashboard" in dash.widget._dom_classes
        titles = [dash.tabs.get_title(i) for i in range(4)]
        assert titles == ["Publish", "Subscribe", "Channels", "Flows"]
        # Subscribe from the form: the panel appears in the tab, the name is bound.
        dash.sub_names.value = "dash.*"
        dash.sub_name.value = "feed"
        dash.sub_button.click()
        sub = state.namespace["feed"]
        assert sub.panel.widget in dash.sub_area.children and sub.patterns == ["dash.*"]
        # Publish from the form: receivers (or the error) shown inline.
        dash.pub_channel.value = "dash.x"
        dash.pub_payload.value = '{"hello": "world"}'
        dash.pub_button.click()
        assert "1 receiver(s)" in dash.pub_result.value
        wait_until(lambda: sub.stats.delivered == 1, 5, "the dashboard's message")
        assert sub.df["data"].iloc[0] == {"hello": "world"}
        # Channels: a plain subscription shows up; clicking its button subscribes to it.
        state.subscribe(["dash.listed"], name="other")
        rows = dash.list_channels()
        assert ("dash.listed", 1) in rows and "NUMPAT" in dash.ch_summary.value
        button = next(
            hb.children[0]
            for hb in dash.ch_list.children
            if hb.children[0].description == "dash.listed"
        )
        button.click()
        assert "sub_dash_listed" in state.subscriptions and dash.tabs.selected_index == 1
        # Flows: pattern -> channel drawn with its traffic.
        dash.refresh()
        assert 'data-source="feed: dash.*"' in dash.flows.value
        assert 'data-channel="dash.x"' in dash.flows.value
        assert ("feed: dash.*", "dash.x", 1) in flow_links([sub])
    finally:
        dash.close()


def test_flows_count_a_doubly_delivered_message_once_per_link(state, admin):
    """Subscribed to a channel and a pattern matching it, a client gets each message twice
    (Redis' rule): the flows show one message on each link, not two on both."""
    sub = state.subscribe(["ov.a", "ov.*"], name="feed")
    assert admin.publish("ov.a", "1") == 2  # one subscriber, two deliveries
    assert admin.publish("ov.b", "2") == 1
    wait_until(lambda: sub.stats.delivered == 3, 5, "three deliveries")
    assert sorted(flow_links([sub])) == [
        ("feed: ov.*", "ov.a", 1),
        ("feed: ov.*", "ov.b", 1),
        ("feed: ov.a", "ov.a", 1),
    ]


def test_dashboard_publish_error_is_shown_inline(server):
    st = NotebookState({}, default_url=lambda: "redis://127.0.0.1:1/0")
    dash = Dashboard(st)
    try:
        assert "cannot reach" in dash.widget.children[0].value
        dash.pub_channel.value = "x"
        dash.pub_payload.value = "1"
        dash.pub_button.click()
        assert "ToolkitConnectionError" in dash.pub_result.value
    finally:
        dash.close()
        st.close()


def test_subscription_display_is_the_panel(state):
    sub = state.subscribe(["disp"], name="feed")
    bundle = sub._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert (
        bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == sub.panel.widget.model_id
    )
    assert "<Subscription feed running on disp" in bundle["text/plain"]
    assert isinstance(sub, Subscription)
