"""``%rtk keyspace``: keyspace notifications live, through a real IPython shell, on private
servers; ``notify-keyspace-events`` is enabled when needed and restored when it stops."""

from __future__ import annotations

import time

import pytest
import redis
from conftest import wait_until
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

pytest.importorskip("pandas")

PASSWORD = "ks-pw"


def _flags(admin: redis.Redis) -> str:
    value = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def keyspace_off(admin):
    admin.config_set("notify-keyspace-events", "")
    yield admin
    admin.config_set("notify-keyspace-events", "")


def _rows(feed) -> list[tuple[int, str, str]]:
    frame = feed.df
    return list(zip(frame["db"], frame["key"], frame["event"], strict=True))


def test_set_expire_del_and_expiry_show_as_rows_and_the_setting_is_restored(
    shell,  # noqa: F811
    keyspace_off,
    capsys,
):
    admin = keyspace_off
    feed = run(shell, "%rtk keyspace ks:* --name x_ks")
    assert shell.user_ns["x_ks"] is feed and feed.running
    out = capsys.readouterr().out
    assert "notify-keyspace-events" in out and "restored when" in out
    assert set(_flags(admin)) == {"A", "K"}

    admin.set("ks:a", 1)
    admin.expire("ks:a", 100)
    admin.delete("ks:a")
    admin.set("other", 1)  # outside the pattern
    admin.set("ks:b", 1, px=30)
    time.sleep(0.1)
    admin.get("ks:b")  # an access expires it at once if the server has not yet
    expected = [
        (0, "ks:a", "set"),
        (0, "ks:a", "expire"),
        (0, "ks:a", "del"),
        (0, "ks:b", "set"),
        (0, "ks:b", "expire"),  # SET ... PX is a set and an expire
        (0, "ks:b", "expired"),
    ]
    wait_until(lambda: len(feed.df) >= 6, 5, "six keyspace events")
    assert _rows(feed) == expected
    assert list(feed.df.columns[-3:]) == ["db", "key", "event"]

    run(shell, "%rtk stop x_ks")
    assert _flags(admin) == ""  # restored
    assert "restored notify-keyspace-events" in capsys.readouterr().out


def test_db_and_events_options(shell, keyspace_off, server):  # noqa: F811
    admin = keyspace_off
    feed = run(shell, "%rtk keyspace * --db 2 --events $ --name x_db2")
    assert set(_flags(admin)) == {"K", "$"}
    db2 = redis.Redis.from_url(server.url.rsplit("/", 1)[0] + "/2")
    try:
        db2.set("k2", "v")
        db2.rpush("list2", "x")  # a list event: not asked for
        db2.append("k2", "w")
        admin.set("k0", "v")  # db 0: another channel
        wait_until(lambda: len(feed.df) >= 2, 5, "two string events on db 2")
        time.sleep(0.1)
        assert _rows(feed) == [(2, "k2", "set"), (2, "k2", "append")]
    finally:
        db2.close()
    with pytest.raises(UsageError, match="--events"):
        run(shell, "%rtk keyspace * --events Q")
    run(shell, "%unload_ext redis_toolkit_nb")  # unloading stops it, and restores the setting
    assert not feed.running and _flags(admin) == ""
    run(shell, "%load_ext redis_toolkit_nb")


def test_a_setting_changed_meanwhile_or_already_there_is_left_alone(
    shell,  # noqa: F811
    keyspace_off,
    capsys,
):
    admin = keyspace_off
    run(shell, "%rtk keyspace --name x_changed")
    admin.config_set("notify-keyspace-events", "Ex")
    run(shell, "%rtk stop x_changed")
    assert set(_flags(admin)) == set("Ex")
    assert "changed" in capsys.readouterr().out

    admin.config_set("notify-keyspace-events", "KEA")
    run(shell, "%rtk keyspace --name x_there")
    assert "already" in capsys.readouterr().out
    run(shell, "%rtk stop x_there")
    assert set(_flags(admin)) == set("AKE")


@pytest.mark.parametrize("refused", ["-config", "-config|set"])
def test_without_config_permission_it_says_what_to_ask_and_subscribes(
    shell,  # noqa: F811
    keyspace_off,
    server,
    capsys,
    refused,
):
    admin = keyspace_off
    admin.execute_command(
        "ACL", "SETUSER", "ksnoconf", "reset", "on", f">{PASSWORD}", "~*", "&*", "+@all", refused
    )
    try:
        run(shell, f"%rtk_connect redis://ksnoconf:{PASSWORD}@{server.host}:{server.port}/0")
        feed = run(shell, "%rtk keyspace ks:* --name x_noconf")
        out = capsys.readouterr().out
        assert "CONFIG SET notify-keyspace-events KA" in out and "server's owner" in out
        assert "nothing arrives until" in out and PASSWORD not in out
        assert feed.running and _flags(admin) == ""
        admin.config_set("notify-keyspace-events", "KA")  # the owner does it
        admin.set("ks:late", 1)
        wait_until(lambda: len(feed.df) == 1, 5, "the event once the owner enabled it")
        assert _rows(feed) == [(0, "ks:late", "set")]
        run(shell, "%rtk stop x_noconf")
        assert set(_flags(admin)) == {"A", "K"}  # the owner's setting: not ours to restore
    finally:
        admin.execute_command("ACL", "DELUSER", "ksnoconf")


def test_one_hold_per_server_whatever_the_database_and_none_left_by_a_failure(server, keyspace_off):
    """The setting is the server's: holds through ``/0`` and ``/1`` are one hold, so the
    first to stop does not restore it under the other. An acquire that fails (unreachable)
    leaves no hold behind."""
    from redis_toolkit_nb.notebook import keyspace

    admin = keyspace_off
    a, said = keyspace.acquire(f"{server.url[:-2]}/0", {"K", "g"})
    assert "enabled" in said and set(_flags(admin)) == {"g", "K"}
    b, said = keyspace.acquire(f"{server.url[:-2]}/1", {"K", "g"})
    assert b is a and "already" in said
    assert keyspace.release(a) is None, "the other database's subscription still runs"
    assert set(_flags(admin)) == {"g", "K"}
    assert "restored" in keyspace.release(b) and _flags(admin) == ""

    before = dict(keyspace._settings)
    with pytest.raises(redis.ConnectionError):
        keyspace.acquire("redis://127.0.0.1:1/0", {"K", "g"})
    assert keyspace._settings == before
