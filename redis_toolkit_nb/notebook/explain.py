"""``%rtk explain CHANNEL``: who would receive a publish to CHANNEL.

This kernel's running subscriptions that match it (by channel, or by pattern with Redis's own
glob rules), how many copies each gets (a connection subscribed to the channel *and* to
matching patterns gets one per subscription: ``message`` and a ``pmessage`` per pattern),
the server's ``PUBSUB NUMSUB`` and ``NUMPAT``, and where the channel would live as a sharded
channel (slot, owning node, ``PUBSUB SHARDNUMSUB``).

Patterns are matched as Redis matches them (``globs.glob_match``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import redis
from redis.crc import key_slot

from .. import RedisToolkit
from .globs import glob_match

# ---- the explanation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """One way a subscription of this kernel receives the channel: ``via`` is ``channel``,
    ``pattern`` or ``sharded`` (SPUBLISH only), ``name`` the channel or pattern it holds."""

    subscription: str
    via: str
    name: str


@dataclass(frozen=True)
class Explanation:
    """What ``%rtk explain CHANNEL`` found (see the module docstring)."""

    channel: str
    #: This kernel's running subscriptions that would receive it, one row per way.
    receivers: tuple[Receiver, ...]
    #: Server-wide: subscribers of exactly this channel (``PUBSUB NUMSUB``; patterns are not
    #: in it), and unique patterns (``PUBSUB NUMPAT``): on a cluster, summed over the nodes.
    numsub: int
    numpat: int
    #: Subscribers of it as a sharded channel (``PUBSUB SHARDNUMSUB``); None before Redis 7,
    #: or when the server refused it (a note then says so).
    shardnumsub: int | None
    #: On a cluster: its slot and the node owning it (where SPUBLISH goes); else None.
    slot: int | None = None
    node: str | None = None
    nodes: int = 1
    notes: tuple[str, ...] = field(default=())

    def copies(self) -> dict[str, int]:
        """Copies of one ``PUBLISH`` each subscription of this kernel gets (a sharded
        subscription gets SPUBLISH's only: it is not counted)."""
        out: dict[str, int] = {}
        for r in self.receivers:
            if r.via != "sharded":
                out[r.subscription] = out.get(r.subscription, 0) + 1
        return out

    def frame(self) -> Any:
        """The receivers as a DataFrame (``subscription``, ``via``, ``name``, ``copies``)."""
        import pandas as pd

        copies = self.copies()
        rows = [
            (r.subscription, r.via, r.name, copies.get(r.subscription, 0)) for r in self.receivers
        ]
        return pd.DataFrame(rows, columns=["subscription", "via", "name", "copies"])

    def _lines(self) -> list[str]:
        copies = self.copies()
        out = []
        for r in self.receivers:
            extra = " (SPUBLISH only)" if r.via == "sharded" else ""
            twice = copies.get(r.subscription, 0)
            dup = f" [gets each PUBLISH {twice} times]" if twice > 1 else ""
            out.append(f"{r.subscription}: {r.via} {r.name}{extra}{dup}")
        return out

    def __repr__(self) -> str:
        where = f"slot {self.slot} on {self.node}" if self.slot is not None else "one server"
        head = (
            f"<Explanation {self.channel!r}: NUMSUB {self.numsub}, NUMPAT {self.numpat}, "
            f"SHARDNUMSUB {self.shardnumsub} ({where})"
        )
        body = self._lines() or ["no subscription of this kernel receives it"]
        return "\n  ".join([head + ">", *body, *self.notes])

    def _repr_html_(self) -> str:
        rows = "".join(f"<li>{escape(line)}</li>" for line in self._lines()) or (
            "<li><i>no subscription of this kernel receives it</i></li>"
        )
        server = (
            f"server-wide: <b>NUMSUB {self.numsub}</b> (exact channel) · <b>NUMPAT "
            f"{self.numpat}</b> (unique patterns) · <b>SHARDNUMSUB {self.shardnumsub}</b>"
        )
        if self.slot is not None:
            server += (
                f" · sharded: slot <b>{self.slot}</b> on <code>{escape(str(self.node))}</code>"
            )
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (
            f'<div class="rtk-explain"><b>PUBLISH {escape(self.channel)}</b> reaches, in this '
            f"kernel:<ul>{rows}</ul>{server}<ul>{notes}</ul></div>"
        )


def _receivers(subscriptions: dict[str, Any], channel: str) -> list[Receiver]:
    out = []
    for name, sub in sorted(subscriptions.items()):
        if not sub.running:
            continue
        if channel in sub.channels:
            out.append(Receiver(name, "channel", channel))
        out += [Receiver(name, "pattern", p) for p in sub.patterns if glob_match(p, channel)]
        if channel in sub.sharded_channels:
            out.append(Receiver(name, "sharded", channel))
    return out


def _count(reply: Any) -> int:
    return sum(int(n) for n in reply[1::2])


def explain(tk: RedisToolkit, subscriptions: dict[str, Any], channel: str) -> Explanation:
    """``%rtk explain CHANNEL``: see ``Explanation``."""
    receivers = _receivers(subscriptions, channel)
    cluster = tk.cluster
    if cluster is None:
        clients = [tk.client]
    else:
        cluster.refresh()
        clients = [cluster.client(addr) for addr in cluster.map.nodes]
    numsub = numpat = 0
    shardnumsub: int | None = 0
    refused = ""
    for client in clients:
        numsub += _count(client.execute_command("PUBSUB", "NUMSUB", channel))
        numpat += int(client.execute_command("PUBSUB", "NUMPAT"))
        if shardnumsub is not None:
            try:
                shardnumsub += _count(client.execute_command("PUBSUB", "SHARDNUMSUB", channel))
            except redis.ResponseError as exc:
                # Before Redis 7.0 there is no such subcommand; anything else (an ACL
                # refusal) is said, never shown as "no sharded Pub/Sub".
                shardnumsub = None
                if "unknown subcommand" not in str(exc).lower():
                    refused = f"SHARDNUMSUB unknown: the server refused it ({tk.scrub(exc)})"
    slot = node = None
    if cluster is not None:
        slot = key_slot(channel.encode())
        owner = cluster.map.owner(slot)
        node = f"{owner[0]}:{owner[1]}" if owner else None
    notes = _notes(receivers, channel, numpat, len(clients), cluster is not None)
    if refused:
        notes = (*notes, refused)
    return Explanation(
        channel, tuple(receivers), numsub, numpat, shardnumsub, slot, node, len(clients), notes
    )


def _notes(
    receivers: list[Receiver], channel: str, numpat: int, nodes: int, cluster: bool
) -> tuple[str, ...]:
    notes = []
    by_sub: dict[str, list[Receiver]] = {}
    for r in receivers:
        if r.via != "sharded":
            by_sub.setdefault(r.subscription, []).append(r)
    for name, ways in by_sub.items():
        if len(ways) > 1:
            how = ", ".join(f"{r.via} {r.name}" for r in ways)
            notes.append(
                f"double delivery: {name} holds {how} on one connection, so Redis sends it each "
                f"PUBLISH {len(ways)} times (a message for the channel, a pmessage per matching "
                f"pattern); its df has {len(ways)} rows per message (see kind and pattern)"
            )
    if len(by_sub) > 1:
        notes.append(
            f"{len(by_sub)} subscriptions of this kernel each get their own copy (separate "
            "connections: not a duplicate on one connection, but handled once per subscription)"
        )
    notes.append(
        f"NUMPAT {numpat}: Redis reports pattern subscriptions by count only (unique patterns, "
        "server-wide); which patterns, and who holds them, cannot be asked: only this kernel's "
        "are matched above. NUMSUB counts exact-channel subscribers only."
    )
    if cluster:
        notes.append(
            f"cluster: PUBLISH is relayed to every node, so NUMSUB/NUMPAT are summed over the "
            f"{nodes} nodes; as a sharded channel it lives on one shard only (SPUBLISH reaches "
            "SSUBSCRIBErs of that shard, never PSUBSCRIBErs)"
        )
    if any(r.via == "sharded" for r in receivers):
        notes.append(
            f"sharded subscriptions of {channel!r} receive SPUBLISH only; a PUBLISH never "
            "reaches them"
        )
    return tuple(notes)
