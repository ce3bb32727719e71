"""The magics, through a real IPython shell that re-raises errors, on private servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
from conftest import wait_until
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython
from traitlets import TraitError

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="session")
def ip():
    # start_ipython() returns the shell only on its first call in a process.
    return start_ipython() or get_ipython()


@pytest.fixture
def shell(ip, server, monkeypatch):
    """The shell with the extension loaded, connecting to ``server`` through REDIS_URL."""
    monkeypatch.setenv("REDIS_URL", server.url)
    ip.run_line_magic("load_ext", "redis_toolkit_nb")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "redis_toolkit_nb")
        for name in [n for n in ip.user_ns if n.startswith(("sub", "feed", "x_"))]:
            ip.user_ns.pop(name, None)


def run(ip, code: str):
    """Run a cell; raise what it raised (UsageError included); return its value."""
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def test_connect_shows_masked_url_server_and_version(shell, capsys, server):
    magics = shell.magics_manager.registry["RtkMagics"]
    assert magics.state._toolkit is None, "loading the extension must not connect"
    run(shell, "%rtk_connect")
    out = capsys.readouterr().out
    assert f"connected to {server.url}" in out
    assert ("redis 7." in out) or ("valkey 8." in out), out


def test_connect_masks_the_password(shell, make_server, capsys):
    srv = make_server("redis", password="s3cr3t-pw")
    url = f"redis://:s3cr3t-pw@127.0.0.1:{srv.port}/0"
    run(shell, f"%rtk_connect {url}")
    out = capsys.readouterr().out
    assert "s3cr3t-pw" not in out and f"redis://:***@127.0.0.1:{srv.port}/0" in out
    assert run(shell, "%rtk_publish any 1") == 0
    with pytest.raises(UsageError) as err:
        run(shell, f"%rtk_connect redis://:wrong-pw@127.0.0.1:{srv.port}/0")
    assert "wrong-pw" not in str(err.value)
    # The failed reconnect left the notebook unconnected: nothing goes to the old server.
    with pytest.raises(UsageError, match=f"%rtk_connect redis://:\\*\\*\\*@127.0.0.1:{srv.port}"):
        run(shell, "%rtk_publish any 1")


def test_unreachable_server_is_a_usage_error(shell):
    with pytest.raises(UsageError, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        run(shell, "%rtk_connect redis://127.0.0.1:1/0")


def test_failed_connect_never_falls_back_to_another_server(shell, server, admin):
    """After a failed %rtk_connect every magic that would talk to a server names the URL that
    failed (REDIS_URL points at a working server: it must not be used silently)."""
    run(shell, "%%rtk_subscribe fallback --name feed\n")  # connected to REDIS_URL's server
    with pytest.raises(UsageError):
        run(shell, "%rtk_connect redis://127.0.0.1:1/0")
    for line in (
        "%rtk_publish fallback 1",
        "%%rtk_subscribe other --name x_other\n",
        "%rtk channels",
        "%rtk numpat",
    ):
        with pytest.raises(UsageError, match="%rtk_connect redis://127.0.0.1:1/0 failed"):
            run(shell, line)
    assert admin.publish("fallback", "probe") == 1  # only the running subscription
    assert "x_other" not in shell.user_ns
    run(shell, "%rtk subs")  # local bookkeeping still answers
    run(shell, f"%rtk_connect {server.url}")
    assert run(shell, "%rtk_publish fallback 2") == 1


@pytest.mark.parametrize(
    "payload",
    ['{"a": 1', "[1, 2", "(1, 2", "'unclosed", '"unclosed', "3 apples", "-1x"],
)
def test_broken_literal_payload_is_a_usage_error(shell, admin, payload):
    run(shell, "%%rtk_subscribe typo --name feed\n")
    with pytest.raises(UsageError, match="does not parse") as err:
        run(shell, f"%rtk_publish typo {payload}")
    assert "--text" in str(err.value)
    if payload.startswith(("{", "[")):
        assert "JSON: " in str(err.value)  # the JSON parser's own words
    assert shell.user_ns["feed"].stats.received == 0  # nothing was sent


def test_text_option_sends_the_payload_as_typed(shell):
    run(shell, "%%rtk_subscribe astext --name feed\n")
    feed = shell.user_ns["feed"]
    assert run(shell, '%rtk_publish --text astext {"a": 1') == 1
    assert run(shell, "%rtk_publish --text astext 42") == 1
    wait_until(lambda: feed.stats.delivered == 2, 5, "two messages")
    assert list(feed.df["data"]) == ['{"a": 1', "42"]  # text, as typed


def test_count_index_reaches_comprehensions_and_generators(shell):
    """``i`` under --count is the message index even inside a comprehension (where a plain
    ``eval`` local would not reach, and the notebook's own ``i`` was used)."""
    run(shell, "%%rtk_subscribe compr --name feed\n")
    feed = shell.user_ns["feed"]
    shell.user_ns["i"] = 99
    run(
        shell,
        '%rtk_publish --count 3 compr {"vals": [i * k for k in range(3)], "i": i, '
        '"s": sum(i for _ in range(2))}',
    )
    wait_until(lambda: feed.stats.delivered == 3, 5, "three messages")
    assert list(feed.df["data"]) == [
        {"vals": [i * k for k in range(3)], "i": i, "s": 2 * i} for i in range(3)
    ]
    assert shell.user_ns["i"] == 99


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%rtk_publish", "missing CHANNEL and PAYLOAD"),
        ("%rtk_publish news", "missing PAYLOAD"),
        ("%rtk_publish --bogus 3 news 1", "unknown or incomplete option '--bogus'"),
        ("%rtk_publish --count 0 news 1", "--count: '0' must be > 0"),
        ("%rtk_publish news undefined_name_xyz", "name 'undefined_name_xyz' is not defined"),
        ("%rtk_publish news 1/0", "ZeroDivisionError"),
        ("%rtk", "usage: %rtk"),
        ("%rtk nonsense", "usage: %rtk"),
        ("%rtk stop nobody", "no running subscription 'nobody'"),
        ("%rtk numsub", "usage: %rtk numsub"),
        ("%rtk numpat extra", "takes no arguments"),
        ("%%rtk_subscribe --name x_a\npass", "the following arguments are required"),
        ("%%rtk_subscribe news --bogus\npass", "unrecognized arguments: --bogus"),
        ("%%rtk_subscribe news --max-rows -5\npass", "--max-rows"),
        ("%%rtk_subscribe news --name 'not valid'\npass", "not a Python identifier"),
        ("%%rtk_subscribe news\nif data ==", "syntax error in the cell body"),
    ],
)
def test_bad_input_raises_usage_error(shell, line, message):
    with pytest.raises(UsageError) as err:
        run(shell, line)
    assert message in str(err.value)
    assert not any(n.startswith("sub_") for n in shell.user_ns)


def test_publish_payload_forms(shell, admin):
    run(shell, "%%rtk_subscribe forms --name feed\n")
    feed = shell.user_ns["feed"]
    shell.user_ns.update(reading={"t": 21.5}, city="Paris")
    lines = [
        '%rtk_publish forms {"a": 1, "b": [1, 2]}',  # JSON-looking dict: no {var} mangling
        "%rtk_publish forms reading",  # a variable
        "%rtk_publish forms 42",
        '%rtk_publish forms f"weather in {city}"',  # an f-string, expanded by Python
        "%rtk_publish forms hello world",  # not an expression: plain text
        '%rtk_publish forms {"ok": true, "none": null}',  # JSON literals
        "%rtk_publish forms $HOME",  # no $var expansion either
        "%rtk_publish 'forms' [x * 2 for x in range(3)]",  # quoted channel, comprehension
    ]
    receivers = [run(shell, line) for line in lines]
    assert receivers == [1] * len(lines)
    wait_until(lambda: feed.stats.delivered == len(lines), 5, "every publish to arrive")
    assert list(feed.df["data"]) == [
        {"a": 1, "b": [1, 2]},
        {"t": 21.5},
        42,
        "weather in Paris",
        "hello world",
        {"ok": True, "none": None},
        "$HOME",
        [0, 2, 4],
    ]


def test_publish_count_and_rate(shell, capsys):
    run(shell, "%%rtk_subscribe load --name feed\n")
    feed = shell.user_ns["feed"]
    report = run(shell, '%rtk_publish --count 3000 load {"i": i}')
    assert report.published == 3000
    started = time.monotonic()
    paced = run(shell, "%rtk_publish load 7 --count 20 --rate 100")
    took = time.monotonic() - started
    assert paced.published == 20 and paced.receivers == 20
    assert 0.15 < took < 2.0, f"20 messages at 100/s took {took:.2f} s"
    wait_until(lambda: feed.stats.delivered == 3020, 10, "3020 messages")
    data = list(feed.df["data"])  # the newest 1000 (max_rows)
    assert data == [{"i": i} for i in range(2020, 3000)] + [7] * 20
    assert "published 3000 messages to 'load'" in repr(report)


def test_single_publish_uses_the_users_own_i(shell):
    """Without --count, ``i`` in PAYLOAD is the notebook's variable, not a message index."""
    run(shell, "%%rtk_subscribe loopvar --name feed\n")
    feed = shell.user_ns["feed"]
    run(shell, 'for i in range(3):\n    %rtk_publish loopvar {"n": i}\n')
    wait_until(lambda: feed.stats.delivered == 3, 10, "3 messages")
    assert list(feed.df["data"]) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_subscribe_returns_at_once_binds_name_and_builds_frames(shell, admin):
    started = time.monotonic()
    sub = run(shell, "%%rtk_subscribe frames.* plain --max-rows 50\n")
    assert time.monotonic() - started < 2.0
    assert shell.user_ns["sub_frames"] is sub  # the default name
    assert sub.patterns == ["frames.*"] and sub.channels == ["plain"]
    for i in range(60):
        admin.publish("frames.a" if i % 2 else "plain", json.dumps({"n": i, "meta": {"k": "v"}}))
    admin.publish("plain", b"\xff\x00binary")
    wait_until(lambda: sub.stats.delivered == 61, 5, "61 messages")
    df = sub.df
    assert list(df.columns)[:5] == ["time", "channel", "pattern", "data", "size"]
    assert len(df) == 50  # bounded by --max-rows, the newest kept
    assert str(df["time"].dt.tz) == "UTC"
    assert df["time"].is_monotonic_increasing
    assert df["data"].iloc[-1] == b"\xff\x00binary"
    assert df["pattern"].iloc[-2] == "frames.*" and df["channel"].iloc[-2] == "frames.a"
    assert df["pattern"].iloc[-3] is None
    flat = sub.df_expanded()
    assert {"n", "meta.k", "time", "channel"} <= set(flat.columns)
    assert flat["n"].iloc[-2] == 59 and flat["meta.k"].iloc[-2] == "v"
    assert flat["data"].iloc[-1] == b"\xff\x00binary"


def test_export_to_parquet_and_csv(shell, admin, tmp_path):
    sub = run(shell, "%%rtk_subscribe exp --name feed\n")
    admin.publish("exp", json.dumps({"a": 1}))
    admin.publish("exp", "text")
    wait_until(lambda: sub.stats.delivered == 2, 5, "2 messages")
    sub.export(tmp_path / "m.parquet")
    sub.export(tmp_path / "m.csv")
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert list(back["data"]) == ['{"a":1}', '"text"'] and len(pd.read_csv(tmp_path / "m.csv")) == 2
    only_dicts = sub.df.iloc[:1]
    only_dicts.to_parquet(tmp_path / "d.parquet")  # plain pandas export works too


def test_rerun_replaces_the_subscription(shell, admin):
    first = run(shell, "%%rtk_subscribe rerun --name feed\n")
    second = run(shell, "%%rtk_subscribe rerun --name feed\n")
    assert shell.user_ns["feed"] is second and not first.running and second.running
    assert dict(admin.pubsub_numsub("rerun")) == {b"rerun": 1}
    assert admin.publish("rerun", "x") == 1


def test_cell_body_runs_per_message_and_errors_do_not_stop_it(shell, admin):
    shell.user_ns["x_seen"] = []
    run(
        shell,
        "%%rtk_subscribe body --name feed\n"
        "if data == 'boom':\n    raise ValueError('boom on ' + channel)\n"
        "x_seen.append((channel, data, message.size))\n"
        "print('got', data)\n",
    )
    feed = shell.user_ns["feed"]
    for payload in ("one", "boom", "two"):
        admin.publish("body", payload)
    wait_until(lambda: len(shell.user_ns["x_seen"]) == 2, 5, "the body to run twice")
    assert shell.user_ns["x_seen"] == [("body", "one", 3), ("body", "two", 3)]
    assert feed.stats.handler_errors == 1 and feed.running
    assert "channel" not in shell.user_ns and "data" not in shell.user_ns  # not leaked
    feed.panel.refresh()
    log = feed.panel.log.value
    assert "handler error ValueError: boom on body" in log and "print: got two" in log


def test_empty_subscribe_cell_and_line_form(shell):
    run(shell, "%%rtk_subscribe emptybody --name feed")  # no body at all: allowed
    run(shell, "%rtk_subscribe lineform --name x_line")
    assert shell.user_ns["feed"].channels == ["emptybody"]
    assert shell.user_ns["x_line"].channels == ["lineform"]


def test_rtk_subcommands(shell, admin, capsys):
    run(shell, "%%rtk_subscribe sc.one sc.two --name feed\n")
    run(shell, "%%rtk_subscribe sc.* --name x_pat\n")
    assert {"sc.one", "sc.two"} <= set(run(shell, "%rtk channels"))
    assert run(shell, "%rtk channels sc.o*") == ["sc.one"]
    assert run(shell, "%rtk numsub sc.one nobody") == {"sc.one": 1, "nobody": 0}
    assert run(shell, "%rtk numpat") >= 1
    admin.publish("sc.one", "hi")
    wait_until(lambda: shell.user_ns["feed"].stats.delivered == 1, 5, "one message")
    subs = run(shell, "%rtk subs")
    assert list(subs["name"]) == ["feed", "x_pat"]
    assert int(subs.set_index("name").loc["feed", "received"]) == 1
    dash = run(shell, "%rtk panel")
    assert "rtk-dashboard" in dash.widget._dom_classes
    dash.close()
    run(shell, "%rtk stop feed")
    assert "stopped feed" in capsys.readouterr().out
    assert not shell.user_ns["feed"].running
    run(shell, "%rtk stop --all")
    assert not shell.user_ns["x_pat"].running
    assert dict(admin.pubsub_numsub("sc.one")) == {b"sc.one": 0}


def test_config_lists_the_traitlets(shell, capsys):
    run(shell, "%config RtkMagics")
    out = capsys.readouterr().out
    for name in ("default_url", "max_rows", "refresh_interval", "show_connection"):
        assert f"RtkMagics.{name}" in out
    run(shell, "%config RtkMagics.max_rows = 7")
    try:
        sub = run(shell, "%%rtk_subscribe cfg --name feed\n")
        assert sub.max_rows == 7 and sub.subscriber.buffer.maxlen == 7
    finally:
        shell.config.RtkMagics.pop("max_rows", None)  # the shell outlives this test


def test_bad_settings_and_quotes_are_clear_errors(shell):
    magics = shell.magics_manager.registry["RtkMagics"]
    with pytest.raises(TraitError, match="refresh_interval must be > 0"):
        magics.refresh_interval = 0
    assert magics.refresh_interval > 0  # the bad value was never taken
    with pytest.raises(UsageError, match="%rtk_connect: No closing quotation"):
        run(shell, '%rtk_connect "redis://x')


def test_rerunning_rtk_panel_replaces_the_dashboard(shell):
    from redis_toolkit_nb.notebook.refresher import REFRESHER

    first = run(shell, "%rtk panel")
    second = run(shell, "%rtk panel")
    try:
        assert second is not first
        assert first not in REFRESHER.views and second in REFRESHER.views
    finally:
        second.close()


def test_unload_and_reload_stop_every_subscription(ip, server, monkeypatch, admin):
    monkeypatch.setenv("REDIS_URL", server.url)
    ip.run_line_magic("load_ext", "redis_toolkit_nb")
    try:
        a = run(ip, "%%rtk_subscribe ul.a --name x_a\n")
        ip.run_line_magic("reload_ext", "redis_toolkit_nb")
        assert not a.running
        b = run(ip, "%%rtk_subscribe ul.b --name x_b\n")
        assert b.running
    finally:
        ip.run_line_magic("unload_ext", "redis_toolkit_nb")
    assert not b.running
    assert dict(admin.pubsub_numsub("ul.a", "ul.b")) == {b"ul.a": 0, b"ul.b": 0}
    with pytest.raises(UsageError):
        run(ip, "%rtk subs")  # the magics are gone
    ip.user_ns.pop("x_a"), ip.user_ns.pop("x_b")


def test_importing_the_package_loads_no_notebook_libraries():
    code = (
        "import sys, redis_toolkit_nb\n"
        "heavy = ('IPython', 'ipywidgets', 'pandas', 'ipykernel')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_publish_error_from_the_server_is_a_usage_error(shell, make_server):
    srv = make_server("redis")
    run(shell, f"%rtk_connect {srv.url}")
    srv.stop()
    with pytest.raises(UsageError, match=f"127.0.0.1:{srv.port}"):
        run(shell, "%rtk_publish gone 1")
    assert isinstance(redis.Redis, type)


def test_core_warnings_and_handler_tracebacks_reach_the_user(shell, server, capsys):
    """With the extension loaded, a core RedisToolkit's failing handler still shows its
    traceback (stderr: in a kernel, the notebook), while a %%rtk_subscribe panel's own
    records stay in its panel."""
    from redis_toolkit_nb import RedisToolkit

    def handler(channel, data):
        raise ValueError(f"core handler broke on {data!r}")

    sub = RedisToolkit(url=server.url, channels=["core:visible"], message_handler=handler)
    try:
        with RedisToolkit(url=server.url) as pub:
            pub.publisher("core:visible", 7)
        wait_until(lambda: sub.stats.handler_errors == 1, what="the handler error")
        wait_until(
            lambda: "core handler broke on 7" in capsys.readouterr().err,
            what="the traceback on stderr",
        )
    finally:
        sub.cleanup()
    run(shell, "%%rtk_subscribe panel:quiet --name sub_quiet\nraise KeyError('in the panel')")
    with RedisToolkit(url=server.url) as pub:
        pub.publisher("panel:quiet", 1)
    feed = shell.user_ns["sub_quiet"]
    wait_until(lambda: feed.subscriber.stats.handler_errors == 1, what="the panel's error")
    assert "in the panel" not in capsys.readouterr().err  # shown in the panel, not twice
    run(shell, "%rtk stop sub_quiet")


def test_usage_line_is_said_once(shell):
    with pytest.raises(UsageError) as err:
        run(shell, "%%rtk_subscribe news --bogus\npass")
    assert "usage: usage:" not in str(err.value) and "usage: %%rtk_subscribe" in str(err.value)


def test_handler_errors_point_at_the_cell_body_line(shell, admin):
    """The body is compiled under a file name tracebacks and linecache resolve: the panel
    names the body line that raised, with the traceback expandable."""
    import linecache

    run(shell, "%%rtk_subscribe where --name feed\nvalue = data\nprint(dta)\n")
    feed = shell.user_ns["feed"]
    admin.publish("where", "1")
    wait_until(lambda: feed.stats.handler_errors == 1, 5, "the handler error")
    _t, _channel, _data, exc, tb = feed.failures[-1]
    assert isinstance(exc, NameError)
    assert f'File "{feed.body_filename}", line 2' in tb and "print(dta)" in tb
    assert linecache.getline(feed.body_filename, 2).strip() == "print(dta)"
    feed.panel.refresh()
    log = feed.panel.log.value
    assert "handler error NameError: name &#x27;dta&#x27; is not defined" in log
    assert "cell body line 2: <code>print(dta)</code>" in log
    assert "<details" in log and "Traceback" in log


def test_rough_edges_types_time_zone_and_a_narrow_subs_table(shell, admin):
    run(shell, "%%rtk_subscribe rough rough.* --name feed\n")
    feed = shell.user_ns["feed"]
    admin.publish("rough", json.dumps({"seq": 1, "v": 0.5}))
    admin.publish("rough", json.dumps({"v": 1.5}))  # no seq: <NA>, the column stays integer
    admin.publish("rough.x", json.dumps({"seq": 3, "flag": True}))
    wait_until(lambda: feed.stats.delivered == 3, 5, "three messages")
    flat = feed.df_expanded()
    assert str(flat["seq"].dtype) == "Int64" and list(flat["seq"].astype(object)) == [1, pd.NA, 3]
    assert flat["v"].dtype == "float64"
    df = feed.df
    # A plain channel's pattern is None (documented), never an empty string.
    assert df["pattern"].iloc[0] is None and df["pattern"].iloc[2] == "rough.*"
    assert str(df["time"].dt.tz) == "UTC"
    run(shell, "%config RtkMagics.timezone = 'Europe/Paris'")
    try:
        assert str(feed.df["time"].dt.tz) == "Europe/Paris"
        feed.panel.refresh()
        assert "time (Europe/Paris)" in feed.panel.table.value
        with pytest.raises(TraitError, match="unknown time zone 'Mars/Olympus'"):
            shell.magics_manager.registry["RtkMagics"].timezone = "Mars/Olympus"
    finally:
        shell.magics_manager.registry["RtkMagics"].timezone = "UTC"
        shell.config.RtkMagics.pop("timezone", None)
    subs = run(shell, "%rtk subs")
    assert len(subs.columns) <= 9
    assert max(len(line) for line in subs.to_string().splitlines()) < 100  # no sideways scroll
