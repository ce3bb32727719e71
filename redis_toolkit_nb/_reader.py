"""The reader: one thread that owns the subscriber's socket.

It opens the connection with redis-py (auth, TLS, RESP version, client name stay
redis-py's), then drains the socket itself: non-blocking ``recv_into`` of large chunks,
parsed by hiredis in batches, so per-message Python work is a few list operations. Messages
go to ``on_batch`` (the dispatcher); subscription confirmations, PONGs and error replies are
handled here. Every socket write happens on this thread too: ``subscribe()`` from another
thread queues a command and wakes the reader through a socket pair.

It also keeps the subscription state honest: ``wanted`` is what the user asked for,
``confirmed`` what the server acknowledged on the current connection. After a reconnect it
re-sends everything wanted; a refusal (ACL ``NOPERM``) is logged, recorded in
``last_error`` and retried, never taken for a subscription. A link that goes silent is
PINGed, and declared dead when the reply does not come.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import hiredis
import redis

from ._ratelimit import RateLimitedLog
from ._urls import mask_text

logger = logging.getLogger("redis_toolkit_nb")

GLOB_CHARS = frozenset("*?[")
CHANNEL, PATTERN = "channel", "pattern"
_SUB = {CHANNEL: b"SUBSCRIBE", PATTERN: b"PSUBSCRIBE"}
_UNSUB = {CHANNEL: b"UNSUBSCRIBE", PATTERN: b"PUNSUBSCRIBE"}
_MESSAGE_KINDS = (b"message", b"pmessage")
# RESP2 messages parse to lists, RESP3 pushes to hiredis.PushNotification (a list subclass).
_ARRAYS = frozenset({list, hiredis.PushNotification})
# Bytes per recv: the socket is drained in few syscalls (each one may cost a GIL hand-off).
_CHUNK = 1024 * 1024
# hiredis is fed slices of at most this size: it moves its unparsed buffer down after every
# reply, so feeding megabytes at once costs microseconds per message (measured: 64 KB slices
# parse at ~0.2 us/message, a 12 MB feed at ~8 us/message).
_FEED = 64 * 1024
# Seconds of parsing between two drains of the socket while a backlog is waiting: the kernel
# buffer, not the server's output buffer (cut off at 32 MB), absorbs a burst meanwhile.
_DRAIN_EVERY = 0.002
# Replies handed to the dispatcher at once, at most (bounds the latency of the first one).
_MAX_BATCH = 8192
_FIRST_BACKOFF = 0.05
# The reader keeps draining the socket up to at least this many unparsed bytes, whatever
# max_backlog_bytes says: the server cuts a subscriber off at 32 MB of its own buffer, so
# holding as much here keeps that buffer empty while parsing catches up.
_READ_AHEAD = 32 * 1024 * 1024
# Seconds a lost connection waits for the handler to take what was already read before the
# overflow policy applies to the rest and the reader reconnects.
_LOST_GRACE = 1.0


class ReplyError(Exception):
    """An error reply from the server (hiredis builds these)."""


class LinkDead(ConnectionError):
    """The server stopped answering (no PONG within the health-check interval)."""


def is_pattern(name: str | bytes) -> bool:
    """A name with glob characters (``*``, ``?``, ``[...]``) is a pattern subscription."""
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return not GLOB_CHARS.isdisjoint(text)


def to_bytes(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8")


def pack(*args: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _Inflight:
    """A command sent whose replies are still due (``kind``: "ping" or "sub:channel"...)."""

    __slots__ = ("kind", "names", "remaining")

    def __init__(self, kind: str, names: list[bytes], remaining: int) -> None:
        self.kind = kind
        self.names = names
        self.remaining = remaining


class Reader:
    """Owns one subscriber connection; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        on_batch: Callable[[list[Any], float], None],
        room: Callable[[], int] = lambda: _MAX_BATCH,
        max_backlog: int = 256 * 1024 * 1024,
        name: str,
        retry_delay: float,
        health_check_interval: float,
        connect_timeout: float,
    ) -> None:
        pool = client.connection_pool
        self._conn_class = pool.connection_class
        self._conn_kwargs = dict(pool.connection_kwargs)
        self._conn_kwargs.setdefault("client_name", "redis_toolkit_nb:subscriber")
        # The toolkit decodes payloads itself; decode_responses only affects redis-py's
        # handshake here, but keep it off so nothing ever decodes a payload as text.
        self._conn_kwargs["decode_responses"] = False
        # Bound the handshake: a server that accepts the connection but never answers must
        # not hang the reader (after the handshake the socket is non-blocking anyway).
        for key in ("socket_timeout", "socket_connect_timeout"):
            if not self._conn_kwargs.get(key):
                self._conn_kwargs[key] = connect_timeout
        self._secrets = [self._conn_kwargs.get("password")]
        self._on_batch = on_batch
        self._room = room
        self._max_backlog = max_backlog
        self._retry_delay = retry_delay
        self._hc = health_check_interval
        self.name = name

        self.cv = threading.Condition()
        self.wanted: dict[str, dict[bytes, None]] = {CHANNEL: {}, PATTERN: {}}
        self.confirmed: dict[str, set[bytes]] = {CHANNEL: set(), PATTERN: set()}
        self.refused: dict[bytes, str] = {}
        self._outbox: deque[tuple[str, str, list[bytes]]] = deque()
        self._inflight: deque[_Inflight] = deque()

        self.connected = False
        self.ever_connected = False
        self.attempts = 0
        self.last_error: str | None = None
        #: Bytes read but not parsed yet (see SubscriberStats.unparsed_bytes).
        self.backlog_bytes = 0
        self.disconnects = 0
        self.reconnects = 0

        # A refusal is retried every retry_delay; say so loudly, but not every time.
        self._refusal_log = RateLimitedLog(logger, logging.ERROR, period=60.0, burst=3)
        self._stopping = False
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"{name}-reader", daemon=True)

    # ---- API used by other threads -------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request(self, action: str, kind: str, names: list[bytes]) -> None:
        """Queue SUBSCRIBE/UNSUBSCRIBE (``action`` "sub"/"unsub") and update ``wanted``."""
        with self.cv:
            wanted = self.wanted[kind]
            for name in names:
                self.refused.pop(name, None)
                if action == "sub":
                    wanted[name] = None
                else:
                    wanted.pop(name, None)
            if self.connected:
                self._outbox.append((action, kind, names))
        self._wake()

    def stop(self, timeout: float) -> bool:
        with self.cv:
            self._stopping = True
            self.cv.notify_all()
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        alive = self._thread.is_alive()
        if not alive:
            self._wake_r.close()
            self._wake_w.close()
        return not alive

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # buffer full (already woken) or closed (stopped)

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        delay = _FIRST_BACKOFF
        while not self._stopping:
            self.attempts += 1
            try:
                self._open()
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
                self._set_error(f"cannot connect: {exc}")
                if self._pause(delay):
                    break
                delay = min(delay * 2, self._retry_delay)
                continue
            opened_at = time.monotonic()
            try:
                self._loop()
            except Exception as exc:  # noqa: BLE001 - a lost link is re-established
                if self._stopping:
                    break
                self.disconnects += 1
                # A link that had been up for a while is re-opened at once; one that dies
                # right after opening backs off like a failed connect (no tight loop).
                if time.monotonic() - opened_at >= max(1.0, self._retry_delay):
                    delay = _FIRST_BACKOFF
                else:
                    if self._pause(delay):
                        break
                    delay = min(delay * 2, self._retry_delay)
                self._set_error(f"connection lost: {exc}")
                logger.warning(
                    "subscriber %s lost its connection (%s); reconnecting (messages published "
                    "until it is back are not received)",
                    self.name,
                    self.last_error,
                )
            finally:
                self._close()
        self._close()

    def _open(self) -> None:
        conn = self._conn_class(**self._conn_kwargs)
        try:
            conn.connect()
        except redis.AuthenticationError as exc:
            raise ConnectionError(f"authentication failed: {exc}") from None
        self._conn = conn
        sock = conn._sock  # redis-py did the handshake; the hot path reads the socket directly
        sock.setblocking(False)
        self._sock = sock
        self._parser = hiredis.Reader(replyError=ReplyError)
        with self.cv:
            self._outbox.clear()
            self._inflight.clear()
            for kind in (CHANNEL, PATTERN):
                names = [n for n in self.wanted[kind] if n not in self.refused]
                if names:
                    self._outbox.append(("sub", kind, names))
                for name in self.wanted[kind]:
                    if name in self.refused:
                        self._outbox.append(("sub", kind, [name]))
            if self.ever_connected:
                self.reconnects += 1
                logger.warning("subscriber %s reconnected; resubscribing", self.name)
            self.connected = True
            self.ever_connected = True
            self.cv.notify_all()

    def _close(self) -> None:
        with self.cv:
            was = self.connected
            self.connected = False
            for kind in (CHANNEL, PATTERN):
                self.confirmed[kind].clear()
            if was:
                self.cv.notify_all()
        conn, self._conn, self._sock = self._conn, None, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone
                pass

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, woken early by stop(); True if stopping."""
        try:
            select.select([self._wake_r], [], [], seconds)
            self._drain_wake()
        except (OSError, ValueError):
            pass
        return self._stopping

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _loop(self) -> None:
        # Reading and parsing are decoupled: the socket is drained first (a memcpy per MB),
        # into ``backlog``, and parsed in bounded slices between drains. A burst then waits
        # in this process rather than in the server's output buffer, whose hard limit would
        # disconnect the subscriber and lose everything in flight.
        sock = self._sock
        assert sock is not None
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        sock_fd = sock.fileno()
        buf = bytearray(_CHUNK)
        parser = self._parser
        gets = parser.gets
        feed = parser.feed
        recv_into = sock.recv_into
        pending_ssl = getattr(sock, "pending", None)
        on_batch = self._on_batch
        clock = time.monotonic
        hc_ms = int(self._hc * 1000)
        last_rx = clock()
        ping_sent = 0.0
        retry_at = 0.0
        # (arrival time, bytes) read but not yet parsed; ``offset``: how far the head is parsed.
        backlog: deque[tuple[float, bytearray]] = deque()
        backlog_bytes = 0
        offset = 0
        # A read error or EOF ends the connection only once what was read before it is parsed:
        # those messages reached this process and are delivered like any other.
        lost: Exception | None = None
        lost_at = 0.0

        has_data = parser.has_data
        last_t = time.time()

        def parse(until: float, limit: int) -> None:
            """Parse up to ``limit`` replies (what the parser holds first, then slices of _FEED
            bytes of the backlog) or until ``until``; hand the messages to the dispatcher.
            Replies beyond ``limit`` stay in the parser for the next call."""
            nonlocal backlog_bytes, offset, last_t
            replies: list[Any] = []
            t = last_t
            while True:
                replies.extend(islice(iter(gets, False), limit - len(replies)))
                if len(replies) >= limit or not backlog or clock() >= until:
                    break
                t, data = backlog[0]
                size = len(data)
                step = min(_FEED, size - offset)
                feed(data, offset, step)
                offset += step
                if offset >= size:
                    backlog.popleft()
                    backlog_bytes -= size
                    offset = 0
            last_t = t
            if not replies:
                return
            msgs = [r for r in replies if r.__class__ in _ARRAYS and r[0] in _MESSAGE_KINDS]
            if len(msgs) != len(replies):
                self._control(
                    [r for r in replies if not (r.__class__ in _ARRAYS and r[0] in _MESSAGE_KINDS)]
                )
            if msgs:
                on_batch(msgs, t)

        room = self._room
        max_backlog = self._max_backlog
        read_cap = max(max_backlog, _READ_AHEAD)

        def parse_limit() -> int:
            # Past the backlog cap the overflow policy applies: parse whatever room there is.
            if backlog_bytes >= max_backlog:
                return _MAX_BATCH
            return min(room(), _MAX_BATCH)

        while not self._stopping:
            if lost is not None:
                if not backlog and not has_data():
                    raise lost
                # What was read before the loss is handed on at the handler's pace for a
                # moment, then (so the reconnect is not held up) under the overflow policy.
                if lost_at == 0.0:
                    lost_at = clock()
                limit = parse_limit() if clock() - lost_at < _LOST_GRACE else _MAX_BATCH
                if limit:
                    parse(float("inf"), limit)
                else:
                    time.sleep(0.002)
                continue
            if self._outbox:
                self._flush()
            # Parse only while the handler queue has room: a burst then waits here as raw
            # bytes (about 140 per message, several times less than parsed), and the overflow
            # policy applies only once the backlog itself is full.
            can_parse = (backlog or has_data()) and parse_limit() > 0
            if not can_parse:
                if backlog or has_data():
                    timeout = 2  # ms: read more, or parse as soon as the queue has room
                elif self._refused_waiting():
                    timeout = 250
                else:
                    timeout = hc_ms
                events = poller.poll(timeout)
                now = clock()
                readable = False
                for fd, _ev in events:
                    if fd == sock_fd:
                        readable = True
                    else:
                        self._drain_wake()
                if not readable:
                    if backlog or has_data():
                        continue
                    if now - last_rx >= self._hc:
                        if not ping_sent:
                            ping_sent = now
                            self._send(pack(b"PING"), _Inflight("ping", [], 1))
                        elif now - ping_sent >= self._hc:
                            raise LinkDead(f"no reply to PING for {self._hc:g} s")
                    if self._refused_waiting() and now >= retry_at:
                        retry_at = now + self._retry_delay
                        self._retry_refused()
                    continue
            # Drain: everything the kernel holds now, in chunks of _CHUNK.
            if backlog_bytes < read_cap:
                t = time.time()
                while True:
                    try:
                        n = recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:
                        if exc.__class__.__name__ == "SSLWantReadError":
                            break
                        lost = exc
                        break
                    if n == 0:
                        lost = ConnectionError("server closed the connection")
                        break
                    backlog.append((t, buf[:n]))
                    backlog_bytes += n
                    last_rx = clock()
                    ping_sent = 0.0
                    if backlog_bytes >= read_cap or (
                        n < _CHUNK and not (pending_ssl and pending_ssl())
                    ):
                        break
                self.backlog_bytes = backlog_bytes
            limit = parse_limit()
            if limit > 0 and (backlog or has_data()):
                parse(clock() + _DRAIN_EVERY, limit)
                self.backlog_bytes = backlog_bytes
        # Stopping: what was already read is handed on (stop() delivers what is queued).
        while backlog or has_data():
            parse(float("inf"), _MAX_BATCH)
        self.backlog_bytes = 0

    # ---- commands and replies --------------------------------------------------------------
    def _flush(self) -> None:
        with self.cv:
            items = list(self._outbox)
            self._outbox.clear()
        for action, kind, names in items:
            if not names:
                continue
            verb = _SUB[kind] if action == "sub" else _UNSUB[kind]
            self._send(pack(verb, *names), _Inflight(f"{action}:{kind}", names, len(names)))

    def _send(self, data: bytes, inflight: _Inflight) -> None:
        sock = self._sock
        assert sock is not None
        self._inflight.append(inflight)
        view = memoryview(data)
        deadline = time.monotonic() + self._hc
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                if exc.__class__.__name__ != "SSLWantWriteError":
                    raise
                sent = 0
            if not sent:
                if self._stopping:
                    raise ConnectionError("stopping")
                if time.monotonic() > deadline:
                    raise LinkDead(f"the server took no data for {self._hc:g} s")
                select.select([], [sock], [], 0.1)
                continue
            view = view[sent:]

    def _control(self, replies: list[Any]) -> None:
        with self.cv:
            for reply in replies:
                head = self._inflight[0] if self._inflight else None
                if isinstance(reply, ReplyError):
                    self._refusal(head, str(reply))
                    continue
                if isinstance(reply, list) and reply:
                    kind = reply[0]
                    if kind in (b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe"):
                        self._confirm(kind, reply[1])
                    elif kind != b"pong":
                        continue  # an unknown push: nothing to do
                elif reply != b"PONG":
                    continue
                if head is not None:
                    head.remaining -= 1
                    if head.remaining <= 0:
                        self._inflight.popleft()
            self.cv.notify_all()

    def _confirm(self, kind: bytes, name: bytes | None) -> None:
        if name is None:
            return
        if kind == b"subscribe":
            self.confirmed[CHANNEL].add(name)
            self.refused.pop(name, None)
        elif kind == b"psubscribe":
            self.confirmed[PATTERN].add(name)
            self.refused.pop(name, None)
        elif kind == b"unsubscribe":
            self.confirmed[CHANNEL].discard(name)
        else:
            self.confirmed[PATTERN].discard(name)

    def _refusal(self, head: _Inflight | None, text: str) -> None:
        text = mask_text(text, self._secrets)
        if head is None:
            self._set_error(f"server error: {text}", locked=True)
            return
        self._inflight.popleft()
        action, _, kind = head.kind.partition(":")
        if action == "sub" and len(head.names) > 1:
            # The server refuses a whole SUBSCRIBE when any one name is forbidden: ask again
            # name by name at once, so the permitted ones are not kept out.
            for name in head.names:
                self._outbox.append(("sub", kind, [name]))
            return
        names = ", ".join(n.decode("utf-8", "replace") for n in head.names)
        for name in head.names:
            self.refused[name] = text
        self._set_error(f"{head.kind} {names} refused: {text}", locked=True)
        self._refusal_log.emit(
            "subscriber %s: the server refused %s %s: %s (will retry every %g s)",
            self.name,
            head.kind,
            names,
            text,
            self._retry_delay,
        )

    def _refused_waiting(self) -> bool:
        return bool(self.refused) and self.connected

    def _retry_refused(self) -> None:
        with self.cv:
            for kind in (CHANNEL, PATTERN):
                # One command per name: the server refuses a whole SUBSCRIBE if any one of
                # its names is forbidden, so a batch would keep the permitted ones out too.
                for n in self.wanted[kind]:
                    if n in self.refused:
                        self._outbox.append(("sub", kind, [n]))

    def _set_error(self, text: str, locked: bool = False) -> None:
        text = mask_text(text, self._secrets)
        if locked:
            self.last_error = text
            return
        with self.cv:
            self.last_error = text
            self.cv.notify_all()
