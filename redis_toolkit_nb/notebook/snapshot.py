"""``Snapshot``: everything a view shows of one subscription, taken once per tick.

Views render a snapshot and nothing else, so the counters, the chart and ``%rtk subs`` can
never disagree, and a snapshot taken when the subscription stopped keeps showing what it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .. import SubscriberStats
from .rates import Rates

#: Channels whose latency a snapshot holds (the busiest; ``feed.latency()`` has every one).
LATENCY_SHOWN = 5


@dataclass(frozen=True)
class Snapshot:
    """One subscription at ``rates.time``."""

    name: str
    url: str
    #: "running", "paused" (the view is frozen, capturing goes on) or "stopped".
    state: str
    #: Whether incoming messages are being discarded on purpose ("Discard incoming").
    discarding: bool
    #: The subscriber's figures (``Subscriber.totals()``: no per-channel dicts).
    stats: SubscriberStats
    #: Subscribed channels and patterns (as they were when it stopped, once stopped).
    channels: tuple[str, ...]
    patterns: tuple[str, ...]
    rates: Rates
    #: Messages delivered per second since the start.
    avg: float
    #: Messages delivered since Pause (0 unless paused).
    new_since_pause: int
    #: When it was paused or stopped (None if not).
    paused_at: float | None
    stopped_at: float | None
    #: Recent handler errors (time, channel, data, exception, traceback) and print output.
    failures: tuple[tuple[float, Any, Any, BaseException, str], ...]
    prints: tuple[tuple[float, Any, str], ...]
    #: Subscribed sharded channels, and the nodes read from (``stats.nodes``; as they were
    #: just before it stopped, once stopped).
    sharded: tuple[str, ...] = ()
    nodes: dict[str, Any] = field(default_factory=dict)
    #: Channels seen moving to another node (``placement.Move``), oldest first.
    moves: tuple[Any, ...] = ()
    #: With ``--seq-field``: (gaps, messages missing, duplicates, reordered); else None.
    sequence: tuple[int, int, int, int] | None = None
    #: The latest reading of the connection's output buffer on the server (a core
    #: ``ServerBuffer``; None before the first one and once stopped).
    server_buffer: Any = None
    #: With ``--latency-field``: (channels measured, ((channel, count, p50, p99, max), ...) of
    #: the ``LATENCY_SHOWN`` busiest, seconds); else None.
    latency: tuple[int, tuple[tuple[Any, int, float, float, float], ...]] | None = None
    #: Schema drift: (changes so far, the newest ``SchemaEvent`` or None); None when off.
    schema: tuple[int, Any] | None = None

    def key(self) -> tuple[Any, ...]:
        """What the view depends on besides the rows: equal keys render identically."""
        s = self.stats
        r = self.rates
        return (
            self.state,
            self.discarding,
            s.received,
            s.delivered,
            s.dropped,
            s.handler_errors,
            s.decode_errors,
            s.skipped,
            s.reconnects,
            s.connected,
            s.last_error,
            self.channels,
            self.patterns,
            self.sharded,
            tuple(sorted(self.nodes.items())),
            s.moves,
            s.max_move_gap_s,
            len(self.moves),
            round(r.now, 1),
            f"{self.avg:.1f}",
            int(r.time) if r.series else None,  # the chart moves each second it has a line
            r.total,
            self.new_since_pause,
            len(self.failures),
            self.failures[-1][0] if self.failures else None,
            len(self.prints),
            self.prints[-1][0] if self.prints else None,
            self.sequence,
            self.schema,
            self.server_buffer and (self.server_buffer.level, self.server_buffer.text()),
            self.latency,
        )


def clock(t: float, tz: str = "UTC") -> str:
    """``HH:MM:SS.mmm`` of ``t`` in the time zone ``tz``."""
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%H:%M:%S.%f")[:-3]
