"""Expectations: ``feed.expect(...)`` and ``%rtk_expect`` wait for real traffic on a private
server and fail with a clear difference."""

from __future__ import annotations

import json
import threading
import time

import pytest
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

pytest.importorskip("pandas")


def _later(delay: float, fn) -> threading.Thread:
    """Run ``fn`` after ``delay`` seconds on a thread (traffic that arrives while waiting)."""

    def go() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_expect_waits_for_traffic_that_comes_later(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe orders prices --name feed\n")

    def traffic() -> None:
        for k in range(10):
            admin.publish("orders", json.dumps({"id": k, "price": 1.5, "meta": {"by": "me"}}))
        admin.publish("prices", "1.5")

    thread = _later(0.3, traffic)
    try:
        met = feed.expect(count=10, channel="orders", within=5, fields=["price", "meta.by"])
    finally:
        thread.join()
    assert met.count == 10 and 0.25 < met.seconds < 5, met
    assert repr(met).startswith("expectation met: 10 message(s) on 'orders'")
    assert feed.expect(count=11, within=1).count == 11, "every channel"
    assert feed.expect(channel="pri*", within=1).count == 1, "a glob names channels too"


def test_expect_failure_says_expected_and_arrived(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe orders --name feed\n")
    for k in range(3):
        admin.publish("orders", json.dumps({"id": k, "qty": 1}))
    admin.publish("orders", json.dumps({"id": 3}))
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        feed.expect(count=10, channel="orders", within=0.5, fields=["qty"])
    waited = time.monotonic() - started
    text = str(err.value)
    assert 0.5 <= waited < 2, "it waited `within` seconds, not more"
    assert "feed.expect failed after 0.5" in text
    assert "count: expected >= 10 message(s) on 'orders' within 0.5 s, arrived 4" in text
    assert "fields: 1 of 4 kept message(s) on 'orders' lack 'qty'" in text
    assert '{"id":3}' in text, "the first offending payload is shown"
    with pytest.raises(
        AssertionError, match=r"4 of 4 kept message\(s\) on 'orders' do not have qty=2"
    ):
        feed.expect(channel="orders", fields={"qty": 2}, within=0)
    with pytest.raises(AssertionError, match="arrived 0"):
        feed.expect(channel="elsewhere", within=0.1)


def test_no_gaps(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe s.* --name feed --seq-field seq\n")
    for n in (1, 2, 3):
        admin.publish("s.a", json.dumps({"seq": n}))
    for n in (1, 2, 5):
        admin.publish("s.b", json.dumps({"seq": n}))
    feed.expect(count=3, channel="s.a", no_gaps=True, within=5)
    with pytest.raises(AssertionError) as err:
        feed.expect(count=6, no_gaps=True, within=5)
    assert "no_gaps: 1 gap(s), 2 message(s) still missing" in str(err.value)
    assert "first on 's.b'" in str(err.value) and "expected 3, got 5" in str(err.value)
    plain = run(shell, "%%rtk_subscribe plain --name plain\n")
    with pytest.raises(ValueError, match="needs sequence checking.*--seq-field"):
        plain.expect(no_gaps=True, within=0)


def test_magic_form(shell, admin):  # noqa: F811
    feed = run(shell, "%%rtk_subscribe orders --name feed --seq-field seq\n")
    thread = _later(
        0.2, lambda: [admin.publish("orders", json.dumps({"seq": k})) for k in range(12)]
    )
    try:
        met = run(shell, "%rtk_expect feed count>=10 channel=orders within=5 no-gaps")
    finally:
        thread.join()
    assert met.count >= 10
    assert run(shell, "%rtk_expect feed count=12 fields=seq").count == 12
    admin.publish("orders", json.dumps({"seq": 20}))
    with pytest.raises(AssertionError, match="no_gaps: 1 gap"):
        run(shell, "%rtk_expect feed count=13 no-gaps within=2")
    assert feed.stats.delivered == 13


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "usage: %rtk_expect NAME"),
        ("nobody count>=1", "nobody is not defined, not a subscription"),
        ("feed count>=x", "'count>=x' needs a number"),
        ("feed colour=red", "unknown condition 'colour=red'"),
        ("feed count=-1", "count must be a whole number >= 0"),
        ("feed within=-1", "within must be a number of seconds >= 0"),
    ],
)
def test_magic_usage_errors(shell, line, message):  # noqa: F811
    run(shell, "%%rtk_subscribe orders --name feed\n")
    with pytest.raises(UsageError, match=message):
        run(shell, f"%rtk_expect {line}")
