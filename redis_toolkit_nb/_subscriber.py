"""``Subscriber``: a background subscription, its reader, dispatcher, buffer and figures.

A ``Subscriber`` runs until ``stop()``. It keeps itself alive through a module registry
(the guide creates subscribers inside functions and drops the reference), and every one
still running is stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from ._buffer import MessageBuffer
from ._dispatch import Dispatcher, Handler, Record
from ._options import RedisOptions
from ._reader import CHANNEL, PATTERN, Reader, is_pattern, to_bytes
from ._stats import SubscriberStats
from ._subscriptions import text as _text
from .exceptions import SubscriptionError

logger = logging.getLogger("redis_toolkit_nb")

_registry: set[Subscriber] = set()
_registry_lock = threading.Lock()
_ids = itertools.count(1)


def active_subscribers() -> list[Subscriber]:
    """Every subscriber of this process that has not been stopped."""
    with _registry_lock:
        return list(_registry)


@atexit.register
def _stop_all() -> None:
    for sub in active_subscribers():
        sub.stop(timeout=1.0)


def _split(names: Iterable[str | bytes]) -> tuple[list[bytes], list[bytes]]:
    if isinstance(names, (str, bytes)):
        names = [names]
    channels: list[bytes] = []
    patterns: list[bytes] = []
    for name in names:
        if not isinstance(name, (str, bytes)) or not name:
            raise SubscriptionError(
                f"a channel name must be a non-empty str or bytes, not {name!r}"
            )
        (patterns if is_pattern(name) else channels).append(to_bytes(name))
    return channels, patterns


class Subscriber:
    """Receives messages on a background thread and hands them to ``handler(channel, data)``.

    Built by ``RedisToolkit(channels=..., message_handler=...)``; use it directly for more
    control. ``on_message`` receives each message as a ``(time, channel, pattern, data,
    size)`` tuple (see ``Message``) before the handler.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        handler: Handler | None = None,
        options: RedisOptions | None = None,
        name: str | None = None,
        on_message: Callable[[Record], object] | None = None,
    ) -> None:
        self.options = options or RedisOptions()
        self.name = name or f"rtk-sub-{next(_ids)}"
        size = self.options.buffer_size
        self.buffer: MessageBuffer | None = MessageBuffer(size) if size else None
        self._dispatcher = Dispatcher(
            handler=handler,
            buffer=self.buffer,
            options=self.options,
            name=self.name,
            on_message=on_message,
            awaiting=lambda: self._reader.subs.awaiting,
            on_fatal=self._fatal,
            pull=lambda queued: self._reader.pull(queued),
        )
        self._reader = Reader(
            client,
            on_batch=self._dispatcher.put,
            room=self._dispatcher.room,
            on_data=self._dispatcher.wake,
            max_backlog=self.options.max_backlog_bytes,
            name=self.name,
            retry_delay=float(self.options.subscriber_retry_delay),
            health_check_interval=float(self.options.health_check_interval),
            connect_timeout=float(self.options.connect_timeout),
        )
        self._started_at = 0.0
        self._stopped = False
        self._stop_lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, channels: Iterable[str | bytes] = ()) -> Subscriber:
        """Start the threads, subscribe to ``channels``, and return once the server confirmed
        them (raise ``ToolkitConnectionError`` or ``SubscriptionError`` otherwise)."""
        chans, pats = self._request("sub", channels)
        self._started_at = time.monotonic()
        with _registry_lock:
            _registry.add(self)
        self._dispatcher.start()
        self._reader.start()
        try:
            self._wait(chans, pats, subscribed=True, first=True)
        except BaseException:
            self.stop(timeout=1.0)
            raise
        if self.options.is_logger_info:
            logger.info("subscriber %s listening on %s", self.name, ", ".join(self.names))
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop reading, deliver what is queued (up to ``timeout``), join the threads and close
        the connection. Idempotent. Returns False if a handler was still running at the end."""
        with self._stop_lock:
            if self._stopped:
                return True
            self._stopped = True
        timeout = self.options.subscriber_stop_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        # Tell the dispatcher first: a reader blocked on a full queue ("block") lets go at once.
        self._dispatcher.begin_stop(deadline)
        reader_done = self._reader.stop(timeout)
        dispatcher_done = self._dispatcher.stop(max(0.0, deadline - time.monotonic()))
        with _registry_lock:
            _registry.discard(self)
        if not dispatcher_done:
            logger.warning(
                "subscriber %s: the message handler was still running %g s after stop(); "
                "its thread is left to finish on its own (it is a daemon thread)",
                self.name,
                timeout,
            )
        return reader_done and dispatcher_done

    @property
    def running(self) -> bool:
        return not self._stopped and self._reader.alive

    # ---- subscriptions -----------------------------------------------------------------------
    def subscribe(self, *names: str | bytes, timeout: float | None = None) -> None:
        """Add channels or patterns without interrupting the others; returns when confirmed."""
        chans, pats = self._request("sub", names)
        self._wait(chans, pats, subscribed=True, timeout=timeout)

    def unsubscribe(self, *names: str | bytes, timeout: float | None = None) -> None:
        """Remove channels or patterns; returns when the server confirmed."""
        chans, pats = self._request("unsub", names)
        self._wait(chans, pats, subscribed=False, timeout=timeout)

    def _request(
        self, action: str, names: Iterable[str | bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        """Ask the reader to (un)subscribe ``names``, split into channels and patterns."""
        chans, pats = _split(names)
        for kind, group in ((CHANNEL, chans), (PATTERN, pats)):
            if group:
                self._reader.subs.request(action, kind, group)
        return chans, pats

    def _wait(
        self,
        chans: list[bytes],
        pats: list[bytes],
        *,
        subscribed: bool,
        first: bool = False,
        timeout: float | None = None,
    ) -> None:
        self._reader.subs.wait(
            [(CHANNEL, n) for n in chans] + [(PATTERN, n) for n in pats],
            subscribed=subscribed,
            timeout=self.options.subscribe_timeout if timeout is None else timeout,
            first=first,
            stopped=lambda: self._stopped,
            backlog=lambda: self._reader.backlog_bytes,
        )

    def _fatal(self, exc: BaseException) -> None:
        """The handler raised SystemExit, KeyboardInterrupt or another non-``Exception``:
        the subscriber stops, and says so (``running`` False, ``last_error``, an ERROR line)."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._reader.subs.set_error(f"stopped: the message handler raised {what}")
        logger.error(
            "subscriber %s stopped: the message handler raised %s (not an Exception, so it "
            "is taken as a request to stop; messages not delivered are counted as dropped)",
            self.name,
            what,
        )
        self.stop(timeout=1.0)

    # ---- control and figures -----------------------------------------------------------------
    def pause(self) -> None:
        """Keep reading and counting, but pass messages over (counted in ``stats.skipped``)."""
        self._dispatcher.paused = True

    def resume(self) -> None:
        self._dispatcher.paused = False

    @property
    def paused(self) -> bool:
        return self._dispatcher.paused

    def clear(self) -> None:
        """Empty the buffer, the per-channel counts and the recent handler failures (the totals
        stay)."""
        if self.buffer is not None:
            self.buffer.clear()
        self._dispatcher.clear_counts()

    @property
    def channels(self) -> list[str]:
        """Confirmed channel subscriptions."""
        return self._reader.subs.confirmed_names(CHANNEL)

    @property
    def patterns(self) -> list[str]:
        """Confirmed pattern subscriptions."""
        return self._reader.subs.confirmed_names(PATTERN)

    @property
    def names(self) -> list[str]:
        """Every channel and pattern asked for, confirmed or not."""
        return self._reader.subs.names()

    @property
    def failures(self) -> list[tuple[float, Any, Any, Exception, str]]:
        """Recent handler failures: (time, channel, data, exception, traceback), oldest first."""
        return list(self._dispatcher.failures)

    @property
    def stats(self) -> SubscriberStats:
        return self._stats(detail=True)

    def totals(self) -> SubscriberStats:
        """``stats`` without the per-channel, per-pattern and per-link counts (left empty):
        its cost does not grow with the number of distinct channels, for views that read the
        figures several times a second."""
        return self._stats(detail=False)

    def _stats(self, detail: bool) -> SubscriberStats:
        r, d, subs = self._reader, self._dispatcher, self._reader.subs
        with subs.cv:
            chans = tuple(sorted(_text(n) for n in subs.confirmed[CHANNEL]))
            pats = tuple(sorted(_text(n) for n in subs.confirmed[PATTERN]))
            connected, last_error = subs.connected, subs.last_error
        received, delivered, dropped, decode_errors, skipped, pending = d.counts()
        return SubscriberStats(
            received=received,
            delivered=delivered,
            dropped=dropped,
            handler_errors=d.handler_errors,
            decode_errors=decode_errors,
            raw_payloads=d.raw_payloads,
            skipped=skipped,
            pending=pending,
            unparsed_bytes=r.backlog_bytes,
            truncated=r.truncated,
            disconnects=r.disconnects,
            reconnects=r.reconnects,
            connected=connected,
            paused=d.paused,
            channels=chans,
            patterns=pats,
            by_channel=dict(d.by_channel) if detail else {},
            by_pattern=dict(d.by_pattern) if detail else {},
            by_link=dict(d.by_link) if detail else {},
            last_error=last_error,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
        )

    def __repr__(self) -> str:
        state = (
            "stopped"
            if self._stopped
            else ("connected" if self._reader.subs.connected else "connecting")
        )
        s = self.stats
        return (
            f"<Subscriber {self.name} {state} channels={list(s.channels)} "
            f"patterns={list(s.patterns)} received={s.received} dropped={s.dropped}>"
        )
