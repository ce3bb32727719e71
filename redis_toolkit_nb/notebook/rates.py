"""``Traffic``: messages per channel, counted as they are delivered and folded once per tick.

One definition of "now" for every view: the messages delivered in the last ``NOW_WINDOW``
seconds (measured over whole ticks, so at most one tick more), divided by that span. The
counters, the chart legend and ``%rtk subs`` all read it from here; it reads 0 one window
(plus a tick) after traffic stops.

Costs: the dispatcher thread adds one dict increment per message; a tick folds what arrived
since the previous one. Both are bounded by ``tracked`` (the distinct channels followed one by
one in the chart's window; further channels are counted under ``"(other)"``), never by the
number of distinct channels seen or by the message rate.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

#: Seconds that "now" covers.
NOW_WINDOW = 1.0
#: What the views call the channels not followed one by one.
OTHER = "(other)"


@dataclass(frozen=True)
class Rates:
    """What the traffic looked like at ``time`` (immutable: a view renders it as it is)."""

    time: float
    #: Messages per second delivered over the last ``window`` seconds.
    now: float
    window: float
    #: The busiest channels of the chart's window: (channel, messages per second now), busiest
    #: first; ``OTHER`` last when some traffic was not followed one by one.
    top: tuple[tuple[str, float], ...]
    #: Messages per second, per second, for the chart: {channel: counts}, ``seconds`` long,
    #: ending with the last complete second before ``time``.
    series: dict[str, list[int]]
    #: Channels seen in the chart's window, busiest first (at most ``tracked``).
    channels: tuple[str, ...]
    #: Messages delivered since the start (``Traffic.count`` calls).
    total: int


class Traffic:
    """Per-channel message counts of one subscription, for the last ``window`` seconds."""

    def __init__(self, window: int = 60, tracked: int = 1000) -> None:
        self.window = window
        self.tracked = tracked
        self._lock = threading.Lock()
        self._acc: dict[Any, int] = {}
        self._acc_other = 0
        self.total = 0
        self._last: float | None = None  # when the last tick ended
        # (start, end, counts, other) of the recent ticks: "now" is summed over them.
        self._ticks: deque[tuple[float, float, dict[Any, int], int]] = deque()
        # (second, counts, other) per second of the chart's window.
        self._seconds: deque[tuple[int, dict[Any, int], int]] = deque()
        self._in_window: dict[Any, int] = {}  # per channel, over ``_seconds``

    def count(self, channel: Any) -> None:
        """One delivered message on ``channel`` (called by the dispatcher thread)."""
        with self._lock:
            self.total += 1
            acc = self._acc
            n = acc.get(channel)
            if n is not None:
                acc[channel] = n + 1
            elif len(acc) < self.tracked:
                acc[channel] = 1
            else:
                self._acc_other += 1

    def reset(self) -> None:
        """Forget the per-channel history (``clear()``); ``total`` stays."""
        with self._lock:
            self._acc, self._acc_other = {}, 0
            self._ticks.clear()
            self._seconds.clear()
            self._in_window.clear()

    def rates(self, now: float | None = None, top: int = 6, final: bool = False) -> Rates:
        """Fold what arrived since the last call into the history and describe it at ``now``
        (``final``: nothing more will come, a stopped subscription: the chart then ends with
        the second still filling instead of before it)."""
        now = time.time() if now is None else now
        with self._lock:
            self._fold(now)
            return self._describe(now, top, final)

    # ---- under the lock ---------------------------------------------------------------------
    def _fold(self, now: float) -> None:
        acc, other = self._acc, self._acc_other
        self._acc, self._acc_other = {}, 0
        start = now if self._last is None else min(self._last, now)
        self._ticks.append((start, now, acc, other))
        self._last = now
        while len(self._ticks) > 1 and self._ticks[1][0] <= now - NOW_WINDOW:
            self._ticks.popleft()
        second = int(now)
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append((second, {}, 0))
            while self._seconds and self._seconds[0][0] <= second - self.window - 1:
                self._expire(self._seconds.popleft())
        sec, bucket, bucket_other = self._seconds[-1]
        in_window = self._in_window
        for channel, n in acc.items():
            if channel in in_window or len(in_window) < self.tracked:
                in_window[channel] = in_window.get(channel, 0) + n
                bucket[channel] = bucket.get(channel, 0) + n
            else:
                other += n
        self._seconds[-1] = (sec, bucket, bucket_other + other)

    def _expire(self, entry: tuple[int, dict[Any, int], int]) -> None:
        in_window = self._in_window
        for channel, n in entry[1].items():
            left = in_window.get(channel, 0) - n
            if left > 0:
                in_window[channel] = left
            else:
                in_window.pop(channel, None)

    def _describe(self, now: float, top: int, final: bool = False) -> Rates:
        ticks = list(self._ticks)
        recent = [t for t in ticks if t[0] >= now - NOW_WINDOW - 1e-9] or ticks[-1:]
        span = max(now - recent[0][0], 1e-3) if recent else NOW_WINDOW
        now_total = sum(sum(t[2].values()) + t[3] for t in recent)
        # The current second is still filling: the chart ends before it, unless nothing more
        # will come (a stopped subscription keeps the messages of its last second).
        end = int(now) + 1 if final else int(now)
        first = end - self.window
        busiest = heapq.nlargest(top, self._in_window.items(), key=_count)
        shown = [c for c, _ in busiest]
        series: dict[str, list[int]] = {str(c): [0] * self.window for c in shown}
        other_series = [0] * self.window
        for second, bucket, other in self._seconds:
            i = second - first
            if not 0 <= i < self.window:
                continue
            rest = other + sum(bucket.values())
            for c in shown:
                n = bucket.get(c, 0)
                series[str(c)][i] += n
                rest -= n
            other_series[i] += rest
        now_by = {c: sum(t[2].get(c, 0) for t in recent) / span for c in shown}
        tops = [(str(c), now_by[c]) for c in shown]
        now_other = (now_total - sum(n * span for n in now_by.values())) / span
        if any(other_series) or now_other > 1e-9:
            series[OTHER] = other_series
            tops.append((OTHER, max(now_other, 0.0)))
        if not any(any(v) for v in series.values()):
            series = {}
        names = [c for c, _ in heapq.nlargest(200, self._in_window.items(), key=_count)]
        return Rates(
            time=now,
            now=now_total / span,
            window=NOW_WINDOW,
            top=tuple(tops),
            series=series,
            channels=tuple(str(c) for c in names),
            total=self.total,
        )


def _count(item: tuple[Any, int]) -> int:
    return item[1]
