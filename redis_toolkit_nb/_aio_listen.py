"""``Listener``: the sync subscriber's messages, delivered into an asyncio event loop.

The subscriber's reader and dispatcher threads do the reading and parsing (the batch reader,
several times faster than redis-py's per-message async path). Its handler appends
``(channel, payload)`` to a bounded deque and wakes the loop with ``call_soon_threadsafe`` only
when the consumer may be asleep: once per burst, not once per message. When the deque is full
the handler waits, so the subscriber's own bounded queue fills next and its overflow policy
applies (``stats.dropped`` counts every message dropped).

Payloads are decoded in the loop, as each message is taken, not on the subscriber's thread:
a decoded dict waiting in the deque would survive the garbage collector's young generations
and make every collection pay for it (measured: a 1M burst read at ~210k msg/s with decoded
values queued, ~570k with bytes queued, as with the collector off). The rules are the sync
subscriber's (``RedisOptions.decode``), and so are the figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from . import _codec as codec
from ._ratelimit import RateLimitedLog
from ._stats import SubscriberStats
from ._subscriber import Subscriber

logger = logging.getLogger("redis_toolkit_nb")

#: Messages waiting in the loop's deque, at most, before the subscriber's queue takes the rest.
DEFAULT_PENDING = 16_384


class _Pipe:
    """The bridge the subscriber's thread writes into; it holds no reference to the
    ``Listener``, so dropping the listener (leaving ``async for``) can close it at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.items: deque[tuple[Any, Any]] = deque()
        self.limit = limit
        self.low = max(1, limit // 2)
        self.event = asyncio.Event()
        self.space = threading.Event()
        self.space.set()
        self.blocked = False
        self.wake_pending = False
        self.closed = False

    def handler(self) -> Callable[[Any, Any], None]:
        """The subscriber's handler (its dispatcher thread): a closure over locals, because
        it runs once per message."""
        items = self.items
        append = items.append
        limit = self.limit

        def handle(channel: Any, data: Any) -> None:
            if len(items) >= limit:
                self.wait_for_room()
            append((channel, data))
            if not self.wake_pending:
                self.wake_pending = True
                self.wake()

        return handle

    def wait_for_room(self) -> None:
        self.space.clear()
        self.blocked = True  # after clear(): the consumer's set() then always wakes us
        while len(self.items) >= self.limit and not self.closed:
            self.space.wait(0.1)
        self.blocked = False

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            pass

    def close(self) -> None:
        self.closed = True
        self.space.set()
        self.wake()


class Listener:
    """``async for channel, data in listener``: messages of ``names`` (channels or patterns).

    Subscribes on ``async with`` or on the first iteration; leaving the ``async for`` (or the
    ``async with``) unsubscribes. ``stats`` are the subscriber's figures (received, dropped,
    reconnects...). Made by ``redis_toolkit_nb.aio.RedisToolkit.listen()``.
    """

    def __init__(
        self,
        toolkit: Any,
        names: Iterable[str | bytes],
        executor: Executor,
        max_pending: int = DEFAULT_PENDING,
    ) -> None:
        self._toolkit = toolkit
        self._names = list(names)
        if not self._names:
            raise ValueError("listen() needs at least one channel or pattern")
        self._executor = executor
        self._limit = max_pending
        self._pipe: _Pipe | None = None
        self.subscriber: Subscriber | None = None
        self._closed = False
        self._mode = toolkit.options.decode
        # The subscriber's own decoding rules (one table for every path, see ``_codec``).
        self._decoder = codec.Decoder(toolkit.options.decode, toolkit.options.legacy_envelopes)
        self._raw_payloads = 0
        self._decode_errors = 0
        self._error_log = RateLimitedLog(logger, logging.ERROR, period=10.0, burst=5)

    async def start(self) -> Listener:
        """Subscribe and return once the server confirmed every name."""
        if self.subscriber is not None or self._closed:
            return self
        loop = asyncio.get_running_loop()
        pipe = self._pipe = _Pipe(loop, self._limit)
        tk = self._toolkit
        sub = Subscriber(
            tk.client,
            handler=pipe.handler(),
            options=tk.options.replace(buffer_size=0, decode="raw"),
        )
        await loop.run_in_executor(self._executor, sub.start, self._names)
        self.subscriber = sub
        return self

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> tuple[Any, Any]:
        pipe = self._pipe
        if pipe is None:
            await self.start()
            pipe = self._pipe
            assert pipe is not None
        items = pipe.items
        while True:
            if items:
                item = items.popleft()
                if pipe.blocked and len(items) < pipe.low:
                    pipe.space.set()
                if self._mode == "raw":
                    return item
                try:
                    data = codec._loads(item[1])
                except codec.JSONDecodeError:
                    decoded = self._fallback(*item)
                    if decoded is not None:
                        return decoded
                    continue
                decoder = self._decoder
                if decoder.legacy and data.__class__ is dict and "__type__" in data:
                    data = decoder.unwrap(data, item[1])
                return item[0], data
            if self._closed:
                raise StopAsyncIteration
            pipe.event.clear()
            # Cleared before the last look, so a message appended from now on wakes us.
            pipe.wake_pending = False
            if not items:
                await pipe.event.wait()

    def _fallback(self, channel: Any, payload: bytes) -> tuple[Any, Any] | None:
        """A payload orjson refused, decoded by the subscriber's rules; None: not delivered."""
        try:
            data, as_text = self._decoder.fallback(payload)
        except codec.NotJSON:
            self._decode_errors += 1
            self._error_log.emit(
                "payload on channel %r is not JSON (decode='json'; %d decode errors so far): %r",
                channel,
                self._decode_errors,
                payload[:256],
            )
            return None
        self._raw_payloads += as_text
        return channel, data

    @property
    def stats(self) -> SubscriberStats:
        """The subscriber's figures, with the decoding done in the loop accounted for."""
        if self.subscriber is None:
            return SubscriberStats()
        s = self.subscriber.stats
        return dataclasses.replace(
            s,
            delivered=s.delivered - self._decode_errors,
            decode_errors=s.decode_errors + self._decode_errors,
            raw_payloads=s.raw_payloads + self._raw_payloads,
        )

    @property
    def pending(self) -> int:
        """Messages delivered by the subscriber and not yet taken by the loop."""
        return len(self._pipe.items) if self._pipe else 0

    def close(self) -> None:
        """Unsubscribe (stop the subscriber and join its threads). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pipe is not None:
            self._pipe.close()
        if self.subscriber is not None:
            self.subscriber.stop()

    async def aclose(self) -> None:
        """``close()`` without blocking the loop."""
        if not self._closed:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.close)

    async def __aenter__(self) -> Listener:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the last reference: unsubscribe right then.
        if not getattr(self, "_closed", True):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("listening" if self.subscriber else "not started")
        return f"<Listener {state} {self._names}>"
