"""Replaying a capture: publish recorded messages again, in order, on their original schedule.

``replay_plan()`` turns a capture (a DataFrame like ``feed.df`` or ``read_capture()``'s, or
records ``(time, channel, pattern, data, size)``) into steps;
``replay()`` sends them. Neither imports pandas: a DataFrame is read through its columns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Values per pipelined write at ``speed=0`` (publish_many chunks them further).
_RUN = 5000
#: Longest single sleep (seconds), so an interrupt is seen promptly during a long pause.
_NAP = 0.2


class Step(NamedTuple):
    """One message of a replay: when (seconds after the start), from where, to where, what."""

    at: float
    channel: Any
    to: Any
    data: Any


@dataclass(frozen=True)
class ReplaySummary:
    """What ``RedisToolkit.replay()`` did.

    ``lag_p50``/``lag_p99``/``lag_max``: how late each message was sent against its schedule
    (the capture's gaps divided by ``speed``), in seconds; None at ``speed=0`` (no schedule).
    ``receivers``: the sum of PUBLISH replies (None at ``speed=0``: pipelined writes do not
    report them).
    """

    sent: int
    duration: float
    speed: float
    lag_p50: float | None
    lag_p99: float | None
    lag_max: float | None
    receivers: int | None
    #: Messages sent per target channel.
    channels: dict[Any, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        lag = ""
        if self.lag_p50 is not None:
            lag = (
                f", lag p50 {self.lag_p50 * 1000:.2f} ms, p99 {self.lag_p99 * 1000:.2f} ms, "  # type: ignore[operator]
                f"max {self.lag_max * 1000:.2f} ms"  # type: ignore[operator]
            )
        rx = f", {self.receivers} receptions" if self.receivers is not None else ""
        pace = f"speed {self.speed:g}x" if self.speed else "as fast as possible"
        return (
            f"replayed {self.sent} messages to {len(self.channels)} channel(s) in "
            f"{self.duration:.3f} s ({pace}{lag}{rx})"
        )


def _rows(frame: Any) -> Iterable[tuple[float, Any, Any]]:
    """(epoch seconds, channel, data) of every row of ``frame``, in order."""
    if hasattr(frame, "columns"):  # a DataFrame: pandas is loaded already
        missing = [c for c in ("time", "channel", "data") if c not in frame.columns]
        if missing:
            raise ValueError(
                f"replay: the frame has no {', '.join(missing)} column(s); pass feed.df or "
                "read_capture(path)"
            )
        import pandas as pd

        times = pd.to_datetime(frame["time"], utc=True)
        seconds = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return zip(seconds.tolist(), frame["channel"].tolist(), frame["data"].tolist(), strict=True)
    return ((float(r[0]), r[1], r[3]) for r in frame)


def _epoch(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def replay_plan(
    frame: Any,
    speed: float = 1.0,
    channel_map: Mapping[Any, Any] | None = None,
    prefix: str | None = None,
) -> list[Step]:
    """The steps of a replay (what ``RedisToolkit.replay`` sends, what ``%rtk_replay
    --dry-run`` shows), as ``Step(at, channel, to, data)``: each message's send time in
    seconds after the start (its gap from the first message divided by ``speed``; 0 for all
    at ``speed=0``), its captured channel, the channel it goes to (``channel_map``, then
    ``prefix`` prepended) and its data. A message recorded earlier than the one before it
    (merged captures) goes right after it.
    """
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed >= 0:
        raise ValueError(
            f"replay: speed must be a number >= 0 (0: as fast as possible), not {speed!r}"
        )
    mapping = dict(channel_map or {})
    steps: list[Step] = []
    first: float | None = None
    at = 0.0
    for when, channel, data in _rows(frame):
        when = _epoch(when)
        if first is None:
            first = when
        if speed:
            at = max(at, (when - first) / speed)
        to = mapping.get(channel, channel)
        if prefix:
            to = prefix.encode() + to if isinstance(to, bytes) else f"{prefix}{to}"
        steps.append(Step(at, channel, to, data))
    return steps


def replay(
    toolkit: Any,
    steps: list[Step],
    speed: float,
    progress: Callable[[int], object] | None = None,
) -> ReplaySummary:
    """Send ``steps`` (see ``replay_plan``) through ``toolkit``; ``progress(n)`` after each n sent.

    On its schedule, each message is published alone when due (the lag measured right
    after the call returns: what a subscriber sees); at ``speed=0``, each run of
    consecutive messages to one channel is pipelined with ``publish_many``.
    """
    channels: dict[Any, int] = {}
    start = time.monotonic()
    if not speed:
        k = 0
        while k < len(steps):
            to = steps[k].to
            end = k + 1
            while end < len(steps) and end - k < _RUN and steps[end].to == to:
                end += 1
            toolkit.publish_many(to, [s.data for s in steps[k:end]])
            channels[to] = channels.get(to, 0) + end - k
            if progress is not None:
                progress(end - k)
            k = end
        return ReplaySummary(
            len(steps), time.monotonic() - start, 0.0, None, None, None, None, channels
        )
    lags: list[float] = []
    receivers = 0
    publish = toolkit.publish
    for step in steps:
        while True:
            wait = start + step.at - time.monotonic()
            if wait <= 0:
                break
            time.sleep(min(wait, _NAP))
        receivers += publish(step.to, step.data)
        lags.append(time.monotonic() - start - step.at)
        channels[step.to] = channels.get(step.to, 0) + 1
        if progress is not None:
            progress(1)
    duration = time.monotonic() - start
    ordered = sorted(lags)
    return ReplaySummary(
        len(steps),
        duration,
        float(speed),
        _quantile(ordered, 0.5),
        _quantile(ordered, 0.99),
        ordered[-1] if ordered else None,
        receivers,
        channels,
    )


def _quantile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values (nearest rank), None if there are none."""
    if not ordered:
        return None
    # The smallest value with at least q of them at or below it: rank ceil(q * n), 1-based
    # (a tiny slack keeps 0.99 * 100 from rounding up past 99).
    rank = math.ceil(q * len(ordered) - 1e-9)
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]
