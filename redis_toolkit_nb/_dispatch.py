"""The dispatcher: a bounded queue between the reader and the user's handler.

The reader thread only reads and parses; it hands batches of parsed messages to ``put()``
and never waits for the handler (except under the ``"block"`` policy, by choice). The
dispatcher thread decodes each payload, keeps it in the buffer, counts it per channel and
calls the handler. Order is preserved: one thread, first in first out.

Once ``stop()`` has returned, or was called from inside the handler, no user callback is
called again: every call is preceded by a check of ``_halted``, and ``stop()`` returns only
when the thread is past such a check (see ``_halt``). What was not delivered is counted in
``dropped``. A handler that raises ``SystemExit`` or ``KeyboardInterrupt`` (any exception
that is not an ``Exception``) stops the subscriber visibly: counted as a handler error,
logged, ``last_error`` set and ``running`` False (``on_fatal``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from . import _codec as codec
from ._buffer import MessageBuffer
from ._options import RedisOptions
from ._ratelimit import RateLimitedLog

logger = logging.getLogger("redis_toolkit_nb")

#: ``handler(channel, data)``: the channel is ``str`` (``bytes`` only for a non-UTF-8 name).
Handler = Callable[[Any, Any], object]
#: ``(time, channel, pattern, data, size)``, as kept in the buffer (see ``Message``).
Record = tuple[float, Any, Any, Any, int]
# Of hiredis replies: [b"message", ch, payload] (or b"smessage", a sharded channel's: the same
# shape) or [b"pmessage", pat, ch, payload].
Batch = list

# Names are decoded once and remembered; the cache is reset if it ever grows this large.
_NAME_CACHE_LIMIT = 10_000
# Seconds stop() waits, after the deadline, to see the thread past a halt check.
_HALT_GRACE = 1.0


def remember_name(names: dict[bytes, str | bytes], raw: bytes) -> str | bytes:
    """A channel or pattern name as delivered (``str``; ``bytes`` only when not UTF-8, exactly
    as published), remembered in ``names`` (reset if it ever grows past its limit)."""
    try:
        name: str | bytes = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw
    if len(names) >= _NAME_CACHE_LIMIT:
        names.clear()
    names[raw] = name
    return name


class HandlerFailure(tuple):
    """(time, channel, data, exception, formatted traceback) of a handler that raised."""

    __slots__ = ()


class Dispatcher:
    """Runs the handler for every message, in order, on its own thread."""

    def __init__(
        self,
        *,
        handler: Handler | None,
        buffer: MessageBuffer | None,
        options: RedisOptions,
        name: str,
        on_message: Callable[[Record], object] | None = None,
        observe: Iterable[Callable[[list[Record], Any], object]] = (),
        awaiting: Callable[[], bool] = lambda: False,
        on_fatal: Callable[[BaseException], Any] = lambda exc: None,
        pull: Callable[[Callable[[], int]], tuple[Batch, float] | None] | None = None,
        external: Callable[[], object] | None = None,
    ) -> None:
        self._handler = handler
        #: With ``external`` there is no dispatcher thread: a consumer on its own thread
        #: takes the batches undecoded (``take()``), and ``external()`` is called when new
        #: ones may be waiting while it sleeps (``aio`` ``listen()``: its event loop decodes).
        self._external = external
        self._awaiting = awaiting
        self._on_fatal = on_fatal
        #: Parses the next replies straight from the reader's byte pump, unless batches are
        #: queued (``pull(len_of_queue)``): what is delivered is parsed right before, in the
        #: cache, and few parsed messages are ever alive at once (see ``_reader.pull``).
        self._pull = pull
        #: Bumped by ``wake()`` whenever the reader has new bytes.
        self._data = 0
        self._on_message = on_message
        #: Trackers (sequence, schema): each sees every batch's delivered records once the
        #: batch is done, and its one channel (None if several). They only observe (they
        #: are not user callbacks).
        self._observe = list(observe)
        self._buffer = buffer
        self._mode = options.decode
        self._decoder = codec.Decoder(options.decode, options.legacy_envelopes)
        self._max = options.queue_size
        self._policy = options.overflow
        self._preview = options.max_log_size
        self._batches: deque[tuple[float, Batch]] = deque()
        self._cv = threading.Condition(threading.Lock())
        self._idle = True
        self._stopping = False
        self._closed = False
        #: No user callback is called once this is True.
        self._halted = False
        #: The exception (not an ``Exception``) a handler raised that stopped the subscriber.
        self.fatal: BaseException | None = None
        self._names: dict[bytes, str | bytes] = {}
        self.paused = False
        #: Messages handed over by the reader (every one ends in exactly one other counter).
        self.received = 0
        self.pending = 0
        #: Messages of the batch the dispatcher is working on right now.
        self.in_progress = 0
        self.delivered = 0
        self.dropped = 0
        self.skipped = 0
        self.handler_errors = 0
        self.decode_errors = 0
        self.raw_payloads = 0
        self.by_channel: dict[Any, int] = {}
        self.by_pattern: dict[Any, int] = {}
        self.by_link: dict[tuple[Any, Any], int] = {}
        #: Recent handler failures, newest last (the notebook log shows them).
        self.failures: deque[HandlerFailure] = deque(maxlen=100)
        self._drop_log = RateLimitedLog(logger, logging.WARNING, period=5.0)
        self._error_log = RateLimitedLog(logger, logging.ERROR, period=10.0, burst=5)
        self._thread = threading.Thread(target=self._run, name=f"{name}-dispatch", daemon=True)

    # ---- reader side -----------------------------------------------------------------------
    def start(self) -> None:
        if self._external is None:
            self._thread.start()

    def _signal(self) -> None:
        """Something to take: wake the dispatcher thread, or the external consumer, if it
        sleeps (the condition's lock held)."""
        if self._idle:
            if self._external is None:
                self._cv.notify()
            else:
                self._idle = False
                self._external()

    def put(self, batch: Batch, received_at: float, force: bool = False) -> None:
        """Queue a batch; apply the overflow policy when the queue is full, unless ``force``
        (the reader parsed ahead to find a subscription's confirmation: these messages are
        queued beyond ``queue_size`` rather than dropped)."""
        n = len(batch)
        with self._cv:
            self.received += n
            if self._closed:
                # A reader that outlived stop() (its join timed out): counted, not queued.
                self.dropped += n
                return
            room = self._max - self.pending
            if n > room and not force:
                if self._policy == "block":
                    # A confirmation awaited behind this batch lets it in (see ``force``).
                    while (
                        self._max - self.pending < n
                        and self.pending
                        and not self._stopping
                        and not self._awaiting()
                    ):
                        self._cv.wait(0.1)
                elif self._policy == "drop_newest":
                    self._drop(n - max(room, 0), "newest")
                    batch = batch[: max(room, 0)]
                    if not batch:
                        return
                else:
                    self._drop_oldest(n - room)
                    if n > self._max:
                        batch = batch[n - self._max :]
            self._batches.append((received_at, batch))
            self.pending += len(batch)
            self._signal()

    def wake(self) -> None:
        """New bytes wait in the reader's pump: pull them (called by the reader)."""
        with self._cv:
            self._data += 1
            self._signal()

    # ---- an external consumer's side ---------------------------------------------------------
    def take(self) -> tuple[Batch, float] | None:
        """The next batch of replies, undecoded, for the external consumer (queued batches
        first, then parsed now from the reader's pump), counted as delivered; None if nothing
        complete waits. Never blocks."""
        cv = self._cv
        with cv:
            if self._halted or self._closed:
                return None
            if self._batches:
                received_at, batch = self._batches.popleft()
                self.pending -= len(batch)
                self.delivered += len(batch)
                if self._policy == "block":
                    cv.notify_all()
                return batch, received_at
            stopping = self._stopping
        if self._pull is None or stopping:
            return None
        got = self._pull(self._batches.__len__)
        if got is not None:
            with cv:
                self.received += len(got[0])
                self.delivered += len(got[0])
        return got

    def sleep(self) -> None:
        """The external consumer is about to wait: ``external()`` is called at the next
        batch or bytes (look once more with ``take()`` after this, then wait)."""
        with self._cv:
            self._idle = True

    def room(self) -> int:
        """How many more messages the queue takes before the overflow policy applies."""
        return max(0, self._max - self.pending)

    def counts(self) -> tuple[int, int, int, int, int, int]:
        """(received, delivered, dropped, decode_errors, skipped, pending), consistent with
        each other: ``received`` is the sum of the other five."""
        with self._cv:
            return (
                self.received,
                self.delivered,
                self.dropped,
                self.decode_errors,
                self.skipped,
                self.pending + self.in_progress,
            )

    def _drop_oldest(self, excess: int) -> None:
        dropped = 0
        while excess > 0 and self._batches:
            t, oldest = self._batches[0]
            if len(oldest) <= excess:
                self._batches.popleft()
                cut = len(oldest)
            else:
                cut = excess
                self._batches[0] = (t, oldest[cut:])
            excess -= cut
            dropped += cut
        self.pending -= dropped
        self._drop(dropped + max(excess, 0), "oldest")

    def _drop(self, count: int, which: str) -> None:
        self.dropped += count
        self._drop_log.emit(
            "subscriber %s: handler is %s messages behind; dropped the %s %d (%d in all) "
            "(RedisOptions.overflow=%r)",
            self._thread.name,
            self._max,
            which,
            count,
            self.dropped,
            self._policy,
        )

    # ---- control ---------------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Accept no more waiting (a reader blocked under "block" lets go) and pull nothing
        more; what is queued is still delivered, until ``stop()``'s deadline."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued for up to ``timeout`` seconds, then stop: no user callback is
        called after this returns. True if the thread ended (False: a handler was still
        running; it is not called again once it returns)."""
        self.begin_stop()
        own = self._thread is threading.current_thread()
        if own:
            # stop() from inside the handler (cleanup() in a handler): nothing more is called;
            # this thread ends by itself once the handler returns.
            self._halted = True
        elif self._thread.is_alive():
            self._thread.join(timeout)
            self._halt()
        with self._cv:
            self._closed = True
            left = self.pending
            if left:
                self._batches.clear()
                self.pending = 0
                self.dropped += left
                logger.warning(
                    "subscriber %s stopped with %d messages undelivered (counted as dropped)",
                    self._thread.name,
                    left,
                )
        return own or not self._thread.is_alive()

    def _halt(self) -> None:
        """Forbid further callbacks, and return only once the thread cannot be between its
        last check of ``_halted`` and the call that follows: it has ended, or it is seen
        anywhere but in ``_process`` itself (in a callback, or a helper that comes before the
        next check). No per-message cost: the thread's frame is looked at from here."""
        self._halted = True
        with self._cv:
            self._cv.notify_all()
        deadline = time.monotonic() + _HALT_GRACE
        ident = self._thread.ident
        unsafe = Dispatcher._process.__code__
        while self._thread.is_alive() and time.monotonic() < deadline:
            frame = sys._current_frames().get(ident) if ident is not None else None
            if frame is None or frame.f_code is not unsafe:
                return
            time.sleep(0.001)

    def clear_counts(self) -> None:
        """Reset the per-channel and per-pattern counts and the recent failures."""
        self.by_channel.clear()
        self.by_pattern.clear()
        self.by_link.clear()
        self.failures.clear()

    # ---- dispatcher thread -----------------------------------------------------------------
    def _run(self) -> None:
        cv = self._cv
        batches = self._batches
        pull = self._pull
        queued = batches.__len__
        while True:
            batch: Batch | None = None
            with cv:
                if self._halted:
                    return
                if batches:
                    received_at, batch = batches.popleft()
                    self.pending -= len(batch)
                    self.in_progress = len(batch)
                    if self._policy == "block":
                        cv.notify_all()
                seen = self._data
                stopping = self._stopping
            if batch is None and pull is not None and not stopping:
                got = pull(queued)
                if got is not None:
                    batch, received_at = got
                    with cv:
                        self.received += len(batch)
                        self.in_progress = len(batch)
            if batch is None:
                with cv:
                    if batches or self._data != seen:
                        continue
                    if self._stopping:
                        return
                    self._idle = True
                    cv.wait(0.5)
                    self._idle = False
                continue
            if self.paused:
                delivered, failed, skipped = 0, 0, len(batch)
            else:
                delivered, failed = self._process(batch, received_at)
                skipped = 0
            with cv:
                # Settled together, so a stats snapshot never sees a batch twice or not at all.
                # What a stop or a fatal handler error left unprocessed is dropped.
                self.delivered += delivered
                self.decode_errors += failed
                self.skipped += skipped
                self.dropped += len(batch) - delivered - failed - skipped
                self.in_progress = 0
            if self.fatal is not None:
                self._on_fatal(self.fatal)
                return

    def _process(self, batch: Batch, t: float) -> tuple[int, int]:
        """Decode, buffer and hand every message to the handler; (delivered, decode errors).
        Stops early once halted: the rest of the batch is neither."""
        names = self._names
        mode = self._mode
        loads = codec._loads
        decode_error = codec.JSONDecodeError
        fallback = self._decoder.fallback
        unwrap = self._decoder.unwrap if self._decoder.legacy else None
        buffer_append = self._buffer.append if self._buffer is not None else None
        handler = self._handler
        on_message = self._on_message
        # This batch's counts per channel, added to ``by_channel`` once the trackers have seen
        # the batch: a count read elsewhere (``expect``) never runs ahead of the trackers.
        by_channel: dict[Any, int] = {}
        raw = mode == "raw"
        observers = self._observe
        records: list[Record] = []
        records_append = records.append if observers else None
        keep = buffer_append is not None or on_message is not None or bool(observers)
        delivered = 0
        failed = 0
        broke = False
        # Messages per channel are counted in runs (a batch is mostly one channel): one
        # identity test per message instead of a dict update.
        run_channel: Any = None
        run = 0
        for reply in batch:
            if len(reply) == 3:
                _, cb, payload = reply
                pattern = None
            else:
                _, pb, cb, payload = reply
                pattern = names.get(pb)
                if pattern is None:
                    pattern = self._name(pb)
                self.by_pattern[pattern] = self.by_pattern.get(pattern, 0) + 1
            channel = names.get(cb)
            if channel is None:
                channel = self._name(cb)
            if pattern is not None:
                link = (pattern, channel)
                self.by_link[link] = self.by_link.get(link, 0) + 1
            if raw:
                data = payload
            else:
                try:
                    data = loads(payload)
                except decode_error:
                    # The codec's rules for what orjson refused (the same as codec.decode).
                    try:
                        data, as_text = fallback(payload)
                    except codec.NotJSON:
                        failed += 1
                        self._decode_failed(channel, payload, self.decode_errors + failed)
                        continue
                    self.raw_payloads += as_text
                else:
                    # A redis-toolkit 0.4.0 envelope? One class test and one key lookup per
                    # message; only a dict with a "__type__" key is examined further.
                    if unwrap is not None and data.__class__ is dict and "__type__" in data:
                        data = unwrap(data, payload)
            # Every user callback follows a check, with no other call in between (_halt).
            if self._halted:
                break
            delivered += 1
            if channel is not run_channel:
                if run:
                    by_channel[run_channel] = by_channel.get(run_channel, 0) + run
                run_channel, run = channel, 0
            run += 1
            if keep:
                record = (t, channel, pattern, data, len(payload))
                if buffer_append is not None:
                    buffer_append(record)
                if records_append is not None:
                    records_append(record)
                if on_message is not None:
                    broke = False
                    try:
                        on_message(record)
                    except Exception as exc:  # noqa: BLE001 - isolate the user's code
                        broke = True
                        self._handler_failed(t, channel, data, exc)
                    except BaseException as exc:  # SystemExit, KeyboardInterrupt: stop
                        self._handler_failed(t, channel, data, exc)
                        self._stop_on(exc)
                        break
                    if self._halted:
                        break
            if handler is not None:
                try:
                    handler(channel, data)
                except Exception as exc:  # noqa: BLE001 - isolate the user's code
                    # One message counts once, even if both of its callbacks raised.
                    self._handler_failed(t, channel, data, exc, count=not broke)
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: stop
                    self._handler_failed(t, channel, data, exc, count=not broke)
                    self._stop_on(exc)
                    break
        if run:
            by_channel[run_channel] = by_channel.get(run_channel, 0) + run
        if records:
            # The batch's one channel, if it has one (the last run is the whole batch).
            one = run_channel if run == len(records) else None
            for observe in observers:
                try:
                    observe(records, one)
                except Exception as exc:  # noqa: BLE001 - a tracker's bug must not stop delivery
                    self._error_log.emit("a tracker failed on %d messages: %r", len(records), exc)
        totals = self.by_channel
        for channel, count in by_channel.items():
            totals[channel] = totals.get(channel, 0) + count
        return delivered, failed

    def _stop_on(self, exc: BaseException) -> None:
        """A handler raised an exception that is not an ``Exception``: deliver nothing more
        and let the subscriber stop itself (``on_fatal``, once this batch is settled)."""
        self._halted = True
        self.fatal = exc

    def _name(self, raw: bytes) -> str | bytes:
        return remember_name(self._names, raw)

    def _handler_failed(
        self, t: float, channel: Any, data: Any, exc: BaseException, count: bool = True
    ) -> None:
        if count:
            self.handler_errors += 1
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.failures.append(HandlerFailure((t, channel, data, exc, tb)))
        self._error_log.emit(
            "message handler raised on channel %r (%d handler errors so far; the subscriber "
            "%s):\n%s",
            channel,
            self.handler_errors,
            "keeps running" if isinstance(exc, Exception) else "stops",
            tb.rstrip(),
        )

    def _decode_failed(self, channel: Any, payload: bytes, so_far: int) -> None:
        preview = payload[: self._preview]
        self._error_log.emit(
            "payload on channel %r is not JSON (decode='json'; %d decode errors so far): %r",
            channel,
            so_far,
            preview,
        )
