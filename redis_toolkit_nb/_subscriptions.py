"""The subscription state of one subscriber connection, kept apart from any I/O.

``Subscriptions`` is what the user asked for (``wanted``), what the server acknowledged on
the current connection (``confirmed``), what it refused (``refused``, an ACL ``NOPERM``),
and the commands sent whose replies are still due (in flight, in order). The reader thread
feeds it the server's control replies; other threads ask for changes and wait for them. It
never touches a socket, so a test drives it with plain values (see tests/test_subscriptions.py).

``connected`` is True only while the link is up *and* every subscription asked for before
the link came up was answered again: from the loss of a connection until the restored
subscriptions are confirmed, it is False.

Three kinds: channels (SUBSCRIBE), patterns (PSUBSCRIBE) and sharded channels (SSUBSCRIBE,
Redis 7.0+). Confirmations are matched to the commands in flight *by name*, not by position:
a Redis Cluster node pushes a ``sunsubscribe`` nobody asked for when a sharded channel's slot
leaves it (a migration, a failover), and that push must not be taken for the answer to some
other command. Such a push is a *move*: the name stays wanted, is subscribed again on the same
connection, and a ``MOVED`` reply hands it to ``on_redirect`` (the owner re-homes it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from redis.crc import key_slot

from ._errors import server_error, translate
from ._ratelimit import RateLimitedLog
from ._urls import mask_text
from .exceptions import SubscriptionError

logger = logging.getLogger("redis_toolkit_nb")

CHANNEL, PATTERN, SHARD = "channel", "pattern", "shard"
KINDS = (CHANNEL, PATTERN, SHARD)
_SUB = {CHANNEL: b"SUBSCRIBE", PATTERN: b"PSUBSCRIBE", SHARD: b"SSUBSCRIBE"}
_UNSUB = {CHANNEL: b"UNSUBSCRIBE", PATTERN: b"PUNSUBSCRIBE", SHARD: b"SUNSUBSCRIBE"}
# Confirmation replies: (kind, subscribed?) by their first element.
_CONFIRMS = {
    b"subscribe": (CHANNEL, True),
    b"psubscribe": (PATTERN, True),
    b"ssubscribe": (SHARD, True),
    b"unsubscribe": (CHANNEL, False),
    b"punsubscribe": (PATTERN, False),
    b"sunsubscribe": (SHARD, False),
}
#: Called (with ``cv`` held, on the reader's thread) with sharded names a node redirected:
#: ``(names, slot, host, port)``; they are no longer wanted on this connection.
Redirect = Callable[[list[bytes], int, str, int], None]


class ReplyError(Exception):
    """An error reply from the server (hiredis builds these)."""


def pack(*args: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def text(name: bytes) -> str:
    """A name for messages and figures (never fails on non-UTF-8 bytes)."""
    return name.decode("utf-8", "backslashreplace")


def by_slot(kind: str, names: list[bytes]) -> list[list[bytes]]:
    """``names`` as the commands to send: one for channels or patterns, one per hash slot for
    sharded channels (a multi-channel SSUBSCRIBE across slots is refused with CROSSSLOT)."""
    if kind != SHARD or len(names) < 2:
        return [names] if names else []
    groups: dict[int, list[bytes]] = {}
    for name in names:
        groups.setdefault(key_slot(name), []).append(name)
    return list(groups.values())


class MoveClock:
    """When each sharded subscription lost its home, and the gaps until it had one again.

    Shared by every connection of a subscriber (a channel may be lost on one node and regained
    on another). Redis never says what was published in between: the gap is all one can show.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lost_at: dict[bytes, float] = {}
        #: Sharded subscriptions lost (a move, a failover, a lost node) and regained.
        self.moves = 0
        #: Seconds, summed over those, that a sharded channel was not subscribed anywhere.
        self.gap_total = 0.0
        #: The longest such gap, in seconds.
        self.gap_max = 0.0

    def unhomed(self, name: bytes) -> None:
        with self._lock:
            self._lost_at.setdefault(name, time.monotonic())

    def homed(self, name: bytes) -> None:
        with self._lock:
            since = self._lost_at.pop(name, None)
            if since is not None:
                gap = time.monotonic() - since
                self.moves += 1
                self.gap_total += gap
                self.gap_max = max(self.gap_max, gap)

    def forget(self, name: bytes) -> None:
        """Unsubscribed on purpose: not a move."""
        with self._lock:
            self._lost_at.pop(name, None)

    @property
    def homeless(self) -> int:
        """Sharded channels lost and not yet regained."""
        return len(self._lost_at)


class _Inflight:
    """A command sent whose replies are still due: ``action`` "sub"/"unsub"/"ping"."""

    __slots__ = ("action", "kind", "names", "pending", "restore")

    def __init__(self, action: str, kind: str, names: list[bytes], restore: bool) -> None:
        self.action = action
        self.kind = kind
        self.names = names
        #: The names whose confirmation is still due (one reply per name, duplicates too).
        self.pending = list(names)
        #: Sent to restore subscriptions after (re)connecting: ``connected`` waits for it.
        self.restore = restore


class Subscriptions:
    """Wanted / confirmed / refused / in flight, under one condition variable (``cv``)."""

    def __init__(
        self,
        name: str,
        retry_delay: float,
        secrets: list[str | None],
        wake: Callable[[], None] = lambda: None,
        where: Any = None,
        cv: threading.Condition | None = None,
        clock: MoveClock | None = None,
        on_redirect: Redirect | None = None,
    ) -> None:
        self.name = name
        #: The connection's keyword arguments, for error messages (see ``_errors``).
        self._where = where if where is not None else {}
        #: Called (with ``cv`` held) whenever a command is queued for the reader to write.
        self._wake = wake
        #: Several connections of one subscriber may share one (their owner waits on it).
        self.cv = cv or threading.Condition()
        self.clock = clock or MoveClock()
        self._on_redirect = on_redirect
        self.wanted: dict[str, dict[bytes, None]] = {kind: {} for kind in KINDS}
        self.confirmed: dict[str, set[bytes]] = {kind: set() for kind in KINDS}
        self.refused: dict[bytes, str] = {}
        #: The server's refusal of each refused name, as redis-py's exception (``__cause__``).
        self._refusals: dict[bytes, BaseException] = {}
        self._outbox: deque[_Inflight] = deque()
        self._inflight: deque[_Inflight] = deque()
        self._restoring = 0
        self._secrets = secrets
        self._retry_delay = retry_delay
        #: The socket is open (``connected`` also waits for the restored subscriptions).
        self.link_up = False
        self.ever_connected = False
        self.last_error: str | None = None
        #: The exception behind ``last_error`` (a failed connect's, for the first one).
        self.last_exc: BaseException | None = None
        # A refusal is retried every retry_delay; say so loudly, but not every time.
        self._refusal_log = RateLimitedLog(logger, logging.ERROR, period=60.0, burst=3)

    # ---- what the user asks for (any thread) -----------------------------------------------
    def request(self, action: str, kind: str, names: list[bytes]) -> None:
        """Ask to (un)subscribe ``names`` (written at once, or when the link comes up)."""
        with self.cv:
            wanted = self.wanted[kind]
            for name in names:
                self.refused.pop(name, None)
                self._refusals.pop(name, None)
                if action == "sub":
                    wanted[name] = None
                else:
                    wanted.pop(name, None)
                    self.clock.forget(name)
            if self.link_up and names:
                for group in by_slot(kind, names):
                    self._outbox.append(_Inflight(action, kind, group, False))
                self._wake()

    def refusal(self, name: bytes) -> BaseException | None:
        """The server's refusal of ``name`` as redis-py's exception (for ``__cause__``)."""
        with self.cv:
            return self._refusals.get(name)

    def release(self, kind: str, names: list[bytes]) -> None:
        """Stop wanting ``names`` here because they live elsewhere now (not the user's
        unsubscribe: a move keeps counting its gap until they are confirmed again)."""
        with self.cv:
            for name in names:
                self.wanted[kind].pop(name, None)
                self.refused.pop(name, None)
                self._refusals.pop(name, None)
                if name in self.confirmed[kind]:
                    self.confirmed[kind].discard(name)
                    self.clock.unhomed(name)
            if self.link_up and names:
                for group in by_slot(kind, names):
                    self._outbox.append(_Inflight("unsub", kind, group, False))
                self._wake()

    def unsettled(self, kind: str) -> list[bytes]:
        """Wanted names neither confirmed nor in flight (a missed push would leave them so)."""
        with self.cv:
            busy = {n for c in (*self._outbox, *self._inflight) if c.kind == kind for n in c.names}
            return [
                n
                for n in self.wanted[kind]
                if n not in self.confirmed[kind] and n not in busy and n not in self.refused
            ]

    @property
    def connected(self) -> bool:
        return self.link_up and not self._restoring

    @property
    def has_commands(self) -> bool:
        """Commands are queued for the reader to write."""
        return bool(self._outbox)

    @property
    def awaiting(self) -> bool:
        """A (un)subscribe is queued or unanswered: its reply must be found promptly, however
        many messages wait before it."""
        return bool(self._outbox) or any(c.action != "ping" for c in self._inflight)

    def names(self) -> list[str]:
        with self.cv:
            return [text(n) for kind in KINDS for n in self.wanted[kind]]

    def confirmed_names(self, kind: str) -> list[str]:
        with self.cv:
            return sorted(text(n) for n in self.confirmed[kind])

    # ---- the link (reader thread) ----------------------------------------------------------
    def opened(self) -> None:
        """The link is up: queue every wanted subscription again (refused ones one by one,
        so a forbidden name cannot keep the permitted ones out)."""
        with self.cv:
            self._outbox.clear()
            self._inflight.clear()
            self._restoring = 0
            for kind in KINDS:
                names = [n for n in self.wanted[kind] if n not in self.refused]
                for group in by_slot(kind, names):
                    self._queue_restore(kind, group)
                for name in self.wanted[kind]:
                    if name in self.refused:
                        self._queue_restore(kind, [name])
            self.link_up = True
            self.ever_connected = True
            self.cv.notify_all()

    def _queue_restore(self, kind: str, names: list[bytes]) -> None:
        self._outbox.append(_Inflight("sub", kind, names, True))
        self._restoring += 1

    def lost(self) -> None:
        """The link is gone: nothing is confirmed any more and no reply is due."""
        with self.cv:
            self.link_up = False
            self._restoring = 0
            for name in self.confirmed[SHARD]:
                if name in self.wanted[SHARD]:
                    self.clock.unhomed(name)
            for kind in KINDS:
                self.confirmed[kind].clear()
            self._outbox.clear()
            self._inflight.clear()
            self.cv.notify_all()

    def take(self) -> list[bytes]:
        """The commands to write now, in order (each one is in flight from here on)."""
        if not self._outbox:
            return []
        with self.cv:
            commands = list(self._outbox)
            self._outbox.clear()
            self._inflight.extend(commands)
        return [
            pack(_SUB[c.kind] if c.action == "sub" else _UNSUB[c.kind], *c.names) for c in commands
        ]

    def ping(self) -> bytes:
        """A PING to write now (its PONG is matched like any reply)."""
        with self.cv:
            self._inflight.append(_Inflight("ping", "", [b"PONG"], False))
        return pack(b"PING")

    def on_replies(self, replies: list[Any]) -> None:
        """Apply the server's non-message replies, in order: confirmations, PONGs, errors."""
        with self.cv:
            for reply in replies:
                if isinstance(reply, ReplyError):
                    # An error is the whole answer to the oldest command still due (the
                    # server answers in order; pushes never end in an error).
                    self._refusal(self._inflight[0] if self._inflight else None, reply)
                elif isinstance(reply, list) and reply:
                    confirm = _CONFIRMS.get(reply[0])
                    if confirm is not None:
                        self._confirm(*confirm, reply[1])
                    elif reply[0] == b"pong":
                        self._answer("ping", "", b"PONG")
                    # else an unknown push: nothing to do
                elif reply == b"PONG":
                    self._answer("ping", "", b"PONG")
            if self._outbox:
                # A reply queued a command (a move followed, a refusal retried name by name):
                # replies may be read on the dispatcher's thread, so wake the reader to write.
                self._wake()
            self.cv.notify_all()

    def _answer(self, action: str, kind: str, name: bytes) -> bool:
        """Count one reply against the oldest command in flight it answers; False if none
        does (the server sent it on its own)."""
        for command in self._inflight:
            if command.action == action and command.kind == kind and name in command.pending:
                command.pending.remove(name)
                if not command.pending:
                    self._settle(command)
                return True
        return False

    def _settle(self, command: _Inflight) -> None:
        self._inflight.remove(command)
        if command.restore:
            self._restoring -= 1

    def _confirm(self, kind: str, subscribed: bool, name: bytes | None) -> None:
        if name is None:
            return  # unsubscribing from nothing: never sent by this toolkit
        asked = self._answer("sub" if subscribed else "unsub", kind, name)
        if subscribed:
            self.confirmed[kind].add(name)
            self.refused.pop(name, None)
            self._refusals.pop(name, None)
            if kind == SHARD:
                self.clock.homed(name)
            return
        self.confirmed[kind].discard(name)
        if not asked and kind == SHARD and name in self.wanted[SHARD]:
            # The node let the channel go on its own (its slot moved, or it stopped being a
            # master): ask again here at once; a MOVED reply says where it lives now.
            self.clock.unhomed(name)
            self._outbox.append(_Inflight("sub", SHARD, [name], True))
            self._restoring += 1

    def _refusal(self, head: _Inflight | None, reply: ReplyError) -> None:
        reason = mask_text(str(reply), self._secrets)
        if head is None:
            self.last_error = f"server error: {reason}"
            return
        self._settle(head)
        if reason.startswith("MOVED ") and head.action == "sub" and self._on_redirect:
            self._redirected(head, reason)
            return
        if head.action == "sub" and len(head.names) > 1:
            # The server refuses a whole SUBSCRIBE when any one name is forbidden: ask again
            # name by name at once, so the permitted ones are not kept out.
            # (CROSSSLOT too: a standalone server never says it; a cluster only if grouping
            # by slot was skipped.)
            for name in head.names:
                self._outbox.append(_Inflight("sub", head.kind, [name], head.restore))
                self._restoring += head.restore
            return
        names = ", ".join(text(n) for n in head.names)
        for name in head.names:
            self.refused[name] = reason
            self._refusals[name] = server_error(reply)
        self.last_error = f"{head.action}:{head.kind} {names} refused: {reason}"
        self._refusal_log.emit(
            "subscriber %s: the server refused %s:%s %s: %s (will retry every %g s)",
            self.name,
            head.action,
            head.kind,
            names,
            reason,
            self._retry_delay,
        )

    def _redirected(self, head: _Inflight, reason: str) -> None:
        # "MOVED <slot> <host>:<port>": the names live on another node; not wanted here now.
        try:
            _, slot, where = reason.split()[:3]
            host, _, port = where.rpartition(":")
            target = (int(slot), host, int(port))
        except ValueError:
            self.last_error = f"unreadable redirect: {reason}"
            return
        moved = [n for n in head.names if n in self.wanted[head.kind]]
        for name in moved:
            self.wanted[head.kind].pop(name)
            self.clock.unhomed(name)
        if moved and self._on_redirect is not None:
            self._on_redirect(moved, *target)

    def refused_waiting(self) -> bool:
        return bool(self.refused) and self.link_up

    def retry_refused(self) -> None:
        """Queue every refused name again, one command each."""
        with self.cv:
            for kind in KINDS:
                for name in self.wanted[kind]:
                    if name in self.refused:
                        self._outbox.append(_Inflight("sub", kind, [name], False))
        # The reader calls this itself and writes the commands right after: no wake needed.

    def set_error(self, message: str, exc: BaseException | None = None) -> None:
        with self.cv:
            self.last_error = mask_text(message, self._secrets)
            self.last_exc = exc
            self.cv.notify_all()

    # ---- waiting for the server (the caller's thread) --------------------------------------
    def wait(
        self,
        wanted: list[tuple[str, bytes]],
        *,
        subscribed: bool,
        timeout: float,
        first: bool = False,
        stopped: Callable[[], bool] = lambda: False,
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        """Wait until the server confirmed (``subscribed``) or released every ``(kind, name)``.

        Raises ``SubscriptionError`` for a refusal (only the refused names are given up: the others
        stay) or a timeout, ``ToolkitConnectionError`` when the first connection fails."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                refused = {n: self.refused[n] for _, n in wanted if n in self.refused}
                if refused:
                    self._give_up(wanted, refused)
                done = all((n in self.confirmed[k]) == subscribed for k, n in wanted)
                if done and (self.connected or not subscribed):
                    return
                if first and not self.ever_connected and self.last_error:
                    self._first_connect_failed()
                if stopped():
                    raise SubscriptionError(f"subscriber {self.name} is stopped")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._timed_out(wanted, subscribed, first, timeout, backlog())
                self.cv.wait(min(left, 0.5))

    def _first_connect_failed(self) -> NoReturn:
        exc = self.last_exc or ConnectionError(self.last_error)
        # A refusal during the handshake (an ACL user without CLIENT SETNAME) is a refused
        # subscription; a link or password failure a ToolkitConnectionError.
        error = translate(exc, self._where, "subscribe", SubscriptionError)
        raise type(error)(f"subscriber {self.name}: {error}") from exc

    def _give_up(self, wanted: list[tuple[str, bytes]], refused: dict[bytes, str]) -> NoReturn:
        cause = next((self._refusals.get(n) for _, n in wanted if n in refused), None)
        for kind, name in wanted:
            if name in refused:
                self.wanted[kind].pop(name, None)
                self.refused.pop(name, None)
                self._refusals.pop(name, None)
        names = ", ".join(text(n) for n in refused)
        kept = [text(n) for _, n in wanted if n not in refused]
        also = f"; {', '.join(kept)} subscribed nonetheless" if kept else ""
        raise SubscriptionError(
            f"the server refused to subscribe {names}: {next(iter(refused.values()))}{also}"
        ) from cause

    def _timed_out(
        self,
        wanted: list[tuple[str, bytes]],
        subscribed: bool,
        first: bool,
        timeout: float,
        backlog: int,
    ) -> NoReturn:
        why = f" (last error: {self.last_error})" if self.last_error else ""
        if backlog:
            why += f" ({backlog} bytes of messages were waiting unparsed)"
        if subscribed and not first:
            # Undo, so a late confirmation does not leave a subscription the caller was told
            # failed.
            for kind, name in wanted:
                if name not in self.confirmed[kind]:
                    self.wanted[kind].pop(name, None)
                    if self.link_up:
                        self._outbox.append(_Inflight("unsub", kind, [name], False))
                        self._wake()
        verb = "subscribing" if subscribed else "unsubscribing"
        raise SubscriptionError(
            f"subscriber {self.name}: the server did not confirm {verb} "
            f"{', '.join(text(n) for _, n in wanted)} within {timeout:g} s{why}"
        )
