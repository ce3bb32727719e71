"""Messages per second per channel over the last minute, from counters sampled each tick.

The dispatcher already counts messages per channel (``SubscriberStats.by_channel``); the view
samples those counters a few times a second and keeps one bucket per second, so the cost is
proportional to the number of channels, never to the message rate.
"""

from __future__ import annotations

import time
from collections import deque


class RateHistory:
    """Per-second message counts per channel for the last ``window`` seconds."""

    def __init__(self, window: int = 60) -> None:
        self.window = window
        self._last: dict[str, int] = {}
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()
        self.total = 0

    def sample(self, counts: dict[str, int], now: float | None = None) -> None:
        """Record the counters' growth since the previous sample."""
        now = time.time() if now is None else now
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, {}))
            while self._buckets and self._buckets[0][0] <= second - self.window:
                self._buckets.popleft()
        bucket = self._buckets[-1][1]
        last = self._last
        for channel, count in counts.items():
            delta = count - last.get(channel, 0)
            if delta < 0:  # the counters were cleared: everything since counts as new
                delta = count
            if delta:
                bucket[channel] = bucket.get(channel, 0) + delta
                self.total += delta
        self._last = dict(counts)

    def reset(self) -> None:
        self._buckets.clear()
        self._last = {}
        self.total = 0

    def series(
        self, now: float | None = None, top: int = 6
    ) -> tuple[list[int], dict[str, list[int]]]:
        """``(seconds, {channel: counts per second})`` for the last ``window`` complete
        seconds; the ``top`` busiest channels by name, the rest summed under ``"(other)"``."""
        now = time.time() if now is None else now
        end = int(now)  # the current second is still filling: show up to the previous one
        seconds = list(range(end - self.window, end))
        index = {s: i for i, s in enumerate(seconds)}
        totals: dict[str, int] = {}
        for second, bucket in self._buckets:
            if second in index:
                for channel, n in bucket.items():
                    totals[channel] = totals.get(channel, 0) + n
        busiest = sorted(totals, key=lambda c: (-totals[c], str(c)))
        shown = busiest[:top]
        rest = set(busiest[top:])
        out: dict[str, list[int]] = {str(c): [0] * len(seconds) for c in shown}
        if rest:
            out["(other)"] = [0] * len(seconds)
        for second, bucket in self._buckets:
            i = index.get(second)
            if i is None:
                continue
            for channel, n in bucket.items():
                key = "(other)" if channel in rest else str(channel)
                if key in out:
                    out[key][i] += n
        return seconds, out

    def recent(self, seconds: int = 10, now: float | None = None) -> dict[str, float]:
        """Average messages per second per channel over the last ``seconds`` complete seconds."""
        now = time.time() if now is None else now
        end = int(now)
        totals: dict[str, float] = {}
        for second, bucket in self._buckets:
            if end - seconds <= second < end:
                for channel, n in bucket.items():
                    totals[str(channel)] = totals.get(str(channel), 0) + n
        return {c: n / seconds for c, n in totals.items()}
