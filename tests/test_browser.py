"""End to end in a real browser: JupyterLab and Voila in Debian's Chromium, driven by Playwright.

Each test starts its own private Redis server and its own Jupyter server (kernels outlive pages),
opens a *copy* of a notebook, runs it as a person would and checks what the page shows.

The first two tests prove the harness on a small ipywidgets notebook generated here; the last
two open the project's teaching notebooks and hold them to the DOM contract of the live panel:
``.rtk-panel`` holding ``.rtk-counters`` (text with "received N"), ``.rtk-table`` and
``.rtk-log``; ``.rtk-dashboard`` for ``%rtk panel``.

Without Chromium every test here skips with a loud reason (``RTK_REQUIRE_BROWSER=1`` fails
instead). ``RTK_UPDATE_SCREENSHOTS=1`` refreshes the README's screenshot in docs/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import redis
from browser_support import (
    DARK_THEME,
    ROOT,
    NotebookServer,
    SubscribeCell,
    assert_no_cell_errors,
    assert_widgets_healthy,
    cell,
    chromium_browser,
    chromium_or_skip,
    code_cells,
    copy_notebook,
    new_page,
    open_in_lab,
    output_text,
    poll,
    received_count,
    require_notebook,
    run_all,
    save_screenshot,
    subscribe_cells,
    update_screenshots,
    wait_all_executed,
    write_notebook,
)

from redis_toolkit_nb import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUICKSTART = "notebooks/quickstart.ipynb"
DASHBOARD = "notebooks/dashboard.ipynb"

# The harness notebook: a slider, a label a background thread keeps updating, a button whose
# clicks the kernel counts, and a key written through the toolkit (proves REDIS_URL reached
# the kernel, so the real tests talk to the test's private server).
HARNESS_CELLS = [
    "import threading\n"
    "import ipywidgets as w\n"
    "from redis_toolkit_nb import RedisToolkit\n"
    "tk = RedisToolkit()\n"
    "tk.client.set('harness', 'kernel was here')",
    "slider = w.IntSlider(value=3, min=0, max=10, description='level')\n"
    "ticks = w.Label('ticks: 0')\n"
    "clicks = w.Label('clicks: 0')\n"
    "button = w.Button(description='Click me')\n"
    "count = {'n': 0}\n"
    "def on_click(_):\n"
    "    count['n'] += 1\n"
    "    clicks.value = f\"clicks: {count['n']}\"\n"
    "button.on_click(on_click)\n"
    "stop = threading.Event()\n"
    "def tick():\n"
    "    n = 0\n"
    "    while not stop.wait(0.2):\n"
    "        n += 1\n"
    "        ticks.value = f'ticks: {n}'\n"
    "threading.Thread(target=tick, daemon=True).start()\n"
    "w.VBox([slider, ticks, button, clicks])",
]
# A view of a model that does not exist: what a broken front end shows. The harness must see it.
BROKEN_WIDGET_CELL = (
    "from IPython.display import display\n"
    "display({'application/vnd.jupyter.widget-view+json':\n"
    "         {'model_id': 'no-such-model', 'version_major': 2, 'version_minor': 0}}, raw=True)"
)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module (each test gets its own context and servers)."""
    chromium_or_skip()
    with chromium_browser() as b:
        yield b


@pytest.fixture
def private_redis():
    """A private Valkey (the embedded default's engine) for this test only."""
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def timed(request: pytest.FixtureRequest):
    """Measure the whole test, servers included, and show it in the report."""
    t0 = time.monotonic()
    yield
    elapsed = time.monotonic() - t0
    request.node.user_properties.append(("seconds", round(elapsed, 1)))
    print(f"\n[{request.node.name}] {elapsed:.1f} s")


def _ticks(root) -> int:
    text = output_text(root.locator(".jp-OutputArea-output .widget-label", has_text="ticks:"))
    match = re.search(r"ticks: (\d+)", text)
    return int(match.group(1)) if match else -1


def _check_harness_widgets(root) -> None:
    """The harness widgets rendered under ``root`` (a page or a cell), update from a kernel
    thread, and answer a click."""
    out = root.locator(".jp-OutputArea-output")
    poll(lambda: out.locator(".widget-slider").count() == 1, 30, "the IntSlider to render")
    first = poll(lambda: max(_ticks(root), 0), 15, "the ticking label")
    poll(lambda: _ticks(root) > first, 10, "the label to tick again (updates from a thread)")
    out.locator("button", has_text="Click me").click()
    poll(
        lambda: "clicks: 1" in output_text(out.locator(".widget-label", has_text="clicks:")),
        10,
        "the click to reach the kernel and come back",
    )
    assert_widgets_healthy(root)


def test_harness_lab_widgets(browser, private_redis, tmp_path: Path, timed) -> None:
    """JupyterLab: Run All on a generated ipywidgets notebook; widgets live and interactive."""
    root = tmp_path / "served"
    root.mkdir()
    failing = "raise RuntimeError('harness: the error check must see this')"
    write_notebook(root / "harness.ipynb", [*HARNESS_CELLS, BROKEN_WIDGET_CELL, failing])
    with NotebookServer("lab", root, tmp_path, env={"REDIS_URL": private_redis.url}) as server:
        context, page, log = new_page(browser)
        try:
            open_in_lab(page, server, "harness.ipynb")
            run_all(page)
            wait_all_executed(page, timeout=60)
            for i in range(len(HARNESS_CELLS) + 1):
                assert_no_cell_errors(cell(page, i))
            # The error check bites too: the last cell's traceback is seen.
            with pytest.raises(AssertionError, match="harness: the error check must see this"):
                assert_no_cell_errors(page)
            _check_harness_widgets(cell(page, 1))
            # The check bites: the last cell's view of a missing model is reported.
            broken = cell(page, len(HARNESS_CELLS)).locator(".jp-OutputArea-output")
            poll(lambda: "model not found" in output_text(broken), 10, "the broken view's error")
            with pytest.raises(AssertionError, match="widget front end failed"):
                assert_widgets_healthy(page)
            save_screenshot(page, "harness-lab.png")
        finally:
            context.close()
    client = redis.Redis.from_url(private_redis.url)
    assert client.get("harness") == b"kernel was here", "the kernel did not use REDIS_URL"
    client.close()
    assert not log.page_errors, log.page_errors


def test_harness_voila_widgets(browser, private_redis, tmp_path: Path, timed) -> None:
    """Voila: the same notebook rendered as an app, CDN fonts blocked, widgets interactive."""
    root = tmp_path / "served"
    root.mkdir()
    write_notebook(root / "harness.ipynb", HARNESS_CELLS)
    with NotebookServer(
        "voila", root, tmp_path, env={"REDIS_URL": private_redis.url}, notebook="harness.ipynb"
    ) as server:
        context, page, log = new_page(browser)
        try:
            page.goto(server.url(), wait_until="domcontentloaded")
            _check_harness_widgets(page)
            assert_no_cell_errors(page)
            save_screenshot(page, "harness-voila.png")
        finally:
            context.close()
    client = redis.Redis.from_url(private_redis.url)
    assert client.get("harness") == b"kernel was here"
    client.close()
    assert not log.page_errors, log.page_errors


# --------------------------------------------------------------------------------------------
# The project's notebooks
# --------------------------------------------------------------------------------------------


def _publish_and_watch(page, panel, client: redis.Redis, channel: str, count: int = 5) -> None:
    """Publish ``count`` marked messages to ``channel``; the panel's counters and table follow."""
    counters = panel.locator(".rtk-counters")
    table = panel.locator(".rtk-table")
    poll(lambda: counters.count() > 0, 20, ".rtk-counters in the panel")
    poll(lambda: table.count() > 0, 20, ".rtk-table in the panel")
    before = poll(
        lambda: (n := received_count(output_text(counters.first))) is not None and (n,),
        20,
        "'received N' in the panel's counters",
    )[0]
    # The subscription starts in the background: wait until the server counts a receiver.
    poll(
        lambda: (
            client.pubsub_numsub(channel)[0][1] >= 1
            or client.execute_command("PUBSUB", "NUMPAT") >= 1
        ),
        20,
        f"a subscriber on {channel!r}",
    )
    marker = f"browser-{int(time.time() * 1000) % 1_000_000}"
    receivers = 0
    for i in range(count):
        receivers = client.publish(channel, json.dumps({"from": marker, "seq": i}))
    assert receivers >= 1, f"nobody received the messages published to {channel!r}"
    poll(
        lambda: (received_count(output_text(counters.first)) or 0) >= before + count,
        20,
        f"the counters to reach received {before + count} (were {before})",
    )
    extra = iter(range(count, count + 200))

    def marker_shown() -> bool:
        if marker in output_text(table.first):
            return True
        # Other traffic (a dashboard's demo publisher) can push the rows out of a bounded
        # table between two refreshes: keep the marker coming until a refresh shows it.
        client.publish(channel, json.dumps({"from": marker, "seq": next(extra)}))
        return False

    poll(marker_shown, 20, f"a published row ({marker}) in the panel's table", interval=0.2)


def _demo_traffic(client: redis.Redis, channels: list[str], seconds: float) -> None:
    """Publish a varying trickle to ``channels`` for ``seconds`` (screenshot mode only)."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and channels:
        # Uneven on purpose (two of three to the last channel) so each line of the chart shows.
        channel = channels[min(i % 3, len(channels) - 1)]
        client.publish(channel, json.dumps({"demo": i, "value": round(20 + (i % 17) * 0.5, 1)}))
        i += 1
        time.sleep(0.01 + 0.03 * (i // 50 % 2))  # pacing the traffic, not waiting on it


def _use_the_dashboard(page, dashboard, panel, subs) -> None:
    """Publish from the dashboard's Publish tab as a person would (type, click), see the
    receivers inline and the row in the subscription's panel; then open the Flows tab."""
    text = output_text(dashboard)
    for tab in ("Publish", "Subscribe", "Channels", "Flows"):
        assert tab in text, f"the dashboard has no {tab} tab"
    channel = subs[0].channel_to_publish() if subs else "browser-test"
    marker = f"dashboard-{int(time.time() * 1000) % 1_000_000}"
    dashboard.locator(".widget-text input").first.fill(channel)
    dashboard.locator(".widget-textarea textarea").first.fill(json.dumps({"from": marker}))
    dashboard.locator("button.jupyter-button", has_text=re.compile(r"^\s*Publish\s*$")).click()
    result = dashboard.locator(".rtk-publish-result")
    shown = poll(
        lambda: re.search(r"published to (.+): (\d+) receiver", output_text(result)),
        15,
        "the Publish tab's inline result",
    )
    assert shown.group(1) == channel, output_text(result)
    if panel is not None:
        assert int(shown.group(2)) >= 1, output_text(result)
        poll(
            lambda: marker in output_text(panel.locator(".rtk-table").first),
            15,
            f"the row published from the dashboard ({marker}) in the panel's table",
        )
    if panel is not None:
        _use_the_channels_tab(page, dashboard, channel)
    dashboard.locator(".lm-TabBar-tab", has_text="Flows").click()
    flows = dashboard.locator(".rtk-flows")
    poll(
        lambda: flows.locator("path.rtk-flow").count() > 0 if panel is not None else True,
        15,
        "the Flows tab to draw the traffic",
    )
    if panel is not None:
        # Rates over a stated window, totals on hover (the SVG <title> the browser shows).
        titles = flows.locator("path.rtk-flow title").all_text_contents()
        assert any("deliveries/s now (last 1 s)" in t and "in the last 60 s" in t for t in titles)
        _assert_dark_on_light(flows.locator("svg.rtk-flows").first, "the Flows chart (light)")


def _use_the_channels_tab(page, dashboard, channel: str) -> None:
    """The Channels tab lists ``channel`` with its rate by itself (no Refresh click), and a
    click on it fills the Subscribe form."""
    dashboard.locator(".lm-TabBar-tab", has_text="Channels").click()
    button = dashboard.locator(
        "button.jupyter-button", has_text=re.compile(rf"^\s*{re.escape(channel)}\s*$")
    )
    poll(lambda: button.count() > 0, 15, f"the Channels tab to list {channel!r} by itself")
    row = button.first.locator("xpath=..")
    poll(lambda: "msg/s here" in output_text(row), 15, f"the rate of {channel!r}")
    button.first.click()

    def field(label: str):
        return dashboard.locator(
            ".widget-text", has=page.locator("label", has_text=re.compile(rf"^{label}$"))
        ).locator("input")

    poll(lambda: field("Channels").input_value() == channel, 10, "the prefilled Channels field")
    assert field("Name").input_value().startswith("sub_"), field("Name").input_value()


def _pause_resume_and_page_back(panel, client: redis.Redis, channel: str) -> None:
    """Pause freezes the view and keeps capturing ("N new since paused"); Resume shows what
    arrived; Older/Newer page back through the buffer and return to the live page."""
    counters = panel.locator(".rtk-counters").first
    table = panel.locator(".rtk-table").first

    def click(label: str) -> None:
        panel.locator("button.jupyter-button", has_text=re.compile(rf"^\s*{label}\s*$")).click()

    click("Pause")
    poll(lambda: "new since paused" in output_text(counters), 20, "the panel saying it is paused")
    marker = f"paused-{int(time.time() * 1000) % 1_000_000}"
    for i in range(7):
        client.publish(channel, json.dumps({"from": marker, "seq": i}))
    poll(
        lambda: "7 new since paused" in output_text(counters),
        20,
        "7 new since paused (captured while the view is frozen)",
    )
    assert marker not in output_text(table), "the paused view moved"
    click("Resume")
    poll(lambda: marker in output_text(table), 20, "the messages captured while paused, shown")
    click("Older")
    poll(lambda: "page 2" in output_text(panel), 20, "page 2 of the buffer")
    click("Newer")
    poll(lambda: "newest" in output_text(panel), 20, "back on the newest, live page")


def test_quickstart_live_panel_in_lab(browser, private_redis, tmp_path: Path, timed) -> None:
    """The quickstart in JupyterLab: Run All, the live panel renders and follows the traffic
    the test publishes, and its screenshot is saved (docs/live-panel.png on request)."""
    source = require_notebook(QUICKSTART)
    subs = subscribe_cells(source)
    assert subs, f"{QUICKSTART} has no %%rtk_subscribe cell: the live panel is its point"
    root = tmp_path / "served"
    name = copy_notebook(source, root)
    client = redis.Redis.from_url(private_redis.url)
    with NotebookServer("lab", root, tmp_path, env={"REDIS_URL": private_redis.url}) as server:
        context, page, log = new_page(browser)
        try:
            open_in_lab(page, server, name)
            run_all(page)
            wait_all_executed(page, timeout=90)
            assert_no_cell_errors(page)
            sub_cell = cell(page, subs[0].index)
            panel = sub_cell.locator(".jp-OutputArea-output .rtk-panel")
            poll(lambda: panel.count() > 0, 30, "the .rtk-panel of the %%rtk_subscribe cell")
            panel = panel.first
            assert_widgets_healthy(page)
            _publish_and_watch(page, panel, client, subs[0].channel_to_publish())
            assert panel.locator(".rtk-log").count() > 0, "the panel has no .rtk-log"
            _pause_resume_and_page_back(panel, client, subs[0].channel_to_publish())
            _assert_dark_on_light(panel.locator("svg.rtk-chart").first, "the rate chart (light)")
            assert_widgets_healthy(page)
            if update_screenshots():
                # For the README: a few seconds of traffic, so the rate chart shows a curve.
                _demo_traffic(client, [n for n in subs[0].names if "*" not in n], seconds=8)
            save_screenshot(sub_cell, "live-panel.png", readme_name="live-panel.png", page=page)
            save_screenshot(page, "quickstart-lab.png")
        finally:
            context.close()
            client.close()
    assert not log.page_errors, log.page_errors


def test_dashboard_in_voila(browser, private_redis, tmp_path: Path, timed) -> None:
    """The dashboard notebook as a Voila app: ``.rtk-dashboard`` renders with its widgets
    alive, and any live panel in it follows the traffic the test publishes."""
    source = require_notebook(DASHBOARD)
    subs = subscribe_cells(source)
    root = tmp_path / "served"
    name = copy_notebook(source, root)
    client = redis.Redis.from_url(private_redis.url)
    with NotebookServer(
        "voila", root, tmp_path, env={"REDIS_URL": private_redis.url}, notebook=name
    ) as server:
        context, page, log = new_page(browser)
        try:
            page.goto(server.url(), wait_until="domcontentloaded")
            dashboard = page.locator(".jp-OutputArea-output .rtk-dashboard")
            poll(lambda: dashboard.count() > 0, 60, "the .rtk-dashboard in the Voila page")
            poll(
                lambda: "Loading widget..." not in output_text(page.locator("body")),
                30,
                "every widget to load",
            )
            assert_widgets_healthy(page)
            assert_no_cell_errors(page)
            if not subs:
                # The dashboard subscribes to its session's demo channels, whose random prefix
                # its demo cell prints ("demo traffic on demo-3fa9c1:* ..."): `shop`, the
                # first panel, listens to <prefix>:orders.
                found = poll(
                    lambda: re.search(
                        r"demo traffic on (demo-[0-9a-f]{6}):\*", output_text(page.locator("body"))
                    ),
                    30,
                    "the demo traffic's session prefix in the page",
                )
                subs = [SubscribeCell(-1, [f"{found.group(1)}:orders"], {"name": "shop"})]
            panel = None
            if subs:
                panel = page.locator(".jp-OutputArea-output .rtk-panel").first
                _publish_and_watch(page, panel, client, subs[0].channel_to_publish())
            _use_the_dashboard(page, dashboard.first, panel, subs)
            assert_widgets_healthy(page)
            assert_no_cell_errors(page)
            save_screenshot(page, "dashboard-voila.png")
            save_screenshot(
                dashboard.first, "dashboard.png", readme_name="dashboard.png", page=page
            )
        finally:
            context.close()
            client.close()
    assert not log.page_errors, log.page_errors


# The luminance of a CSS colour and the contrast of two (WCAG's formulas), in the page.
_COLOURS_JS = """(el) => {
    const rgba = (c) => (c && c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => {
        v = v / 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    }).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    let node = el, back = null;
    while (node && !back) {  // the first ancestor that paints a background
        const c = rgba(getComputedStyle(node).backgroundColor);
        if (c.length >= 3 && (c.length === 3 || c[3] > 0)) back = c;
        node = node.parentElement;
    }
    const themeLight = document.body.dataset.jpThemeLight;
    const texts = [...el.querySelectorAll('text')];
    const fills = texts.map((t) => rgba(getComputedStyle(t).fill));
    if (!back || !fills.length || fills.some((f) => f.length < 3)) return {fills, back, themeLight};
    const lb = lum(back);
    // Every text, as seen: a translucent colour blends over the background. The worst counts.
    const seen = fills.map((f) => {
        const a = f.length > 3 ? f[3] : 1;
        const lt = lum([0, 1, 2].map((i) => a * f[i] + (1 - a) * back[i]));
        return {lt, contrast: (Math.max(lt, lb) + 0.05) / (Math.min(lt, lb) + 0.05)};
    });
    const worst = seen.reduce((w, s) => (s.contrast < w.contrast ? s : w));
    return {texts: texts.length, back, background: lb, themeLight,
            text: Math.min(...seen.map((s) => s.lt)), textMax: Math.max(...seen.map((s) => s.lt)),
            contrast: worst.contrast};
}"""

DARK_CELLS = [
    "%load_ext redis_toolkit_nb",
    "%%rtk_subscribe dark.* --name feed",
    "%rtk panel",
]


def _assert_light_on_dark(svg, what: str) -> dict:
    # The theme's stylesheet loads after the page: wait until it is applied.
    colours = poll(
        lambda: (c := svg.evaluate(_COLOURS_JS)).get("themeLight") == "false" and "text" in c and c,
        20,
        f"JupyterLab's dark theme applied around {what}",
    )
    assert colours["background"] < 0.1, f"{what}: the background is not dark: {colours}"
    assert colours["text"] > 0.25, f"{what}: some of its text is not light: {colours}"
    assert colours["contrast"] >= 4.5, f"{what}: text hard to read on its background: {colours}"
    return colours


def _assert_dark_on_light(svg, what: str) -> dict:
    """The light theme's counterpart of ``_assert_light_on_dark``."""
    colours = poll(lambda: "text" in (c := svg.evaluate(_COLOURS_JS)) and c, 20, what)
    assert colours["background"] > 0.7, f"{what}: the background is not light: {colours}"
    assert colours["textMax"] < 0.35, f"{what}: some of its text is not dark: {colours}"
    assert colours["contrast"] >= 4.5, f"{what}: text hard to read on its background: {colours}"
    return colours


def test_charts_are_readable_in_the_dark_theme(
    browser, private_redis, tmp_path: Path, timed
) -> None:
    """JupyterLab Dark: the live panel's chart and the dashboard's Flows draw their text in
    the theme's light colour on its dark background (computed colours, WCAG contrast)."""
    root = tmp_path / "served"
    root.mkdir()
    write_notebook(root / "dark.ipynb", DARK_CELLS)
    client = redis.Redis.from_url(private_redis.url)
    env = {"REDIS_URL": private_redis.url}
    with NotebookServer("lab", root, tmp_path, env=env, settings=DARK_THEME) as server:
        context, page, log = new_page(browser)
        try:
            open_in_lab(page, server, "dark.ipynb")
            run_all(page)
            wait_all_executed(page, timeout=60)
            assert_no_cell_errors(page)
            panel = cell(page, 1).locator(".jp-OutputArea-output .rtk-panel")
            poll(lambda: panel.count() > 0, 30, "the live panel")
            poll(lambda: client.execute_command("PUBSUB", "NUMPAT") >= 1, 20, "the subscriber")
            dashboard = cell(page, 2).locator(".rtk-dashboard")
            poll(lambda: dashboard.count() > 0, 30, "the dashboard")
            dashboard.locator(".lm-TabBar-tab", has_text="Flows").click()
            # Steady traffic on two channels: chart lines and flow bands to draw.
            flows = dashboard.locator("svg.rtk-flows path.rtk-flow")
            chart_line = panel.locator("svg polyline.rtk-series")
            deadline = time.monotonic() + (8 if update_screenshots() else 3)
            i = 0
            while time.monotonic() < deadline or not (chart_line.count() and flows.count() > 1):
                client.publish("dark.orders" if i % 3 else "dark.payments", json.dumps({"i": i}))
                i += 1
                assert i < 5000, "the chart and the flows never drew the traffic"
                time.sleep(0.01)  # pacing the traffic, not waiting on it
            _assert_light_on_dark(panel.locator("svg.rtk-chart").first, "the rate chart")
            _assert_light_on_dark(dashboard.locator("svg.rtk-flows").first, "the Flows chart")
            assert_widgets_healthy(page)
            save_screenshot(cell(page, 1), "live-panel-dark.png", page=page)
            save_screenshot(
                dashboard.first, "flows-dark.png", readme_name="flows-dark.png", page=page
            )
        finally:
            context.close()
            client.close()
    assert not log.page_errors, log.page_errors


def test_browser_support_reads_channels(tmp_path: Path) -> None:
    """The notebook parser the real tests rely on: channels and patterns from the magic line."""
    nb = write_notebook(
        tmp_path / "n.ipynb",
        [
            "%load_ext redis_toolkit_nb",
            "%%rtk_subscribe news.* --name feed --max-rows 50\nprint(data)",
            '%%rtk_subscribe "chat room" alerts',
        ],
    )
    found = subscribe_cells(nb)
    assert [(s.index, s.names, s.options) for s in found] == [
        (1, ["news.*"], {"name": "feed", "max-rows": "50"}),
        (2, ["chat room", "alerts"], {}),
    ]
    assert found[0].channel_to_publish() == "news.browser"
    assert found[1].channel_to_publish() == "chat room"
    assert received_count("received 1,204 · rate 3.2/s") == 1204
    assert received_count("Received: 7") == 7
    assert received_count("nothing yet") is None
    assert ROOT.joinpath("tests", "browser_support.py").is_file()


DEBUGGING = "notebooks/debugging_flows.ipynb"


def test_debugging_flows_in_lab(browser, private_redis, tmp_path: Path, timed) -> None:
    """The debugging notebook in JupyterLab: Run All with no error, and the orders panel shows
    what the flaky publisher did (gaps and missing messages, schema drift, latency) beside the
    counters; its screenshot is the README's (docs/debugging-flows.png on request)."""
    source = require_notebook(DEBUGGING)
    index = next(
        i
        for i, src in enumerate(code_cells(source))
        if src.startswith("from redis_toolkit_nb import RedisToolkit")
    )
    root = tmp_path / "served"
    name = copy_notebook(source, root)
    with NotebookServer("lab", root, tmp_path, env={"REDIS_URL": private_redis.url}) as server:
        context, page, log = new_page(browser)
        try:
            open_in_lab(page, server, name)
            run_all(page)
            wait_all_executed(page, timeout=90)
            assert_no_cell_errors(page)
            feed_cell = cell(page, index)
            panel = feed_cell.locator(".jp-OutputArea-output .rtk-panel")
            poll(lambda: panel.count() > 0, 30, "the orders panel")
            counters = panel.first.locator(".rtk-counters").first
            for shown in ("received 116", "gaps 4 (missing 5)", "schema changes 3", "p50 / p99"):
                poll(lambda s=shown: s in output_text(counters), 20, f"{shown!r} in the panel")
            assert_widgets_healthy(page)
            # Every control shows its whole name (a cut "Discard inco..." hid what it does).
            for button in panel.first.locator("button.jupyter-button").all():
                label = button.inner_text().strip()
                fits = button.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
                assert fits, f"the button {label!r} is cut short on screen"
            save_screenshot(
                panel.first, "debugging-flows.png", readme_name="debugging-flows.png", page=page
            )
        finally:
            context.close()
    assert not log.page_errors, log.page_errors
