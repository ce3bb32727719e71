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
from ._dispatch import Dispatcher, Handler
from ._options import RedisOptions
from ._reader import CHANNEL, PATTERN, Reader, is_pattern, to_bytes
from ._stats import SubscriberStats
from .exceptions import SubscriptionError, ToolkitConnectionError

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


def _text(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


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
        on_message: Callable[[tuple[float, str, str | None, Any, int]], Any] | None = None,
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
        )
        self._reader = Reader(
            client,
            on_batch=self._dispatcher.put,
            room=self._dispatcher.room,
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
                self._reader.request(action, kind, group)
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
        reader = self._reader
        timeout = self.options.subscribe_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        wanted = [(CHANNEL, n) for n in chans] + [(PATTERN, n) for n in pats]
        with reader.cv:
            while True:
                refused = {n: reader.refused[n] for _, n in wanted if n in reader.refused}
                if refused:
                    # Only the refused names are given up; the others stay subscribed.
                    for kind, n in wanted:
                        if n in refused:
                            reader.wanted[kind].pop(n, None)
                            reader.refused.pop(n, None)
                    names = ", ".join(_text(n) for n in refused)
                    kept = [_text(n) for _, n in wanted if n not in refused]
                    also = f"; {', '.join(kept)} subscribed nonetheless" if kept else ""
                    raise SubscriptionError(
                        f"the server refused to subscribe {names}: "
                        f"{next(iter(refused.values()))}{also}"
                    )
                done = all((n in reader.confirmed[k]) == subscribed for k, n in wanted)
                if done and (reader.connected or not subscribed):
                    return
                if first and not reader.ever_connected and reader.last_error:
                    raise ToolkitConnectionError(f"subscriber {self.name}: {reader.last_error}")
                if self._stopped:
                    raise SubscriptionError(f"subscriber {self.name} is stopped")
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f" (last error: {reader.last_error})" if reader.last_error else ""
                    if reader.backlog_bytes:
                        why += (
                            f" (the confirmation may wait behind {reader.backlog_bytes} unparsed "
                            "bytes of messages for a busy handler)"
                        )
                    if subscribed and not first:
                        # Undo, so a late confirmation does not leave a subscription the
                        # caller was told failed.
                        for kind, n in wanted:
                            if n not in reader.confirmed[kind]:
                                reader.wanted[kind].pop(n, None)
                                reader._outbox.append(("unsub", kind, [n]))
                        reader._wake()
                    raise SubscriptionError(
                        f"subscriber {self.name}: the server did not confirm "
                        f"{'subscribing' if subscribed else 'unsubscribing'} "
                        f"{', '.join(_text(n) for _, n in wanted)} within {timeout:g} s{why}"
                    )
                reader.cv.wait(min(left, 0.5))

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
        with self._reader.cv:
            return sorted(_text(n) for n in self._reader.confirmed[CHANNEL])

    @property
    def patterns(self) -> list[str]:
        """Confirmed pattern subscriptions."""
        with self._reader.cv:
            return sorted(_text(n) for n in self._reader.confirmed[PATTERN])

    @property
    def names(self) -> list[str]:
        """Every channel and pattern asked for, confirmed or not."""
        with self._reader.cv:
            return [_text(n) for kind in (CHANNEL, PATTERN) for n in self._reader.wanted[kind]]

    @property
    def failures(self) -> list[tuple[float, Any, Any, Exception, str]]:
        """Recent handler failures: (time, channel, data, exception, traceback), oldest first."""
        return list(self._dispatcher.failures)

    @property
    def stats(self) -> SubscriberStats:
        r, d = self._reader, self._dispatcher
        with r.cv:
            chans = tuple(sorted(_text(n) for n in r.confirmed[CHANNEL]))
            pats = tuple(sorted(_text(n) for n in r.confirmed[PATTERN]))
            connected, last_error = r.connected, r.last_error
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
            disconnects=r.disconnects,
            reconnects=r.reconnects,
            connected=connected,
            paused=d.paused,
            channels=chans,
            patterns=pats,
            by_channel=dict(d.by_channel),
            by_pattern=dict(d.by_pattern),
            by_link=dict(d.by_link),
            last_error=last_error,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
        )

    def __repr__(self) -> str:
        state = (
            "stopped"
            if self._stopped
            else ("connected" if self._reader.connected else "connecting")
        )
        s = self.stats
        return (
            f"<Subscriber {self.name} {state} channels={list(s.channels)} "
            f"patterns={list(s.patterns)} received={s.received} dropped={s.dropped}>"
        )
