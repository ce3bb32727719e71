"""``Listener``: a subscriber's messages, taken and decoded in an asyncio event loop.

The subscriber's reader thread reads the socket into its byte pump; there is no dispatcher
thread: the loop itself takes each batch of replies (``Subscriber(external=...)``,
``take()``), parsed by hiredis right before it is decoded, one message per ``__anext__``.
Nothing parsed waits between two threads, so few parsed messages are ever alive at once and
the garbage collector stays idle (handing batches over through a deque instead cost ~1,250
young collections and 10 full ones on a 1M burst, against about a dozen). The reader calls
``call_soon_threadsafe`` only when the loop sleeps: once per burst, not once per message.

Backpressure is the sync subscriber's: unparsed bytes wait in the pump (``max_backlog_bytes``),
past it the reader parses into the subscriber's bounded queue (``queue_size``) and its overflow
policy applies (``stats.dropped`` counts every message dropped). The decoding rules are the
sync subscriber's (``RedisOptions.decode``), and so are the figures: ``delivered`` counts what
the loop took, and what the loop never took before the listener closed is counted as dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from . import _codec as codec
from ._dispatch import remember_name
from ._ratelimit import RateLimitedLog
from ._stats import SubscriberStats
from ._subscriber import Subscriber

logger = logging.getLogger("redis_toolkit_nb")

#: Kept for callers of ``listen(max_pending=...)``: the batches of the subscriber's queue a
#: slow loop lets wait, at most, in messages (``queue_size`` when smaller).
DEFAULT_PENDING = 16_384


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
        self._event: asyncio.Event | None = None
        # The subscriber being started (``start()``), and its start in the executor.
        self._pending: Subscriber | None = None
        self._starting: asyncio.Future[Any] | None = None
        self._wake: Callable[[], None] = lambda: None
        # Messages the subscriber handed to the loop (``take()``), including the current batch.
        self._handed = 0
        self.subscriber: Subscriber | None = None
        self._closed = False
        self._raw = toolkit.options.decode == "raw"
        # The subscriber's own decoding rules (one table for every path, see ``_codec``).
        self._decoder = codec.Decoder(toolkit.options.decode, toolkit.options.legacy_envelopes)
        self._unwrap = self._decoder.unwrap if self._decoder.legacy else None
        self._raw_payloads = 0
        self._decode_errors = 0
        self._error_log = RateLimitedLog(logger, logging.ERROR, period=10.0, burst=5)
        # The batch being taken, and the next reply in it.
        self._batch: list[Any] = []
        self._index = 0
        self._text: dict[bytes, str | bytes] = {}
        # Messages per channel, counted in runs (one identity test per message).
        self._run_channel: Any = None
        self._run = 0
        self._by_channel: dict[Any, int] = {}
        self._by_pattern: dict[Any, int] = {}
        self._by_link: dict[tuple[Any, Any], int] = {}
        # Handed to the loop but never taken, once closed (counted as dropped).
        self._abandoned = 0

    async def start(self) -> Listener:
        """Subscribe and return once the server confirmed every name. Cancelling the wait
        (``wait_for`` around the first ``__anext__``) does not cancel the subscribing: the next
        call waits for the same one, and ``close()`` stops it (never a second subscriber, never
        one left running)."""
        if self.subscriber is not None or self._closed:
            return self
        loop = asyncio.get_running_loop()
        if self._starting is None:
            event = self._event = asyncio.Event()

            def wake() -> None:  # the reader's thread, only while the loop sleeps
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:  # the loop is closed: nobody is left to wake
                    pass

            tk = self._toolkit
            options = tk.options.replace(
                buffer_size=0,
                decode="raw",
                queue_size=min(tk.options.queue_size, self._limit),
                # The loop decodes; the trackers watch the dispatcher's deliveries, and there
                # is no dispatcher here: off, rather than there and never fed.
                seq_field=None,
                latency_field=None,
                track_schema=False,
            )
            self._wake = wake
            sub = self._pending = Subscriber(tk.client, options=options, external=wake)
            self._starting = loop.run_in_executor(self._executor, sub.start, self._names)
        try:
            await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            raise  # the subscribing goes on (see above)
        except BaseException:
            self._starting = None  # it failed, and stopped itself
            raise
        if self.subscriber is None:
            self.subscriber = self._pending
        return self

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> tuple[Any, Any]:
        while True:
            batch = self._batch
            index = self._index
            if index < len(batch):
                self._index = index + 1
                reply = batch[index]
                if len(reply) == 3:
                    cb = reply[1]
                else:
                    cb = reply[2]
                    self._count_pattern(reply[1], cb)
                channel = self._text.get(cb)
                if channel is None:
                    channel = self._name(cb)
                if channel is not self._run_channel:
                    self._end_run()
                    self._run_channel = channel
                self._run += 1
                payload = reply[-1]
                if self._raw:
                    return channel, payload
                try:
                    data = codec._loads(payload)
                except codec.JSONDecodeError:
                    decoded = self._fallback(channel, payload)
                    if decoded is not None:
                        return decoded
                    self._run -= 1  # not delivered: by_channel counts deliveries, as in sync
                    continue
                if self._unwrap is not None and data.__class__ is dict and "__type__" in data:
                    data = self._unwrap(data, payload)
                return channel, data
            if not await self._next_batch():
                raise StopAsyncIteration

    async def _next_batch(self) -> bool:
        """Take the next batch from the subscriber (waiting for one); False once closed."""
        if self.subscriber is None:
            await self.start()
        sub = self.subscriber
        event = self._event
        assert sub is not None and event is not None
        while not self._closed:
            got = sub.take()
            if got is not None:
                self._batch, self._index = got[0], 0
                self._handed += len(got[0])
                return True
            event.clear()
            sub.sleep()  # from now on a new batch or new bytes set the event
            got = sub.take()
            if got is not None:
                self._batch, self._index = got[0], 0
                self._handed += len(got[0])
                return True
            await event.wait()
        return False

    def _name(self, raw: bytes) -> str | bytes:
        return remember_name(self._text, raw)

    def _count_pattern(self, pb: bytes, cb: bytes) -> None:
        pattern = self._text.get(pb)
        if pattern is None:
            pattern = self._name(pb)
        channel = self._text.get(cb)
        if channel is None:
            channel = self._name(cb)
        self._by_pattern[pattern] = self._by_pattern.get(pattern, 0) + 1
        link = (pattern, channel)
        self._by_link[link] = self._by_link.get(link, 0) + 1

    def _end_run(self) -> None:
        if self._run:
            by_channel = self._by_channel
            by_channel[self._run_channel] = by_channel.get(self._run_channel, 0) + self._run
            self._run = 0

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
    def _taken(self) -> int:
        """Messages the loop took (returned, or refused by the decoder)."""
        return self._handed - (len(self._batch) - self._index)

    @property
    def stats(self) -> SubscriberStats:
        """The subscriber's figures, as the loop sees them: ``delivered`` counts what the
        loop took, ``pending`` everything read and not yet taken, the per-channel counts are
        of what was taken, and what was never taken before the listener closed is dropped."""
        if self.subscriber is None:
            return SubscriberStats()
        taken = self._taken  # first: never more than the subscriber's figures read next
        s = self.subscriber.stats
        delivered = taken - self._decode_errors
        dropped = s.dropped + self._abandoned
        decode_errors = s.decode_errors + self._decode_errors
        by_channel = dict(self._by_channel)
        if self._run:
            by_channel[self._run_channel] = by_channel.get(self._run_channel, 0) + self._run
        return dataclasses.replace(
            s,
            delivered=delivered,
            dropped=dropped,
            decode_errors=decode_errors,
            raw_payloads=s.raw_payloads + self._raw_payloads,
            pending=s.received - delivered - dropped - decode_errors - s.skipped,
            by_channel=by_channel,
            by_pattern=dict(self._by_pattern),
            by_link=dict(self._by_link),
        )

    @property
    def pending(self) -> int:
        """Messages read and not yet taken by the loop."""
        return self.stats.pending

    def close(self) -> None:
        """Unsubscribe (stop the subscriber and join its threads). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake()  # a loop waiting in __anext__ wakes up and ends the iteration
        sub = self.subscriber if self.subscriber is not None else self._pending
        if sub is not None:
            sub.stop()  # (also one still subscribing: its start then fails and ends)
        if self.subscriber is not None:
            # Handed to the loop and never taken: lost to the user, so counted as dropped.
            rest = len(self._batch) - self._index
            self._index = len(self._batch)  # nothing more is taken
            self._handed -= rest
            self._abandoned = rest

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
