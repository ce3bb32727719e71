"""``%rtk explain CHANNEL``: this kernel's matching subscriptions (Redis glob rules, double
delivery flagged and proven), the server's NUMSUB/NUMPAT; on a real server and kernel shell."""

from __future__ import annotations

import fnmatch
import json

import pytest
import redis
from conftest import wait_until
from IPython.core.error import UsageError
from test_magics import ip, run, shell  # noqa: F401 - the shell fixtures

from redis_toolkit_nb.notebook.explain import Explanation
from redis_toolkit_nb.notebook.globs import glob_match

pd = pytest.importorskip("pandas")

NAMES = [
    "a", "b", "c", "z", "Z", "!", "^", "]", "[", "-", "\\", "ab", "a]", "a-b", "hello",
    "hallo", "h*llo", "x\\y", "xy", "[abc", "abc",
]  # fmt: skip
PATTERNS = [
    "[!a]", "[^a]", "[]a]", "[]", "[^]", "[a-]", "[z-a]", "[a-c]", "[abc", "[", "h\\*llo",
    "h*llo", "h?llo", "\\", "x\\\\y", "x\\y", "[\\]]", "[\\^]", "*]", "?", "??", "*", "a*b",
    "a*", "*a*", "[a-\\]", "\\[abc", "[[]*", "*\\",
]  # fmt: skip


def test_glob_matches_exactly_as_the_server_does(server):
    """The server's own matcher (PUBSUB CHANNELS PATTERN) against ``glob_match`` on channels
    chosen for the places Redis's glob differs from fnmatch."""
    prefix = "gl/"
    client = redis.Redis.from_url(server.url)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(*[prefix + n for n in NAMES])
        wait_until(lambda: len(client.pubsub_channels(prefix + "*")) == len(NAMES), 5, "subscribed")
        for pattern in PATTERNS:
            served = {c.decode()[len(prefix) :] for c in client.pubsub_channels(prefix + pattern)}
            ours = {n for n in NAMES if glob_match(prefix + pattern, prefix + n)}
            assert ours == served, pattern
    finally:
        pubsub.close()
        client.close()
    # Where fnmatch would have been wrong: negation, ']' first, '\' escapes.
    assert glob_match("[!a]", "a") and not fnmatch.fnmatchcase("a", "[!a]")
    assert glob_match("[^a]", "b") and not fnmatch.fnmatchcase("b", "[^a]")
    assert not glob_match("[]a]", "]") and fnmatch.fnmatchcase("]", "[]a]")
    assert glob_match("h\\*llo", "h*llo") and not fnmatch.fnmatchcase("h*llo", "h\\*llo")
    assert not glob_match("h\\*llo", "hello")
    assert glob_match("[z-a]", "m") and glob_match("[abc", "b")


def test_explain_flags_double_delivery_and_the_server_counts_it(shell, admin):  # noqa: F811
    both = run(shell, "%%rtk_subscribe ex.a ex.* --name feed_both\n")
    other = run(shell, "%%rtk_subscribe ex.[ab] ex.[!a] --name feed_other\n")
    far = run(shell, "%%rtk_subscribe ex.b --name feed_far\n")
    found = run(shell, "%rtk explain ex.a")
    assert isinstance(found, Explanation)
    # In Redis [!a] is the set {'!', 'a'} (fnmatch's "not a" is [^a]): it matches ex.a.
    assert found.copies() == {"feed_both": 2, "feed_other": 2}
    assert [(r.subscription, r.via, r.name) for r in found.receivers] == [
        ("feed_both", "channel", "ex.a"),
        ("feed_both", "pattern", "ex.*"),
        ("feed_other", "pattern", "ex.[!a]"),
        ("feed_other", "pattern", "ex.[ab]"),
    ]
    assert found.numsub == admin.pubsub_numsub("ex.a")[0][1] == 1
    assert found.numpat == admin.pubsub_numpat() >= 3
    assert found.slot is None and found.shardnumsub == 0
    notes = " ".join(found.notes)
    assert "double delivery: feed_both" in notes and "double delivery: feed_other" in notes
    assert "by count only" in notes and "2 subscriptions of this kernel" in notes
    assert "gets each PUBLISH 2 times" in repr(found)
    assert 'class="rtk-explain"' in found._repr_html_()
    frame = found.frame()
    assert list(frame.columns) == ["subscription", "via", "name", "copies"]
    # What it said is what happens: 4 copies leave the server, 2 to each connection.
    assert admin.publish("ex.a", json.dumps({"n": 1})) == 4
    wait_until(lambda: both.stats.delivered == 2 and other.stats.delivered == 2, 5, "4 copies")
    assert list(both.df["kind"]) == ["channel", "pattern"]
    assert sorted(other.df["pattern"]) == ["ex.[!a]", "ex.[ab]"]
    assert far.stats.delivered == 0
    assert run(shell, "%rtk explain nobody.here").copies() == {}
    with pytest.raises(UsageError, match="usage: %rtk explain CHANNEL"):
        run(shell, "%rtk explain")


def test_a_refused_shardnumsub_is_said_not_taken_for_an_old_server(server, admin):
    """An ACL that refuses ``PUBSUB SHARDNUMSUB`` gives None *and a note saying why*, never a
    silent None (which means: a server before 7.0)."""
    from redis_toolkit_nb import RedisToolkit
    from redis_toolkit_nb.notebook.explain import explain

    admin.execute_command(
        "ACL", "SETUSER", "nosharded", "on", ">pw", "~*", "&*", "+@all", "-pubsub|shardnumsub"
    )
    kw = admin.connection_pool.connection_kwargs
    try:
        with RedisToolkit(url=f"redis://nosharded:pw@{kw['host']}:{kw['port']}/0") as tk:
            found = explain(tk, {}, "orders")
        assert found.shardnumsub is None
        (note,) = [n for n in found.notes if "SHARDNUMSUB" in n]
        assert "refused" in note and "pw" not in repr(found)
    finally:
        admin.execute_command("ACL", "DELUSER", "nosharded")
