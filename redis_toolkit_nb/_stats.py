"""``SubscriberStats``: the figures a user reads to know nothing was lost silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class NodeState(NamedTuple):
    """One node a subscriber reads from (``SubscriberStats.nodes``)."""

    #: The connection is up and every subscription on it confirmed.
    connected: bool
    #: This connection carries the channels and patterns (one node at a time).
    classic: bool
    #: The sharded channels confirmed on this node.
    sharded_channels: tuple[str, ...]


@dataclass(frozen=True)
class SubscriberStats:
    """A snapshot of a subscriber's counters.

    Every message read from the server ends up in exactly one of ``delivered``, ``dropped``,
    ``decode_errors``, ``skipped`` or ``pending``, so
    ``received == delivered + dropped + decode_errors + skipped + pending``.
    Messages Redis published while the subscriber was disconnected never reach it (Pub/Sub is
    at-most-once); ``disconnects`` and ``reconnects`` show when that may have happened.
    """

    #: Messages read from the server.
    received: int = 0
    #: Messages processed (kept in the buffer and given to the handler).
    delivered: int = 0
    #: Messages discarded by the overflow policy, or still queued when the subscriber stopped.
    dropped: int = 0
    #: Messages the handler raised on (they count as delivered too).
    handler_errors: int = 0
    #: Payloads that could not be decoded under ``decode="json"`` (not delivered).
    decode_errors: int = 0
    #: Payloads delivered as text or bytes because they were not JSON.
    raw_payloads: int = 0
    #: Messages passed over while the subscriber was paused.
    skipped: int = 0
    #: Messages waiting for the handler, or in it, right now.
    pending: int = 0
    #: Bytes read from the server but not parsed yet (a burst waits here, compactly, while
    #: the handler queue is full; not yet counted in ``received``).
    unparsed_bytes: int = 0
    #: Messages cut short because the link ended in their middle (a server cut-off, a reset):
    #: lost in transit, never received, so not in ``received``.
    truncated: int = 0
    #: Times the connection was lost.
    disconnects: int = 0
    #: Times the connection was re-established (and every subscription restored).
    reconnects: int = 0
    #: Whether the subscriber is connected right now *and* every subscription is confirmed on
    #: that connection: False from a loss until the restored subscriptions are confirmed.
    connected: bool = False
    #: Whether delivery is paused.
    paused: bool = False
    #: The confirmed channel and pattern subscriptions.
    channels: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    #: The confirmed sharded channel subscriptions (SSUBSCRIBE), on every node.
    sharded_channels: tuple[str, ...] = ()
    #: Times a sharded subscription was lost and regained: its slot moved to another node, its
    #: node stopped being a master, or its node was lost (a reconnect counts too).
    moves: int = 0
    #: Seconds, summed over ``moves``, a sharded channel was subscribed nowhere. Redis never
    #: says what was published meanwhile: at r messages/s about r x the gap are missed.
    move_gap_s: float = 0.0
    #: The longest of those gaps, in seconds.
    max_move_gap_s: float = 0.0
    #: Per node read from ("host:port"): connected, carries channels and patterns, sharded
    #: channels held.
    nodes: dict[str, NodeState] = field(default_factory=dict)
    #: Messages per channel, and per matching pattern, since the start or the last ``clear()``.
    by_channel: dict[str, int] = field(default_factory=dict)
    by_pattern: dict[str, int] = field(default_factory=dict)
    #: Messages per (pattern, channel) a pattern subscription delivered. A channel's plain
    #: subscription delivered ``by_channel[c]`` minus the links ending in ``c`` (Redis sends
    #: a message twice to a client subscribed to its channel and a matching pattern).
    by_link: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The most recent connection or subscription error, if any, even when since recovered
    #: (``connected`` says whether it is now; secrets masked).
    last_error: str | None = None
    #: Seconds since the subscriber started.
    uptime: float = 0.0

    @property
    def rate(self) -> float:
        """Average messages per second since the start."""
        return self.received / self.uptime if self.uptime > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "rate": self.rate
        }
