"""The reader: one thread that owns the subscriber's socket.

It opens the connection with redis-py (auth, TLS, RESP version, client name stay redis-py's),
then pumps bytes itself: non-blocking ``recv_into`` of large chunks into the byte pump
(``_pump``), parsed by hiredis in batches, so per-message Python work is a few list
operations. Messages go to ``on_batch`` (the dispatcher); confirmations, PONGs and error
replies go to the subscription state (``_subscriptions``). Every socket write happens on this
thread too: ``subscribe()`` from another thread queues a command and wakes the reader through
a socket pair.

A link that goes silent is PINGed, and declared dead when the reply does not come. When a link
ends, even in the middle of a reply, what was read completely is handed on, the truncated rest
is dropped (said in the log), ``connected`` turns False at once, and the reader reconnects
after a jittered backoff and restores every subscription.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

import redis
from redis.backoff import EqualJitterBackoff

from ._pump import BytePump
from ._subscriptions import CHANNEL, PATTERN, SHARD, MoveClock, Redirect, Subscriptions

logger = logging.getLogger("redis_toolkit_nb")

__all__ = ["CHANNEL", "PATTERN", "SHARD", "LinkDead", "Reader", "is_pattern", "to_bytes"]

GLOB_CHARS = frozenset("*?[")
# Bytes per recv: the socket is drained in few syscalls (each one may cost a GIL hand-off).
_CHUNK = 1024 * 1024
# Seconds of parsing between two drains of the socket while a backlog is waiting: the kernel
# buffer, not the server's output buffer (cut off at 32 MB), absorbs a burst meanwhile.
_DRAIN_EVERY = 0.002
# Replies parsed at once, at most. Kept under CPython's default gen-0 threshold of the cyclic
# garbage collector (700 net container allocations): a batch of parsed replies is then freed
# before a collection triggers, so the collector almost never runs during a burst, as in a
# loop that handles each reply at once (measured on a 1M burst: 1,024 per batch caused ~850
# collections and 0.74-0.79M msg/s; 512, ~12 collections and 0.94M msg/s). Small batches
# also stay in the CPU cache between parsing and delivery.
_MAX_BATCH = 512
# The reconnect backoff's base: the first wait is 25-50 ms, then it doubles (with jitter, so
# subscribers cut off together do not come back in lockstep) up to subscriber_retry_delay.
_BACKOFF_BASE = 0.05
# The reader keeps draining the socket up to at least this many unparsed bytes, whatever
# max_backlog_bytes says: the server cuts a subscriber off at 32 MB of its own buffer, so
# holding as much here keeps that buffer empty while parsing catches up.
_READ_AHEAD = 32 * 1024 * 1024
# Seconds a lost connection waits for the handler to take what was already read before the
# overflow policy applies to the rest and the reader reconnects.
_LOST_GRACE = 1.0

Batch = list[Any]


class LinkDead(ConnectionError):
    """The server stopped answering (no PONG within the health-check interval)."""


class _LinkLost(Exception):
    """Internal: the link ended; already counted, reported and cleaned up (see ``_lost``)."""


def is_pattern(name: str | bytes) -> bool:
    """A name with glob characters (``*``, ``?``, ``[...]``) is a pattern subscription."""
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return not GLOB_CHARS.isdisjoint(text)


def to_bytes(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8")


class Reader:
    """Owns one subscriber connection; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        on_batch: Callable[[Batch, float, bool], None],
        room: Callable[[], int] = lambda: _MAX_BATCH,
        on_data: Callable[[], None] = lambda: None,
        max_backlog: int = 256 * 1024 * 1024,
        name: str,
        retry_delay: float,
        health_check_interval: float,
        connect_timeout: float,
        address: tuple[str, int] | None = None,
        cv: threading.Condition | None = None,
        clock: MoveClock | None = None,
        on_redirect: Redirect | None = None,
        probe: Callable[[Any], None] | None = None,
    ) -> None:
        pool = client.connection_pool
        self._conn_class = pool.connection_class
        self._conn_kwargs = dict(pool.connection_kwargs)
        if address is not None:
            # A cluster node other than the client's own (same credentials, TLS, protocol).
            self._conn_kwargs["host"], self._conn_kwargs["port"] = address
        self._conn_kwargs.setdefault("client_name", "redis_toolkit_nb:subscriber")
        # The toolkit decodes payloads itself; decode_responses only affects redis-py's
        # handshake here, but keep it off so nothing ever decodes a payload as text.
        self._conn_kwargs["decode_responses"] = False
        # Bound the handshake: a server that accepts the connection but never answers must
        # not hang the reader (after the handshake the socket is non-blocking anyway).
        for key in ("socket_timeout", "socket_connect_timeout"):
            if not self._conn_kwargs.get(key):
                self._conn_kwargs[key] = connect_timeout
        #: Called once with the first connection opened, before it turns non-blocking (the
        #: subscriber asks it whether the server is a cluster node).
        self._probe = probe
        self._on_batch = on_batch
        self._room = room
        self._on_data = on_data
        self._max_backlog = max_backlog
        self._read_cap = max(max_backlog, _READ_AHEAD)
        self._retry_delay = retry_delay
        self._backoff = EqualJitterBackoff(cap=retry_delay, base=_BACKOFF_BASE)
        self._hc = health_check_interval
        self.name = name
        self.subs = Subscriptions(
            name,
            retry_delay,
            [self._conn_kwargs.get("password")],
            wake=self._wake,
            where=self._conn_kwargs,
            cv=cv,
            clock=clock,
            on_redirect=on_redirect,
        )
        self.pump = BytePump()
        # The pump is parsed by the dispatcher (``pull``) and, when it must, by this thread:
        # one lock keeps the replies in order whoever parses them.
        self._pump_lock = threading.Lock()
        # True while this thread hands a parsed batch over (outside the lock: under "block"
        # it may wait for room); the dispatcher pulls nothing meanwhile, so order holds.
        self._handing_over = False

        self.attempts = 0
        self.disconnects = 0
        #: When (``time.time()``) the newest losses happened (sequence gaps are matched to them).
        self.losses: deque[float] = deque(maxlen=100)
        self.reconnects = 0
        #: Replies cut short when a link ended (or was closed) in their middle: each one a
        #: message lost in transit (see SubscriberStats.truncated).
        self.truncated = 0

        #: The server's id of the open connection (``CLIENT ID``, asked on connect; None when
        #: refused or not connected) and its local address as the server lists it
        #: (``CLIENT LIST``'s ``addr``): the health gauge finds the connection by them.
        self.client_id: int | None = None
        self.local_addr: str | None = None

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

    @property
    def backlog_bytes(self) -> int:
        """Bytes read but not parsed yet (see SubscriberStats.unparsed_bytes)."""
        return self.pump.size

    def stop(self, timeout: float) -> bool:
        """Stop the thread (a connect in progress is cut short); True once it has ended."""
        with self.subs.cv:
            self._stopping = True
            self.subs.cv.notify_all()
        self._wake()
        self._interrupt_connect()
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

    def pull(self, queued: Callable[[], int]) -> tuple[Batch, float] | None:
        """The next messages, parsed now (the dispatcher's thread calls this); None when
        nothing complete is waiting, or when ``queued()``: batches this thread parsed earlier
        come first. Confirmations and PONGs met on the way go to the subscription state."""
        with self._pump_lock:
            while not queued() and not self._handing_over and self.pump.waiting:
                msgs, others, t = self._parse_locked(time.monotonic() + _DRAIN_EVERY, _MAX_BATCH)
                if msgs:
                    return msgs, t
                if not others:
                    break  # only part of a reply so far
        return None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) this reader connects to."""
        return self._conn_kwargs.get("host", "localhost"), int(self._conn_kwargs.get("port", 6379))

    @property
    def conn_kwargs(self) -> dict[str, Any]:
        """How this reader connects (credentials, TLS, protocol: never shown anywhere)."""
        return self._conn_kwargs

    @property
    def conn_class(self) -> Any:
        return self._conn_class

    def retarget(self, address: tuple[str, int]) -> None:
        """Connect to ``address`` from the next attempt on (a cluster node replacing a lost
        one); a backoff pause in progress is cut short."""
        kwargs = dict(self._conn_kwargs)  # swapped whole: the reader thread reads it
        kwargs["host"], kwargs["port"] = address
        self._conn_kwargs = kwargs
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # buffer full (already woken) or closed (stopped)

    def _interrupt_connect(self) -> None:
        # A handshake blocked on a frozen server would hold stop() for connect_timeout: shut
        # the socket down under it (redis-py then raises in the reader thread).
        conn = self._conn
        sock = getattr(conn, "_sock", None) if conn is not None else None
        if sock is not None and self._sock is None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- the thread: connect, pump, reconnect -------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self.attempts += 1
            try:
                self._open()
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
                self._close()
                if self._stopping:
                    break
                self.subs.set_error(f"cannot connect: {exc}", exc)
                if self._pause(self._backoff.compute(failures)):
                    break
                failures += 1
                continue
            opened_at = time.monotonic()
            try:
                self._pump()
            except _LinkLost:
                pass
            except Exception as exc:  # noqa: BLE001 - a fault of the reader itself
                if self._stopping:
                    break
                # Never expected; counted and reported like a lost link, and re-established.
                self.disconnects += 1
                self.losses.append(time.time())
                self.subs.set_error(f"reader failed: {exc!r}", exc)
                logger.exception("subscriber %s: the reader failed; reconnecting", self.name)
            finally:
                self._close()
            if self._stopping:
                break
            # A link that had been up for a while starts the backoff afresh; one that dies
            # right after opening backs off further (no tight loop).
            if time.monotonic() - opened_at >= max(1.0, self._retry_delay):
                failures = 0
            if self._pause(self._backoff.compute(failures)):
                break
            failures += 1
        self._close()

    def _open(self) -> None:
        conn = self._conn_class(**self._conn_kwargs)
        self._conn = conn
        conn.connect()
        if self._stopping:
            raise ConnectionError("stopping")
        if self._probe is not None:
            self._probe(conn)
            self._probe = None
        sock = conn._sock  # redis-py did the handshake; the hot path reads the socket directly
        self.client_id, self.local_addr = _identify(conn), _addr_text(sock)
        sock.setblocking(False)
        self._sock = sock
        with self._pump_lock:
            self.pump = BytePump()
        if self.subs.ever_connected:
            self.reconnects += 1
            logger.warning("subscriber %s reconnected; resubscribing", self.name)
        self.subs.opened()

    def _close(self) -> None:
        self.subs.lost()
        self.client_id = self.local_addr = None
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

    # ---- the pump loop --------------------------------------------------------------------
    def _pump(self) -> None:
        """Read, parse and hand on until stopped; raise when the link is lost."""
        sock = self._sock
        assert sock is not None
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        sock_fd = sock.fileno()
        buf = bytearray(_CHUNK)
        pump = self.pump
        subs = self.subs
        clock = time.monotonic
        hc_ms = int(self._hc * 1000)
        last_rx = clock()
        ping_sent = 0.0
        retry_at = 0.0
        while not self._stopping:
            if subs.has_commands:
                self._write(*subs.take())
            limit, force = self._limit()
            parsed = bool(limit and pump.waiting) and self._parse(
                clock() + _DRAIN_EVERY, limit, force
            )
            if pump.size >= self._read_cap:
                # Read-ahead full: wait for the dispatcher to take some (the kernel's and
                # then the server's buffers hold the rest meanwhile).
                self._pause(0.002)
                continue
            # Wait for bytes, a wake-up (a command to write), or the next health check.
            readable = False
            timeout = 250 if subs.refused_waiting() else hc_ms
            for fd, _ev in poller.poll(0 if parsed else timeout):
                if fd == sock_fd:
                    readable = True
                else:
                    self._drain_wake()
            now = clock()
            if readable:
                if self._drain(sock, buf):
                    last_rx = now
                    ping_sent = 0.0
                    self._on_data()
                continue
            if now - last_rx >= self._hc:
                if not ping_sent:
                    ping_sent = now
                    self._write(subs.ping())
                elif now - ping_sent >= self._hc:
                    self._lost(LinkDead(f"no reply to PING for {self._hc:g} s"))
            if subs.refused_waiting() and now >= retry_at:
                retry_at = now + self._retry_delay
                subs.retry_refused()
        # Stopping: what was already read completely is handed on (stop() delivers what is
        # queued); a reply cut short by the stop is dropped.
        self._hand_on_rest(0.0)

    def _drain(self, sock: socket.socket, buf: bytearray) -> bool:
        """Everything the kernel holds now, in chunks of _CHUNK; True if anything came.
        A read error or EOF ends the link (``_lost``)."""
        pump = self.pump
        pending_ssl = getattr(sock, "pending", None)
        t = time.time()
        got = False
        while True:
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError as exc:
                if exc.__class__.__name__ == "SSLWantReadError":
                    return got
                self._lost(exc)
            if n == 0:
                self._lost(ConnectionError("server closed the connection"))
            with self._pump_lock:
                pump.add(t, buf[:n])
            got = True
            if pump.size >= self._read_cap or (n < _CHUNK and not (pending_ssl and pending_ssl())):
                return got

    def _limit(self) -> tuple[int, bool]:
        """How many replies this thread parses now, and whether to hand them over whatever
        the queue's room (``force``). Mostly none: the dispatcher parses what it delivers."""
        if self.pump.size >= self._max_backlog:
            return _MAX_BATCH, False  # past the backlog cap the overflow policy applies
        if self.subs.awaiting:
            # A confirmation waits somewhere behind the backlog: parse ahead until it is found
            # (the queue holds the messages before it beyond queue_size for that long).
            return _MAX_BATCH, True
        return 0, False

    def _parse_locked(self, until: float, limit: int) -> tuple[Batch, list[Any], float]:
        """Parse (the pump lock held: whoever parses, this thread or the dispatcher's); the
        control replies met on the way go to the subscription state at once, in order."""
        msgs, others, t = self.pump.parse(until, limit)
        if others:
            self.subs.on_replies(others)
        return msgs, others, t

    def _parse(self, until: float, limit: int, force: bool) -> int:
        with self._pump_lock:
            msgs, others, t = self._parse_locked(until, limit)
            # Until these are queued, the dispatcher pulls nothing that comes after them.
            self._handing_over = bool(msgs)
        if msgs:
            try:
                self._on_batch(msgs, t, force)  # may wait for room ("block"): lock released
            finally:
                self._handing_over = False
                self._on_data()
        return len(msgs) + len(others)

    def _lost(self, exc: BaseException) -> NoReturn:
        """The link is gone. ``connected`` is False from now on and the loss is counted and
        said; what was read completely is handed on (at the handler's pace for a moment, then
        under the overflow policy), the rest of a reply cut short is dropped."""
        self.subs.lost()
        self.disconnects += 1
        self.losses.append(time.time())
        self.subs.set_error(f"connection lost: {exc}", exc)
        logger.warning(
            "subscriber %s lost its connection (%s); reconnecting (messages published until "
            "it is back are not received)",
            self.name,
            self.subs.last_error,
        )
        self._hand_on_rest(_LOST_GRACE)
        raise _LinkLost from exc

    def _hand_on_rest(self, grace: float) -> None:
        """Parse and hand on every complete reply still held; then drop a partial one."""
        deadline = time.monotonic() + grace
        while True:
            if self._stopping or time.monotonic() >= deadline:
                limit = _MAX_BATCH
            else:
                limit = min(self._room(), _MAX_BATCH)
                if not limit:
                    time.sleep(0.002)
                    continue
            if not self._parse(float("inf"), limit, False):
                break
        with self._pump_lock:
            cut = self.pump.discard_partial()
        if cut:
            self.truncated += 1
            logger.warning(
                "subscriber %s: the link ended in the middle of a reply; dropped the part of it "
                "read so far (that message is lost; counted in stats.truncated)",
                self.name,
            )

    # ---- writing ------------------------------------------------------------------------------
    def _write(self, *commands: bytes) -> None:
        """Write commands whole (bounded: a server that takes nothing is a dead link)."""
        sock = self._sock
        assert sock is not None
        view = memoryview(b"".join(commands))
        deadline = time.monotonic() + self._hc
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                if exc.__class__.__name__ != "SSLWantWriteError":
                    self._lost(exc)
                sent = 0
            if not sent:
                if self._stopping:
                    raise ConnectionError("stopping")
                if time.monotonic() > deadline:
                    self._lost(LinkDead(f"the server took no data for {self._hc:g} s"))
                select.select([], [sock], [], 0.1)
                continue
            view = view[sent:]


def _identify(conn: Any) -> int | None:
    """``CLIENT ID`` of a connection just opened (one round trip, before any subscription);
    None when refused (an ACL without ``+client|id``)."""
    try:
        conn.send_command("CLIENT", "ID")
        return int(conn.read_response())
    except redis.ResponseError:
        return None


def _addr_text(sock: socket.socket) -> str | None:
    """The socket's local address as the server writes a client's ``addr``."""
    try:
        addr = sock.getsockname()
    except OSError:
        return None
    if not isinstance(addr, tuple):
        return None  # a unix socket: the server lists no address to match
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
