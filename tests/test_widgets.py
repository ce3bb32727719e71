"""The live panel, the dashboard and their charts, checked as widget state (no frontend)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import wait_until

pytest.importorskip("ipywidgets")

from redis_toolkit_nb.notebook import charts  # noqa: E402
from redis_toolkit_nb.notebook.dashboard import Dashboard  # noqa: E402
from redis_toolkit_nb.notebook.rates import OTHER, Traffic  # noqa: E402
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
    assert set(panel.filter.options) == {"w.a", "w-plain"}
    panel.filter.value = "w.a"  # the filter re-renders at once
    assert "w-plain" not in panel.table.value and "{&quot;i&quot;:23}" in panel.table.value
    # After Clear the selected channel has no traffic listed, yet the filter stays.
    sub.clear()
    panel.refresh()
    assert panel.filter.value == "w.a"
    admin.publish("w.new", json.dumps({"i": 99}))
    wait_until(lambda: sub.stats.delivered == 26, 5, "the 26th message")
    panel.refresh()
    assert "w.new" in panel.filter.options and panel.filter.value == "w.a"
    panel.filter.value = ""  # all channels
    assert "{&quot;i&quot;:99}" in panel.table.value


def test_untrusted_payloads_and_names_are_escaped(state, admin):
    sub = state.subscribe(["x<b>*"], name="feed")
    admin.publish("x<b>chan<img src=x onerror=alert(1)>", "<script>alert(1)</script>")
    wait_until(lambda: sub.stats.delivered == 1, 5, "the message")
    sub.panel.refresh()
    html = sub.panel.table.value + sub.panel.log.value + sub.panel.chart.value
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_buttons_pause_resume_discard_clear_stop(state, admin):
    sub = state.subscribe(["btn"], name="feed")
    panel = sub.panel
    admin.publish("btn", "before")
    wait_until(lambda: sub.stats.delivered == 1, 5, "the first message")
    panel.pause_button.click()
    table_at_pause = panel.table.value
    assert sub.paused and panel.pause_button.description == "Resume"
    for n in range(20):
        admin.publish("btn", f"while paused {n}")
    # Capturing goes on: df and the counters have them, none is skipped or lost.
    wait_until(lambda: len(sub.df) == 21, 5, "the messages sent while paused in df")
    assert sub.stats.skipped == 0 and sub.stats.received == 21
    panel.refresh()
    assert panel.table.value == table_at_pause  # the view is frozen
    assert "20 new since paused" in panel.counters.value and "received 21" in panel.counters.value
    assert "while paused" not in panel.log.value
    panel.pause_button.click()
    assert not sub.paused and panel.pause_button.description == "Pause"
    assert "while paused 19" in panel.table.value and "new since paused" not in panel.counters.value
    # Dropping on purpose is a separate, clearly named control.
    assert panel.discard_button.description == "Discard incoming"
    panel.discard_button.value = True
    assert sub.discarding and "discarding incoming" in panel.counters.value
    admin.publish("btn", "dropped on purpose")
    wait_until(lambda: sub.stats.skipped == 1, 5, "the discarded message to be counted")
    panel.discard_button.value = False
    assert not sub.discarding and len(sub.df) == 21
    panel.clear_button.click()
    assert len(sub.df) == 0 and "no messages yet" in panel.table.value
    assert sub.stats.received == 22  # totals stay
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


def test_traffic_now_and_the_minute_chart():
    t = Traffic(window=60, tracked=3)
    t.rates(now=1000.0)
    for _ in range(10):
        t.count("a")
    for _ in range(5):
        t.count("b")
    r = t.rates(now=1000.5)
    assert r.now == 15 / 0.5 and dict(r.top) == {"a": 20.0, "b": 10.0}
    for channel in ("c", "d", "e"):  # beyond ``tracked``: counted under (other)
        t.count(channel)
    r = t.rates(now=1001.2)
    assert r.total == 18 and set(r.channels) == {"a", "b", "c"}
    assert r.series["a"][-1] == 10 and r.series[OTHER][-1] == 0  # second 1000 complete
    r = t.rates(now=1002.1)
    assert r.series[OTHER][-1] == 2 and r.series["c"][-1] == 1
    # "now" covers the last second: 0 once a second (and a tick) passed without traffic.
    assert t.rates(now=1003.3).now == 0.0
    assert t.rates(now=1100.0).series == {}  # out of the window


def test_charts_are_drawn_svg():
    svg = charts.rate_chart({"a": [0, 5, 10], "b": [1, 1, 1]})
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    from redis_toolkit_nb.notebook.flows import FlowLink

    flows = charts.flows_chart(
        [FlowLink("s: p.*", "p.one", 10, 50), FlowLink("s: p.*", "p.two", 2, 9)]
    )
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
        # Channels: a plain subscription shows up; clicking it fills the Subscribe form.
        state.subscribe(["dash.listed"], name="other")
        rows = dash.list_channels()
        assert ("dash.listed", 1) in rows and "NUMPAT" in dash.ch_summary.value
        _channel_button(dash, "dash.listed").click()
        assert dash.tabs.selected_index == 1 and dash.sub_names.value == "dash.listed"
        dash.sub_button.click()
        assert "sub_dash_listed" in state.subscriptions
        # Flows: pattern -> channel drawn with its traffic.
        dash.refresh()
        assert 'data-source="feed: dash.*"' in dash.flows.value
        assert 'data-channel="dash.x"' in dash.flows.value
    finally:
        dash.close()


def _channel_button(dash, name):
    return next(
        hb.children[0] for hb in dash.ch_list.children if hb.children[0].description == name
    )


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


def _now_figure(text: str) -> float:
    import re

    return float(
        re.search(r"received \d+ · delivered \d+ · ([\d.]+) msg/s now \(last 1 s\)", text).group(1)
    )


def test_one_now_for_counters_chart_and_subs_and_it_falls_to_zero(state, admin):
    """The counters, the chart legend and %rtk subs show the same "now" (last 1 s, said);
    the average says "since start"; "now" reads 0 within 2 s after traffic stops."""
    from redis_toolkit_nb.notebook.frames import subscriptions_frame

    sub = state.subscribe(["now.a"], name="feed")
    deadline = time.monotonic() + 1.2
    sent = 0
    while time.monotonic() < deadline:  # ~1 s of steady traffic
        admin.publish("now.a", "x")
        sent += 1
        time.sleep(0.005)
    stopped = time.monotonic()
    wait_until(lambda: sub.stats.delivered == sent, 5, "every message")
    panel = sub.panel
    with REFRESHER._lock:  # hold the refresher off: one snapshot, read three ways
        panel.refresh()
        snap = panel._last_snapshot
        subs = subscriptions_frame([sub])
    counters_now = _now_figure(panel.counters.value)
    assert "msg/s avg since start" in panel.counters.value
    assert counters_now == round(snap.rates.now, 1) > 0
    legend = dict(snap.rates.top)["now.a"]
    assert f"now.a {charts._fmt(legend)}/s" in panel.chart.value
    assert abs(legend - snap.rates.now) < 1e-6
    # A fresh snapshot, milliseconds later: the same definition, so the same figure (within
    # the few messages per second one more millisecond of span can change).
    assert abs(float(subs["now/s"].iloc[0]) - counters_now) <= max(0.05 * counters_now, 1)
    wait_until(lambda: _now_figure(panel.counters.value) == 0.0, 5, "now at 0")
    assert time.monotonic() - stopped < 2.0, "now read 0 more than 2 s after traffic stopped"
    with panel._lock:  # the refresher may be between the counters and the chart
        assert "now.a 0/s" in panel.chart.value
    assert float(subscriptions_frame([sub])["now/s"].iloc[0]) == 0.0


def test_a_failing_panel_leaves_nothing_running(state, admin, monkeypatch):
    from redis_toolkit_nb.notebook import panel as panel_module

    def broken(self, *args, **kwargs):
        raise RuntimeError("the panel could not be built")

    monkeypatch.setattr(panel_module.LivePanel, "__init__", broken)
    with pytest.raises(RuntimeError, match="could not be built"):
        state.subscribe(["leak"], name="feed")
    wait_until(lambda: dict(admin.pubsub_numsub("leak")) == {b"leak": 0}, 5, "no subscriber")
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("feed-")]


def test_the_refresher_never_writes_the_users_filter(state, admin):
    """New channels arriving while the user picks one must not reset the choice."""
    sub = state.subscribe(["own.*"], name="feed")
    panel = sub.panel
    writes = []
    panel.filter.observe(lambda change: writes.append(change["new"]), names="value")
    panel.filter.value = "own.x"
    for i in range(30):
        admin.publish(f"own.{i}", "1")
        if i % 5 == 0:
            panel.refresh()
    wait_until(lambda: sub.stats.delivered == 30, 5, "30 messages")
    panel.refresh()
    assert writes == ["own.x"] and panel.filter.value == "own.x"
    assert "own.29" in panel.filter.options


def test_a_stopped_panel_keeps_its_context(state, admin):
    sub = state.subscribe(["ctx.*", "ctx-plain"], name="feed")
    for i in range(10):
        admin.publish("ctx.a", str(i))
    wait_until(lambda: sub.stats.delivered == 10, 5, "10 messages")
    time.sleep(1.1)  # a complete second for the chart
    sub.panel.refresh()
    sub.stop()
    panel = sub.panel
    assert "ctx.*" in panel.header.value and "ctx-plain" in panel.header.value
    assert "stopped" in panel.header.value
    assert "received 10" in panel.counters.value and "stopped</b> at" in panel.counters.value
    assert 'data-channel="ctx.a"' in panel.chart.value and "stopped" in panel.chart.value
    assert "no messages in the last minute" not in panel.chart.value
    assert "9" in panel.table.value
    chart = panel.chart.value
    time.sleep(1.1)
    panel.refresh()
    assert panel.chart.value == chart  # the last minute as it was when it stopped


def test_an_idle_panel_sends_nothing(state, admin):
    sub = state.subscribe(["idle"], name="feed")
    panel = sub.panel
    panel.refresh()
    sent = []
    for widget in (panel.header, panel.counters, panel.chart, panel.table, panel.log):
        widget.observe(lambda change: sent.append(change["name"]), names="value")
    ticks = REFRESHER.ticks
    wait_until(lambda: REFRESHER.ticks >= ticks + 4, 5, "four ticks")
    assert sent == []
    admin.publish("idle", "wake up")
    wait_until(lambda: "received 1" in panel.counters.value, 5, "the message shown")
    # The refresher's thread sets the value, then calls the observers: poll, not a snapshot.
    wait_until(lambda: sent, 5, "the change sent to the front end")


def test_paging_back_through_the_buffer_and_the_log(state, admin):
    sub = state.subscribe(["pg"], name="feed", max_rows=500, log_size=20)
    panel = sub.panel
    for i in range(100):
        admin.publish("pg", json.dumps({"n": i}))
    wait_until(lambda: sub.stats.delivered == 100, 5, "100 messages")
    panel.refresh()
    assert "{&quot;n&quot;:99}" in panel.table.value and panel.newer_button.disabled
    panel.older_button.click()
    # Page 2 holds rows 21-40 from the newest (page size: the log's 20).
    assert (
        "{&quot;n&quot;:79}" in panel.table.value and "{&quot;n&quot;:99}" not in panel.table.value
    )
    assert "{&quot;n&quot;:60}" in panel.log.value and "{&quot;n&quot;:80}" not in panel.log.value
    for i in range(100, 110):  # new traffic does not shift the page being read
        admin.publish("pg", json.dumps({"n": i}))
    wait_until(lambda: sub.stats.delivered == 110, 5, "110 messages")
    panel.refresh()
    assert "{&quot;n&quot;:79}" in panel.table.value and "page 2" in panel.page_label.value
    for _ in range(3):
        panel.older_button.click()
    assert "{&quot;n&quot;:0}" in panel.log.value and "page 5" in panel.page_label.value
    panel.older_button.click()
    assert "no older messages" in panel.table.value
    for _ in range(6):
        panel.newer_button.click()
    assert "{&quot;n&quot;:109}" in panel.table.value and "newest" in panel.page_label.value


# ---- Flows: rates over a stated window, a stable layout, messages vs deliveries, a cap ------


def test_flows_are_rates_with_distinct_messages_and_deliveries_apart(state, admin):
    """A channel subscribed by its name and a matching pattern in one subscription, and by a
    second subscription: each message is delivered three times. The bands carry deliveries
    per second now (the window is stated), the channel box the distinct messages, totals are
    on hover."""
    from redis_toolkit_nb.notebook.flows import observe

    feed = state.subscribe(["ov.a", "ov.*"], name="feed")
    other = state.subscribe(["ov.a"], name="other")
    dash = Dashboard(state)
    try:
        for _ in range(20):
            assert admin.publish("ov.a", "1") == 3  # two connections, three deliveries
        admin.publish("ov.b", "2")
        wait_until(lambda: feed.stats.delivered == 41 and other.stats.delivered == 20, 5, "all")
        flows = observe([feed, other])
        by_link = {(lk.source, lk.channel): lk.rate for lk in flows.links}
        assert set(by_link) == {
            ("feed: ov.a", "ov.a"),
            ("feed: ov.*", "ov.a"),
            ("feed: ov.*", "ov.b"),
            ("other: ov.a", "ov.a"),
        }
        # Every link of one subscription on ov.a carries each of its messages once (the two
        # subscriptions measure "now" over their own last second: close, not equal).
        assert by_link[("feed: ov.a", "ov.a")] == by_link[("feed: ov.*", "ov.a")] > 0
        assert by_link[("other: ov.a", "ov.a")] > 0
        distinct, deliveries, links = flows.channel_rates()["ov.a"]
        assert links == 3 and deliveries == pytest.approx(3 * distinct) and distinct > 0
        assert flows.window == 1.0 and flows.delivered == {"feed": 41, "other": 20}

        # Over complete seconds the figures are exact: 20 messages, 60 deliveries.
        def recent():
            lks = [lk for lk in observe([feed, other]).links if lk.channel == "ov.a"]
            return max(lk.recent for lk in lks), sum(lk.recent for lk in lks)

        wait_until(lambda: recent() == (20, 60), 5, "the last minute's totals")
        dash.refresh()
        svg = dash.flows.value
        assert "deliveries/s now (last 1 s)" in svg and "distinct messages/s" in svg
        assert "\u00d73" in svg  # ov.a's box: delivered three times
        assert "subscription feed: 41 delivered since it started" in svg  # on hover
        assert "20 messages (60 deliveries) in the last 60 s" in svg
        # When traffic stops the rates fall to 0 and the boxes stay where they were.
        order = _channel_order(svg)
        time.sleep(1.3)
        dash.refresh()
        assert _channel_order(dash.flows.value) == order
        assert "ov.a 0/s" in dash.flows.value
    finally:
        dash.close()


def _channel_order(svg: str) -> list[str]:
    import re

    return re.findall(r'class="rtk-flow-channel" data-channel="([^"]+)"', svg)


def test_flows_layout_is_stable_and_capped(state, admin):
    """Boxes keep the order they were first seen in while the busiest channel changes; at
    most 20 links are drawn, the rest summed in one; the chart's size does not grow with the
    number of distinct channels, nor its cost (no per-channel copies per tick)."""
    sub = state.subscribe(["cap.*"], name="feed")
    dash = Dashboard(state)
    try:
        admin.publish("cap.first", "x")
        wait_until(lambda: sub.stats.delivered == 1, 5, "the first message")
        dash.refresh()
        for _ in range(30):
            admin.publish("cap.second", "x")
        wait_until(lambda: sub.stats.delivered == 31, 5, "31 messages")
        dash.refresh()
        assert _channel_order(dash.flows.value) == ["cap.first", "cap.second"]
        pipe = admin.pipeline(transaction=False)
        for i in range(20_000):
            pipe.publish(f"cap.many.{i}", "x")
        pipe.execute()
        wait_until(lambda: sub.stats.delivered == 20_031, 30, "20k more messages")
        dash.refresh()
        svg = dash.flows.value
        assert svg.count('class="rtk-flow"') == 21  # 20 busiest + the rest in one
        assert _channel_order(svg)[:2] == ["cap.first", "cap.second"]  # as first seen
        assert "(other channels)" in svg and len(svg) < 30_000
        started = time.perf_counter()
        for _ in range(10):
            dash.refresh()
        per_tick = (time.perf_counter() - started) / 10
        assert per_tick < 0.05, f"a dashboard tick at 20k channels took {per_tick * 1000:.1f} ms"
    finally:
        dash.close()


# ---- Channels tab ------------------------------------------------------------------------


def test_channels_tab_refreshes_itself_with_rates_and_pattern_only_channels(state, admin):
    dash = Dashboard(state)
    try:
        state.subscribe(["chx.plain"], name="plain")
        feed = state.subscribe(["chy.*"], name="feed")
        dash.tabs.selected_index = 2  # shown: no Refresh click needed
        names = lambda: [hb.children[0].description for hb in dash.ch_list.children]  # noqa: E731
        wait_until(lambda: "chx.plain" in names(), 10, "the Channels tab to list chx.plain")
        # A channel only a pattern reaches is not in PUBSUB CHANNELS: seen in traffic here.
        stop = time.monotonic() + 8
        while "chy.only" not in names() and time.monotonic() < stop:
            admin.publish("chy.only", "x")
            time.sleep(0.05)  # a steady trickle while the tab refreshes
        assert "chy.only" in names() and feed.stats.delivered > 0
        row = next(hb for hb in dash.ch_list.children if hb.children[0].description == "chy.only")
        assert "via feed: chy.*" in row.children[1].value
        assert "msg/s here" in row.children[1].value
        assert "more seen here through patterns only" in dash.ch_summary.value
        plain_row = next(
            hb for hb in dash.ch_list.children if hb.children[0].description == "chx.plain"
        )
        assert "1 subscriber(s)" in plain_row.children[1].value
    finally:
        dash.close()


def test_channel_click_prefills_the_form_cleanly_and_errors_use_its_words(state, admin):
    dash = Dashboard(state, max_rows=777)
    try:
        state.subscribe(["pre.fill"], name="listed")
        dash.sub_names.value = "old.channel"
        dash.sub_name.value = "old_name"
        dash.sub_rows.value = 5
        dash.sub_error.value = "an old message"
        dash.list_channels()
        _channel_button(dash, "pre.fill").click()
        assert dash.tabs.selected_index == 1
        assert (dash.sub_names.value, dash.sub_name.value, dash.sub_rows.value) == (
            "pre.fill",
            "sub_pre_fill",
            777,
        )
        assert "old message" not in dash.sub_error.value
        assert "sub_pre_fill" not in state.subscriptions  # the user presses Subscribe
        dash.sub_name.value = "not valid"
        dash.sub_button.click()
        from html import unescape

        assert "Name 'not valid' is not a Python variable name" in unescape(dash.sub_error.value)
        assert "--name" not in dash.sub_error.value
        dash.sub_names.value = ""
        dash.sub_button.click()
        assert "enter channels or patterns" in dash.sub_error.value
    finally:
        dash.close()


def test_charts_follow_the_jupyterlab_theme():
    """Text, lines and boxes use JupyterLab's CSS variables (light and dark), with fallbacks."""
    from redis_toolkit_nb.notebook.flows import FlowLink

    for svg in (
        charts.rate_chart({"a": [0, 5, 10]}, note="paused"),
        charts.rate_chart({}),
        charts.flows_chart([FlowLink("s: a", "a", 1.0, 3.0)]),
        charts.flows_chart([]),
    ):
        assert "fill:var(--jp-ui-font-color1, #1f1f1f)" in svg.split(">", 1)[0]  # the <svg>
        assert 'fill="#' not in svg.replace('fill="#1f77b4"', "")  # no fixed text colour
        assert 'stroke="#ccc"' not in svg and 'stroke="#999"' not in svg  # lines: themed too


def test_an_idle_dashboard_sends_nothing(state, admin):
    """With no traffic, neither the Flows chart nor the self-refreshing Channels tab writes a
    widget: each tick compares and sends only what changed."""
    state.subscribe(["quiet.a"], name="feed")
    dash = Dashboard(state)
    try:
        dash.tabs.selected_index = 2
        dash.list_channels()
        dash.refresh()
        sent = []
        for widget in (dash.flows, dash.ch_summary, dash.ch_list):
            widget.observe(lambda change: sent.append(change["name"]), names=["value", "children"])
        for hb in dash.ch_list.children:
            hb.children[1].observe(lambda change: sent.append(change["name"]), names="value")
        started = dash._channels_at
        wait_until(lambda: dash._channels_at > started, 5, "the Channels tab to ask again")
        assert sent == []
        admin.publish("quiet.a", "wake up")
        wait_until(lambda: sent, 5, "the message shown")
    finally:
        dash.close()
