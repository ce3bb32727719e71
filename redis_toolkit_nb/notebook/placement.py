"""Where a subscription's channels are read from, over time: the ``node`` of ``df``'s rows and
the moves the Cluster tab lists.

Redis does not say which connection a message came in on, and the core's buffer keeps the
message only; the core's ``stats.nodes`` says where each sharded channel is confirmed *now*.
``Placement`` samples it (each panel tick, each read of ``df`` or ``stats``: every 0.25 s
while the panel refreshes) and keeps each channel's homes with the time they were first seen
there: a row is given the home its channel had at its arrival time. A message read just after
a move and before the next sample is shown on the old node.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import deque
from typing import Any, NamedTuple

#: The key of the classic connection (channels and patterns) in the homes.
CLASSIC = ""


class Move(NamedTuple):
    """A channel seen on a new node (``from_node`` None: first seen)."""

    time: float
    channel: str
    from_node: str | None
    to_node: str


class Placement:
    """Each channel's homes over time (sampled), and the moves seen (newest last)."""

    def __init__(self, max_moves: int = 200) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = {}
        self._nodes: dict[str, list[str]] = {}
        self.moves: deque[Move] = deque(maxlen=max_moves)

    def observe(self, nodes: dict[str, Any], now: float | None = None) -> None:
        """Record ``stats.nodes`` as seen at ``now``: the classic connection's node and the
        node confirming each sharded channel."""
        now = time.time() if now is None else now
        seen: dict[str, str] = {}
        for node, state in nodes.items():
            if state.classic:
                seen.setdefault(CLASSIC, node)
            for channel in state.sharded_channels:
                seen[channel] = node
        with self._lock:
            for channel, node in seen.items():
                homes = self._nodes.setdefault(channel, [])
                if homes and homes[-1] == node:
                    continue
                # The first sample also covers what arrived before it.
                self._times.setdefault(channel, []).append(now if homes else 0.0)
                if homes and channel != CLASSIC:
                    self.moves.append(Move(now, channel, homes[-1], node))
                homes.append(node)

    def node_at(self, channel: str, t: float, sharded: bool) -> str | None:
        """The node ``channel`` (a sharded one, or any classic one) was read from at ``t``."""
        key = str(channel) if sharded else CLASSIC
        with self._lock:
            times = self._times.get(key)
            if not times:
                return None
            return self._nodes[key][max(bisect_right(times, t) - 1, 0)]

    def current(self) -> dict[str, str]:
        """channel -> its node now (the classic connection under ``CLASSIC``)."""
        with self._lock:
            return {c: homes[-1] for c, homes in self._nodes.items() if homes}
