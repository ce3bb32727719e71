"""Redis Cluster in the notebook: ``%rtk shards`` and the dashboard's **Cluster** tab.

The tab shows the nodes (role, the master a replica follows, slot ranges), where each sharded
channel a running subscription holds lives (slot, owner, the node it is read from), and the
moves seen so far, with each subscription's move count and gaps. On one server it says so and
shows that server as the single shard.
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import Any

import ipywidgets as W
import pandas as pd
import redis
from redis.crc import key_slot

from .. import RedisToolkit, ToolkitError
from .refresher import REFRESHER
from .snapshot import clock
from .state import NotebookState

#: Seconds between two slot-map reads by the tab (the subscriptions' figures refresh each tick).
MAP_EVERY = 2.0
_MOVES_SHOWN = 20


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _addr(tk: RedisToolkit) -> str:
    kw = tk.client.connection_pool.connection_kwargs
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


def nodes_frame(tk: RedisToolkit) -> pd.DataFrame:
    """One row per node (``CLUSTER NODES``: it lists replicas ``CLUSTER SLOTS`` may omit):
    ``node`` (host:port), ``role`` (master, replica, standalone; "failing" appended when the
    cluster marks it so), ``master`` (the master a replica follows), ``slots`` (ranges)."""
    columns = ["node", "role", "master", "slots"]
    cluster = tk.cluster
    if cluster is None:
        row = {"node": _addr(tk), "role": "standalone", "master": None, "slots": "0-16383"}
        return pd.DataFrame([row], columns=columns)
    cluster.refresh()
    reply = None
    for addr in cluster.map.nodes:  # the first node that answers (one may be down)
        try:
            reply = cluster.client(addr).execute_command("CLUSTER NODES")
            break
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            continue
    if not isinstance(reply, dict):
        raise ToolkitError("no node of the cluster answers CLUSTER NODES")
    host = cluster.seed_addr[0]
    names: dict[str, str] = {}
    for addr, info in reply.items():
        where, _, port = addr.split("@")[0].rpartition(":")
        names[info["node_id"]] = f"{where or host}:{port}"
    rows: list[dict[str, Any]] = []
    for info in reply.values():
        flags = info["flags"].split(",")
        role = "master" if "master" in flags else "replica"
        if "fail" in flags or "fail?" in flags:
            role += " (failing)"
        slots = ", ".join(a if a == b else f"{a}-{b}" for a, b in _pairs(info.get("slots", [])))
        master = names.get(info.get("master_id", "-"))
        rows.append(
            {"node": names[info["node_id"]], "role": role, "master": master, "slots": slots}
        )
    rows.sort(key=lambda r: (not str(r["role"]).startswith("master"), r["master"] or "", r["node"]))
    return pd.DataFrame(rows, columns=columns)


def _pairs(slots: list[Any]) -> list[tuple[str, str]]:
    out = []
    for item in slots:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
        elif isinstance(item, (list, tuple)) and len(item) == 1:
            out.append((str(item[0]), str(item[0])))
    return out


def shards_frame(tk: RedisToolkit, pattern: str = "*") -> pd.DataFrame:
    """``%rtk shards [PATTERN]``: the sharded channels with subscribers (``PUBSUB
    SHARDCHANNELS``/``SHARDNUMSUB`` on every node, masters and replicas, summed): ``channel``,
    ``slot``, ``node`` (the master owning the slot), ``subscribers``."""
    cluster = tk.cluster
    counts: dict[str, int] = {}
    if cluster is None:
        clients = [tk.client]
    else:
        cluster.refresh()
        clients = [cluster.client(addr) for addr in cluster.map.nodes]
    for client in clients:
        names = client.execute_command("PUBSUB", "SHARDCHANNELS", pattern)
        if not names:
            continue
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", *names)
        for name, n in zip(reply[::2], reply[1::2], strict=False):
            counts[_text(name)] = counts.get(_text(name), 0) + int(n)
    rows: list[dict[str, Any]] = []
    for name in sorted(counts):
        slot = key_slot(name.encode())
        node: str | None = _addr(tk)
        if cluster is not None:
            owner = cluster.map.owner(slot)
            node = f"{owner[0]}:{owner[1]}" if owner else None
        rows.append({"channel": name, "slot": slot, "node": node, "subscribers": counts[name]})
    return pd.DataFrame(rows, columns=["channel", "slot", "node", "subscribers"])


def _table(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f"<i>{escape(empty)}</i>"
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        f'<table style="font-size:12px"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


class ClusterTab:
    """The dashboard's Cluster tab; ``widget`` is its content."""

    def __init__(self, state: NotebookState) -> None:
        self.state = state
        self._lock = threading.RLock()
        self._map_at = 0.0
        self._last: tuple[str, str, str] | None = None
        self.nodes = W.HTML()
        self.nodes.add_class("rtk-cluster-nodes")
        self.channels = W.HTML()
        self.channels.add_class("rtk-cluster-channels")
        self.moves = W.HTML()
        self.moves.add_class("rtk-cluster-moves")
        self.widget = W.VBox(
            [
                W.HTML("<b>Nodes</b> (role, the master a replica follows, slot ranges)"),
                self.nodes,
                W.HTML("<b>Sharded channels of the running subscriptions</b>"),
                self.channels,
                W.HTML(
                    "<b>Moves</b> (a sharded channel re-homed; Redis does not replay what was "
                    "published during a gap)"
                ),
                self.moves,
            ]
        )
        self.widget.add_class("rtk-cluster")
        self.refresh()
        REFRESHER.add(self)

    def refresh(self) -> None:
        """Redraw what changed (the slot map at most every ``MAP_EVERY`` seconds)."""
        with self._lock:
            now = time.monotonic()
            nodes = self.nodes.value
            if now - self._map_at >= MAP_EVERY or not nodes:
                self._map_at = now
                # Never connect from here (a background thread): only read a live connection.
                tk = self.state._toolkit
                try:
                    if tk is None:
                        nodes = "<i>not connected yet</i>"
                        self._map_at = 0.0  # look again next tick
                    else:
                        nodes = _table(nodes_frame(tk), "no nodes")
                except (ToolkitError, redis.RedisError, OSError) as exc:
                    nodes = f'<span style="color:#c00">{escape(str(exc))}</span>'
            subs = [s for s in self.state.subscriptions.values() if getattr(s, "sharded", False)]
            figures = {}
            for sub in subs:
                figures[sub.name] = stats = sub.subscriber.totals()
                if sub.running:
                    sub.placement.observe(stats.nodes)  # the moves list is up to date
            channels = self._channels(subs)
            moves = self._moves(subs, figures)
            if (nodes, channels, moves) != self._last:
                self._last = (nodes, channels, moves)
                for widget, value in zip(
                    (self.nodes, self.channels, self.moves), self._last, strict=True
                ):
                    if widget.value != value:
                        widget.value = value

    @staticmethod
    def _channels(subs: list[Any]) -> str:
        rows = []
        for sub in subs:
            where = sub.placement.current()
            for name in sub.requested:
                rows.append(
                    {
                        "subscription": sub.name,
                        "channel": name,
                        "slot": key_slot(name.encode()),
                        "read from": where.get(name, "(moving)"),
                    }
                )
        frame = pd.DataFrame(rows, columns=["subscription", "channel", "slot", "read from"])
        return _table(frame, "no sharded subscription running (%%rtk_subscribe --sharded ...)")

    @staticmethod
    def _moves(subs: list[Any], stats: dict[str, Any]) -> str:
        figures = []
        events = []
        for sub in subs:
            s = stats[sub.name]
            figures.append(
                f"<code>{escape(sub.name)}</code>: {s.moves} move(s), longest gap "
                f"{s.max_move_gap_s * 1000:.1f} ms, total {s.move_gap_s * 1000:.1f} ms"
            )
            events += [(m, sub) for m in sub.placement.moves]
        events.sort(key=lambda e: e[0].time, reverse=True)
        lines = [
            f"{clock(m.time, sub.timezone)} <code>{escape(sub.name)}</code>: "
            f"{escape(m.channel)} {escape(str(m.from_node))} \u2192 {escape(m.to_node)}"
            for m, sub in events[:_MOVES_SHOWN]
        ]
        text = "<br>".join(figures) or "<i>no sharded subscription</i>"
        if lines:
            text += '<div style="font-family:monospace;font-size:11px">' + "<br>".join(lines)
            text += "</div>"
        return text

    def close(self) -> None:
        REFRESHER.remove(self)


def attach(dashboard: Any) -> ClusterTab:
    """Add the Cluster tab to a ``Dashboard`` (last), refreshed on its own."""
    tab = ClusterTab(dashboard.state)
    tabs = dashboard.tabs
    tabs.children = [*tabs.children, tab.widget]
    tabs.set_title(len(tabs.children) - 1, "Cluster")
    return tab
