"""Latency: receive time minus a publish stamp carried in the payload, per channel.

A publisher that stamps its messages (``publisher(..., stamp="ts")`` puts ``time.time()`` in
a copy of a dict payload) lets a subscriber measure how long each took to arrive.
``LatencyTracker.observe_batch`` runs on the dispatcher thread for every batch of delivered
messages, only when ``RedisOptions.latency_field`` is set (with the option off nothing is
added to the per-message path); a batch of one channel stamped in seconds is measured by
columns, anything else by a few dict lookups and an append per message. Percentiles are
computed when asked (``summary()``), over the newest ``keep`` samples of each channel;
``count``, ``max`` and ``negative`` cover every stamped message since the start.

The stamp's unit is told by its magnitude (as of today's epoch): below 1e11 seconds, below
1e14 milliseconds, below 1e17 microseconds, else nanoseconds (``time.time_ns()``). Only
numbers are stamps: an ISO-8601 string is not parsed (it would cost a parse per message and
a guess at naive times) and counts as *unstamped*, like a payload without the field. A stamp
later than its receipt (clocks of two hosts apart) gives a negative latency: it is kept as
is, not clamped, and counted in ``negative``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from operator import itemgetter, sub
from typing import Any, NamedTuple

from ._replay import _quantile
from .exceptions import SerializationError

#: Samples kept per channel for the percentiles (the newest).
KEEP = 10_000
_TIME = itemgetter(0)
_DATA = itemgetter(3)


class LatencyRow(NamedTuple):
    """One channel's latency, in seconds: ``messages`` stamped and ``max`` since the
    start, ``p50``/``p99`` over the newest ``keep`` (nearest rank), ``negative``: messages
    stamped after they arrived (the publisher's clock ahead of this one)."""

    channel: Any
    messages: int
    p50: float
    p99: float
    max: float
    negative: int


class _Channel:
    __slots__ = ("samples", "count", "max", "negative", "cached")

    def __init__(self, keep: int | None) -> None:
        self.samples: deque[float] = deque(maxlen=keep)
        self.count = 0
        self.max = float("-inf")
        self.negative = 0
        self.cached: tuple[int, float, float] | None = None  # (count, p50, p99)


def _seconds(stamp: float) -> float:
    """A stamp of microseconds or nanoseconds in seconds (told by its magnitude)."""
    return stamp / 1e6 if stamp < 1e17 else stamp / 1e9


class LatencyTracker:
    """Measures ``time - field`` (a dotted path into dict payloads: ``"ts"``, ``"meta.ts"``)
    per channel; ``unstamped`` counts messages without a numeric field."""

    def __init__(self, field: str, keep: int | None = KEEP) -> None:
        self.field = field
        self.keep = keep
        self._path = tuple(field.split("."))
        self._key = field if len(self._path) == 1 else None
        self._getter = itemgetter(field) if self._key is not None else None
        self._channels: dict[Any, _Channel] = {}
        self.unstamped = 0

    def _stamp(self, data: Any) -> Any:
        for key in self._path:
            if data.__class__ is not dict:
                return None
            data = data.get(key)
        return data

    def observe(self, record: tuple[float, Any, Any, Any, int]) -> None:
        """Measure one delivered message ``(time, channel, pattern, data, size)``."""
        t, channel, _, data, _ = record
        key = self._key
        stamp: Any
        if key is not None:  # one key, the usual case: no loop, no call
            stamp = data.get(key) if data.__class__ is dict else None
        else:
            stamp = self._stamp(data)
        kind = stamp.__class__
        if kind is not float and kind is not int:  # bool is neither: not a stamp
            self.unstamped += 1
            return
        if stamp > 1e11:  # not seconds: milliseconds (inline, the common other case) or finer
            stamp = stamp / 1e3 if stamp < 1e14 else _seconds(stamp)
        late = t - stamp
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(self.keep)
        state.samples.append(late)
        state.count += 1
        if late > state.max:
            state.max = late
        if late < 0:
            state.negative += 1

    def observe_batch(
        self, records: list[tuple[float, Any, Any, Any, int]], channel: Any = None
    ) -> None:
        """``observe`` every record of a batch, in order (``channel``: the one channel of
        them all, given by the dispatcher, whose batches share one time). A batch of one
        channel stamped in seconds is measured by columns, with no loop in Python; anything
        else message by message."""
        getter = self._getter
        if getter is not None and channel is not None and records:
            try:
                late = list(map(sub, map(_TIME, records), map(getter, map(_DATA, records))))
            except (KeyError, TypeError):  # a payload without it, not a dict, not a number
                late = []
            if late:
                t = records[0][0]  # the batch's records share one time
                low, top = min(late), max(late)
                # Every stamp a number in seconds: none above 1e11 (the lowest latency says),
                # and none a bool (True - or False - would give a latency of about t: a
                # stamp of 0 to 2, told apart message by message).
                if low >= t - 1e11 and top < t - 2:
                    state = self._channels.get(channel)
                    if state is None:
                        state = self._channels[channel] = _Channel(self.keep)
                    state.samples.extend(late)
                    state.count += len(late)
                    if top > state.max:
                        state.max = top
                    if low < 0:
                        state.negative += sum(1 for x in late if x < 0)
                    return
        for record in records:
            self.observe(record)

    @property
    def channels(self) -> int:
        """Channels with a stamped message so far."""
        return len(self._channels)

    def summary(self, top: int | None = None) -> list[LatencyRow]:
        """One row per channel, in order of channel name; ``top``: only the ``top`` channels
        with the most stamped messages (a live view's cost stays flat with many channels).
        Each channel's percentiles are sorted again only when it had new messages since."""
        items = list(self._channels.items())  # one step: the dispatcher may add a channel
        if top is not None:
            items = sorted(items, key=lambda kv: -kv[1].count)[:top]
        rows = []
        for channel, state in sorted(items, key=lambda kv: str(kv[0])):
            count = state.count
            cached = state.cached
            if cached is None or cached[0] != count:
                # copy(): one C call, safe while the dispatcher appends.
                ordered = sorted(state.samples.copy())
                p50, p99 = _quantile(ordered, 0.5), _quantile(ordered, 0.99)
                cached = state.cached = (count, p50 or 0.0, p99 or 0.0)
            rows.append(LatencyRow(channel, count, cached[1], cached[2], state.max, state.negative))
        return rows

    def __repr__(self) -> str:
        rows = self.summary()
        return (
            f"<LatencyTracker {self.field!r}: {sum(r.messages for r in rows)} stamped on "
            f"{len(rows)} channel(s), unstamped {self.unstamped}>"
        )


def latency_table(capture: Any, field: str | None = None) -> Any:
    """Latency per channel as a DataFrame: ``channel``, ``count``, ``p50_ms``, ``p99_ms``,
    ``max_ms`` (milliseconds, receive time minus the stamp) and ``negative`` (stamped after
    they arrived: clocks apart).

    ``capture``: a DataFrame like ``feed.df`` or ``read_capture()``'s (its ``time`` column
    and the ``field`` of its ``data`` dicts, a dotted path), or records ``(time, channel,
    pattern, data, size)``; or a ``LatencyTracker`` (``subscriber.latency``: what
    ``feed.latency()`` shows). The stamp's unit is told by its magnitude (seconds,
    milliseconds, microseconds or nanoseconds since the epoch), as the live tracker does.
    """
    import pandas as pd

    if isinstance(capture, LatencyTracker):
        tracker = capture
    else:
        if not field:
            raise ValueError("latency_table: name the stamp's field (e.g. 'ts') for a capture")
        tracker = LatencyTracker(field, keep=None)
        observe = tracker.observe
        for record in _records(capture, pd):
            observe(record)
    rows = tracker.summary()
    ms = 1000.0
    return pd.DataFrame(
        {
            "channel": pd.Series([r.channel for r in rows], dtype=object),
            "count": pd.Series([r.messages for r in rows], dtype="int64"),
            "p50_ms": pd.Series([r.p50 * ms for r in rows], dtype="float64"),
            "p99_ms": pd.Series([r.p99 * ms for r in rows], dtype="float64"),
            "max_ms": pd.Series([r.max * ms for r in rows], dtype="float64"),
            "negative": pd.Series([r.negative for r in rows], dtype="int64"),
        }
    )


def _records(capture: Any, pd: Any) -> Iterable[tuple[float, Any, Any, Any, int]]:
    if isinstance(capture, pd.DataFrame):
        times = capture["time"]
        if pd.api.types.is_datetime64_any_dtype(times):
            # Epoch seconds, as the live tracker saw them (time.time()).
            times = times.dt.tz_localize("UTC") if times.dt.tz is None else times
            seconds = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        else:
            seconds = times.astype("float64")
        n = len(capture)
        return zip(
            seconds.tolist(), capture["channel"], [None] * n, capture["data"], [0] * n, strict=True
        )
    return capture


# ---- stamping on publish -------------------------------------------------------------------


def _stamp_path(field: Any) -> list[str]:
    if not isinstance(field, str) or not all(field.split(".")):
        raise ValueError(f"stamp={field!r}: name a field (a dotted path such as 'ts' or 'meta.ts')")
    return field.split(".")


def stamped(data: Any, field: str) -> dict[Any, Any]:
    """A copy of the dict ``data`` with ``field`` (a dotted path; missing dicts on the way are
    created) set to ``time.time()``; the caller's dicts are never changed. Anything but a
    dict raises ``SerializationError``."""
    path = _stamp_path(field)
    if not isinstance(data, dict):
        raise SerializationError(f"stamp={field!r} needs a dict payload, not {type(data).__name__}")
    out = dict(data)
    inner = out
    for key in path[:-1]:
        child = inner.get(key)
        if child is None:
            child = {}
        elif isinstance(child, dict):
            child = dict(child)
        else:
            raise SerializationError(
                f"stamp={field!r} needs a dict at {key!r}, not {type(child).__name__}"
            )
        inner[key] = child
        inner = child
    inner[path[-1]] = time.time()
    return out


class Stamping:
    """``messages`` stamped one by one as ``publish_many`` takes them (so each stamp is close
    to its send); stops at the first value that cannot be stamped, which ``check(published)``
    then raises, once everything before it was published."""

    def __init__(self, messages: Iterable[Any], field: str) -> None:
        _stamp_path(field)
        self._messages = messages
        self._field = field
        self._refused: SerializationError | None = None

    def __iter__(self) -> Iterator[dict[Any, Any]]:
        field = self._field
        for value in self._messages:
            try:
                yield stamped(value, field)
            except SerializationError as exc:
                self._refused = exc
                return

    def check(self, published: int) -> None:
        if self._refused is not None:
            raise SerializationError(
                f"{self._refused} (message {published} of the batch, counting from 0; the "
                f"{published} before it were published)"
            )
