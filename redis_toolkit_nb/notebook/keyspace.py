"""``%rtk keyspace``: watch live what an application does to keys (SET, EXPIRE, DEL,
expiries, evictions), from Redis's keyspace notifications.

It subscribes to the pattern ``__keyspace@<db>__:<KEY_PATTERN>`` (one message per event on a
matching key: the channel names the key, the payload the event) with a normal
``Subscription`` (live panel, ``df``, stop), whose ``df`` gains ``db``, ``key`` and
``event`` columns.

The server sends them only when ``notify-keyspace-events`` holds ``K`` and the event's class
(off by default). Before subscribing, the setting is read (``CONFIG GET``); when a needed flag
is missing, the union is set, and the previous value is restored when the last keyspace
subscription of this kernel on that server stops (``stop()``, ``%rtk stop``, ``%unload_ext``,
the kernel's exit), unless someone changed the setting meanwhile: then it is left as it is,
and said. Where ``CONFIG`` is refused (an ACL, a managed service), it subscribes anyway and
says exactly what to ask the server's owner; events arrive as soon as the owner does it.
"""

from __future__ import annotations

import argparse
import atexit
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import redis
from IPython.core.error import UsageError
from redis.connection import parse_url

from .. import RedisToolkit
from .parsing import MagicParser
from .subscription import Subscription

if TYPE_CHECKING:
    from .magics import RtkMagics

#: Event classes of ``notify-keyspace-events`` (``A`` is the alias of ``g$lshzxetd``).
CLASSES = "g$lshzxetdmn"
ALIAS_A = "g$lshzxetd"
SETTING = "notify-keyspace-events"
_CHANNEL = re.compile(rb"^__keyspace@(\d+)__:(.*)$", re.DOTALL)


def expand(flags: str) -> set[str]:
    """The letters of a ``notify-keyspace-events`` value, ``A`` spelled out."""
    return set(flags.replace("A", ALIAS_A))


def spell(letters: set[str]) -> str:
    """A value for ``CONFIG SET`` (``A`` when it covers all of ``g$lshzxetd``)."""
    head = "K" if "K" in letters else ""
    head += "E" if "E" in letters else ""
    rest = letters - {"K", "E"}
    if set(ALIAS_A) <= rest:
        return head + "A" + "".join(c for c in CLASSES if c in rest - set(ALIAS_A))
    return head + "".join(c for c in CLASSES if c in rest)


@dataclass
class _Setting:
    """This kernel's hold on one server's ``notify-keyspace-events``."""

    toolkit: RedisToolkit
    users: int = 0
    previous: str | None = None  # the value before this kernel changed it (None: unchanged)
    ours: str | None = None  # the value this kernel set, as the server reports it


_settings: dict[tuple[Any, ...], _Setting] = {}
_lock = threading.Lock()


def _read(client: redis.Redis) -> str:
    value = next(iter(client.config_get(SETTING).values()), "")
    return value.decode() if isinstance(value, bytes) else str(value)


def acquire(url: str, needed: set[str]) -> tuple[_Setting, str]:
    """Make sure the server at ``url`` sends the ``needed`` notifications (see the module);
    returns the hold (give it to ``release``) and what to tell the user."""
    key = _server(url)
    with _lock:
        setting = _settings.get(key)
        if setting is None:
            setting = _settings[key] = _Setting(RedisToolkit(url=url))
        setting.users += 1
        try:
            return _enable(setting, needed)
        except BaseException:
            # Unreachable, timed out...: no hold is left behind (the last one still restores).
            setting.users -= 1
            if setting.users == 0 and setting.previous is None:
                del _settings[key]
                setting.toolkit.close()
            raise


def _server(url: str) -> tuple[Any, ...]:
    """Which server ``url`` names: the setting is the server's, whatever the database."""
    kwargs = parse_url(url)
    return (kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("path"))


def _enable(setting: _Setting, needed: set[str]) -> tuple[_Setting, str]:
    """Read the setting and add what is ``needed`` (``acquire``'s lock held)."""
    client, where = setting.toolkit.client, setting.toolkit.url
    want = spell(needed)
    try:
        current = _read(client)
    except redis.ResponseError as exc:
        return setting, (
            f"cannot read {SETTING} on the server at {where} (CONFIG GET refused: "
            f"{setting.toolkit.scrub(exc)}): if it lacks {want}, nothing arrives until the "
            f"server's owner runs CONFIG SET {SETTING} {want} (or adds these flags to its "
            "setting); subscribed anyway"
        )
    if needed <= expand(current):
        return setting, f"{SETTING} is already {current!r} on the server at {where}"
    value = spell(expand(current) | needed)
    try:
        client.config_set(SETTING, value)
    except redis.ResponseError as exc:
        return setting, (
            f"{SETTING} is {current!r} on the server at {where}, and this user may not "
            f"change it (CONFIG SET refused: {setting.toolkit.scrub(exc)}): nothing arrives "
            f"until the server's owner runs CONFIG SET {SETTING} {want} (or adds "
            f"{spell(needed - expand(current))} to its setting); subscribed anyway"
        )
    if setting.previous is None:
        setting.previous = current
    setting.ours = _read(client)
    return setting, (
        f"enabled keyspace notifications on the server at {where}: {SETTING} "
        f"{current!r} -> {setting.ours!r} (restored when the keyspace subscription stops)"
    )


def release(setting: _Setting) -> str | None:
    """One keyspace subscription less; the last one restores the setting (see the module)."""
    with _lock:
        setting.users -= 1
        if setting.users > 0:
            return None
        for key, held in list(_settings.items()):
            if held is setting:
                del _settings[key]
        tk, previous, setting.previous = setting.toolkit, setting.previous, None
        try:
            if previous is None:
                return None
            now = _read(tk.client)
            if now != setting.ours:
                return (
                    f"{SETTING} was changed on the server at {tk.url} since it was enabled "
                    f"({setting.ours!r} -> {now!r}): left as it is, not restored to {previous!r}"
                )
            tk.client.config_set(SETTING, previous)
            return f"restored {SETTING} to {previous!r} on the server at {tk.url}"
        except redis.RedisError as exc:
            return f"could not restore {SETTING} to {previous!r} at {tk.url}: {tk.scrub(exc)}"
        finally:
            tk.close()


@atexit.register
def _restore_all() -> None:
    """The kernel exits: restore what its keyspace subscriptions enabled."""
    for setting in list(_settings.values()):
        setting.users = 1
        release(setting)


class KeyspaceSubscription(Subscription):
    """A ``Subscription`` to keyspace notifications; ``df`` gains ``db``, ``key`` and
    ``event``, and stopping it gives back ``notify-keyspace-events`` (see the module)."""

    def __init__(self, names: list[str], *, setting: _Setting, **kwargs: Any) -> None:
        self._setting: _Setting | None = setting
        super().__init__(names, **kwargs)

    @property
    def df(self) -> pd.DataFrame:
        """``Subscription.df`` plus ``db`` (int), ``key`` and ``event`` (``set``, ``expire``,
        ``del``, ``expired``, ``evicted``, ...)."""
        frame = super().df
        parsed = [_parse(c) for c in frame["channel"]]
        frame["db"] = pd.Series([p[0] for p in parsed], dtype="Int64")
        frame["key"] = pd.Series([p[1] for p in parsed], dtype=object)
        frame["event"] = pd.Series([_text(d) for d in frame["data"]], dtype=object)
        return frame

    def stop(self, timeout: float | None = None) -> None:
        setting, self._setting = self._setting, None
        try:
            super().stop(timeout)
        finally:
            if setting is not None:
                said = release(setting)
                if said:
                    print(f"{self.name}: {said}")


def _parse(channel: Any) -> tuple[int | None, Any]:
    raw = channel if isinstance(channel, bytes) else str(channel).encode()
    m = _CHANNEL.match(raw)
    if m is None:
        return None, channel
    key = m.group(2)
    try:
        return int(m.group(1)), key.decode()
    except UnicodeDecodeError:
        return int(m.group(1)), key


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _events(text: str) -> set[str]:
    letters = set(text) - {"K", "E"}
    wrong = letters - set(CLASSES) - {"A"}
    if wrong or not text:
        raise argparse.ArgumentTypeError(
            f"--events takes notify-keyspace-events class letters ({CLASSES}, A for all of "
            f"{ALIAS_A}), not {''.join(sorted(wrong)) or repr(text)}"
        )
    return expand("".join(letters) or "A")


_PARSER = MagicParser("%rtk keyspace")
_PARSER.add_argument("pattern", nargs="?", default="*", metavar="KEY_PATTERN")
_PARSER.add_argument("--events", type=_events, default=expand("A"), metavar="EVENTS")
_PARSER.add_argument("--name", default="keyspace")
_PARSER.add_argument("--db", type=int, default=None, metavar="N")


def run(m: RtkMagics, args: list[str]) -> Subscription:
    """%rtk keyspace [KEY_PATTERN] [--events EVENTS] [--name NAME] [--db N]

    Subscribe to the keyspace notifications of keys matching KEY_PATTERN (default ``*``) in
    database N (default: the connection's), bound to NAME (default ``keyspace``): a live panel
    and a ``df`` with ``db``, ``key`` and ``event``. EVENTS are ``notify-keyspace-events``
    class letters: ``g`` generic (del, expire, rename...), ``$`` strings, ``l`` lists, ``s``
    sets, ``h`` hashes, ``z`` sorted sets, ``x`` expired, ``e`` evicted, ``t`` streams, ``d``
    module, ``m`` key misses, ``n`` new keys, ``A`` (default) all of ``g$lshzxetd``; ``K`` is
    added. Missing flags are enabled (``CONFIG SET``) and restored when it stops."""
    opts = _PARSER.parse_args(args)
    m._ensure_connected()
    url = m.state.resolve()
    db = opts.db
    if db is None:
        db = int(m.state.toolkit.client.connection_pool.connection_kwargs.get("db") or 0)
    if db < 0:
        raise UsageError(f"%rtk keyspace: --db must be >= 0, not {db}")
    setting, note = acquire(url, {"K"} | opts.events)
    print(note)
    try:
        return m.state.subscribe(
            [f"__keyspace@{db}__:{opts.pattern}"],
            name=opts.name,
            max_rows=m.max_rows,
            log_size=m.log_size,
            cls=KeyspaceSubscription,
            setting=setting,
        )
    except BaseException:
        said = release(setting)
        if said:
            print(said)
        raise
