"""What the dashboard's Flows and Channels tabs show: traffic per link, as rates.

A *link* is one subscribed channel or pattern of one subscription (the source) carrying a
channel's messages. Redis delivers a message once per matching subscription, so a channel's
*deliveries* add up over its links while its *distinct messages* are what any one link
carries (the links' mean): a channel subscribed by two subscriptions at 40 msg/s is 40
distinct msg/s and 80 deliveries/s.

Figures come from each subscription's ``Traffic`` (the busiest channels of the last minute,
the rest under ``(other)``) and ``Subscriber.totals()``: work per tick is bounded by the
channels drawn, never by the number of distinct channels seen. A channel reached by several
sources of one subscription (its name and a matching pattern) is split evenly between them,
which is exact while those subscriptions stay unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from .rates import NOW_WINDOW, OTHER

if TYPE_CHECKING:
    from .subscription import Subscription

#: Links drawn one by one; the rest are summed into one "others" link.
MAX_LINKS = 20
#: Channels each subscription reports one by one (the rest come as ``(other)``).
PER_SUBSCRIPTION = 20
OTHER_SOURCE = "(other links)"
OTHER_CHANNELS = "(other channels)"


class FlowLink(NamedTuple):
    """One band of the Flows chart."""

    source: str  #: "subscription: channel-or-pattern"
    channel: str
    rate: float  #: deliveries per second now (over ``NOW_WINDOW``)
    recent: float  #: deliveries in the chart's window (``Flows.span`` seconds)


@dataclass(frozen=True)
class Flows:
    """Every link of every running subscription at one tick."""

    links: tuple[FlowLink, ...]
    #: Traffic not attributed to a link one by one (channels beyond each subscription's
    #: busiest, counted under ``(other)``).
    unattributed: FlowLink | None
    #: Seconds "now" covers, and seconds the ``recent`` totals cover.
    window: float
    span: int
    #: Deliveries since each subscription started: {subscription name: delivered}.
    delivered: dict[str, int]

    def channel_rates(self) -> dict[str, tuple[float, float, int]]:
        """{channel: (distinct messages/s, deliveries/s, links)}: every link of a channel
        carries each of its messages, so the distinct rate is the links' mean (each
        subscription measures "now" over its own last ticks: close, not equal)."""
        sums: dict[str, tuple[float, int]] = {}
        for link in self.links:
            deliveries, n = sums.get(link.channel, (0.0, 0))
            sums[link.channel] = (deliveries + link.rate, n + 1)
        return {c: (d / n, d, n) for c, (d, n) in sums.items()}


def redis_glob(pattern: str, channel: str) -> bool:
    """Whether ``channel`` matches the Redis glob ``pattern`` (``*``, ``?``, ``[a-z]``,
    ``[^x]``, ``\\`` escapes), as ``PSUBSCRIBE`` matches."""
    return _compiled(pattern).fullmatch(channel) is not None


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                out.append(_char_class(pattern[i + 1 : end]))
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _char_class(body: str) -> str:
    """A Redis ``[...]`` body as a regex class: ``^`` negates, ``a-z`` is a range, ``\\``
    escapes the next character, anything else stands for itself."""
    negate = body.startswith("^")
    body = body[1:] if negate else body
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = sorted((body[i], body[i + 2]))  # Redis accepts z-a as a-z
            out.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
            continue
        out.append(re.escape(body[i]))
        i += 1
    return f"[{'^' if negate else ''}{''.join(out)}]" if out else "(?!)"


def observe(subs: list[Subscription], per_sub: int = PER_SUBSCRIPTION) -> Flows:
    """The links of ``subs`` now (one ``Traffic.rates`` and one ``totals()`` each)."""
    links: list[FlowLink] = []
    other_rate, other_recent = 0.0, 0.0
    delivered: dict[str, int] = {}
    span = 60
    for sub in subs:
        stats = sub.subscriber.totals()
        rates = sub.traffic.rates(top=per_sub)
        span = sub.traffic.window
        delivered[sub.name] = stats.delivered
        plain = set(stats.channels)
        for channel, rate in rates.top:
            recent = float(sum(rates.series.get(channel, ())))
            if channel == OTHER:
                other_rate, other_recent = other_rate + rate, other_recent + recent
                continue
            sources = [channel] if channel in plain else []
            sources += [p for p in stats.patterns if redis_glob(p, channel)]
            if not sources:
                sources = ["(unsubscribed since)"]
            k = len(sources)
            links += [FlowLink(f"{sub.name}: {s}", channel, rate / k, recent / k) for s in sources]
    unattributed = None
    if other_rate > 0 or other_recent > 0:
        unattributed = FlowLink(OTHER_SOURCE, OTHER_CHANNELS, other_rate, other_recent)
    return Flows(tuple(links), unattributed, NOW_WINDOW, span, delivered)


class StableOrder:
    """Rows in the order they were first seen, so boxes never jump as counts change.

    Names not drawn for a while are forgotten once more than ``keep`` are known (bounded)."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self._rank: dict[str, int] = {}
        self._next = 0

    def rank(self, name: str) -> int:
        r = self._rank.get(name)
        if r is None:
            r = self._rank[name] = self._next
            self._next += 1
        return r

    def prune(self, shown: set[str]) -> None:
        if len(self._rank) > self.keep:
            self._rank = {n: r for n, r in self._rank.items() if n in shown}


def drawn(flows: Flows, order: StableOrder, cap: int = MAX_LINKS) -> list[FlowLink]:
    """The ``cap`` busiest links (by the chart window's deliveries, then now), in a stable
    order (sources and channels as first seen), then one link summing all the rest."""
    busiest = sorted(flows.links, key=lambda lk: (-lk.recent, -lk.rate, lk.source, lk.channel))
    shown, rest = busiest[:cap], busiest[cap:]
    shown.sort(key=lambda lk: (order.rank(lk.source), order.rank(lk.channel)))
    order.prune({lk.source for lk in shown} | {lk.channel for lk in shown})
    extra = [*rest, flows.unattributed] if flows.unattributed is not None else rest
    if extra:
        n = len(rest)
        label = f"({n} other link{'s' if n != 1 else ''})" if n else OTHER_SOURCE
        shown.append(
            FlowLink(
                label,
                OTHER_CHANNELS,
                sum(lk.rate for lk in extra),
                sum(lk.recent for lk in extra),
            )
        )
    return shown
