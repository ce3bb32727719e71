"""``%rtk panel``: the dashboard, with Publish, Subscribe, Channels, Flows and Cluster tabs.

The outermost widget has CSS class ``rtk-dashboard`` (the browser tests rely on it).
"""

from __future__ import annotations

import threading
from html import escape
from typing import Any

import ipywidgets as W
import orjson
import redis

from .. import ToolkitError
from . import charts
from .cluster_tab import attach as attach_cluster_tab
from .refresher import REFRESHER
from .state import NotebookState

_MAX_LISTED = 100  # channel buttons shown in the Channels tab


def flow_links(subs: list[Any]) -> list[tuple[str, str, float]]:
    """``(subscription: channel-or-pattern, channel, messages)`` for every running subscription,
    from the core's per-link counters: a message a client got twice (its channel and a
    matching pattern, as Redis sends it) is one message on each of its two links, never two.
    Work is proportional to the number of links."""
    links: list[tuple[str, str, float]] = []
    for sub in subs:
        stats = sub.stats
        via_pattern: dict[Any, int] = {}
        for (pattern, channel), n in stats.by_link.items():
            links.append((f"{sub.name}: {pattern}", str(channel), n))
            via_pattern[channel] = via_pattern.get(channel, 0) + n
        for channel, n in stats.by_channel.items():
            plain = n - via_pattern.get(channel, 0)
            if plain > 0:
                links.append((f"{sub.name}: {channel}", str(channel), plain))
    return links


def parse_form_payload(text: str) -> Any:
    """The Publish tab's payload: JSON when it parses as JSON, else the text as typed."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


class Dashboard:
    """The ``%rtk panel`` dashboard; ``widget`` is what the notebook displays."""

    def __init__(self, state: NotebookState, *, max_rows: int = 1000, log_size: int = 50) -> None:
        self.state = state
        self.max_rows = max_rows
        self.log_size = log_size
        self._lock = threading.RLock()
        self._last_links: list[tuple[str, str, float]] | None = None
        self.tabs = W.Tab(
            children=[
                self._publish_tab(),
                self._subscribe_tab(),
                self._channels_tab(),
                self._flows_tab(),
            ]
        )
        for i, title in enumerate(("Publish", "Subscribe", "Channels", "Flows")):
            self.tabs.set_title(i, title)
        self.cluster = attach_cluster_tab(self)
        self.widget = W.VBox([W.HTML(self._header()), self.tabs])
        self.widget.add_class("rtk-dashboard")
        self.refresh()
        REFRESHER.add(self)

    def _header(self) -> str:
        try:
            info = self.state.server_info()
        except ToolkitError as exc:
            return f'<span style="color:#c00">{escape(str(exc))}</span>'
        return (
            f"<b>redis_toolkit_nb</b> · {escape(info['url'])} · "
            f"{escape(info['server'])} {escape(info['version'])}"
        )

    # ---- Publish -----------------------------------------------------------------------------
    def _publish_tab(self) -> W.Widget:
        self.pub_channel = W.Text(description="Channel", placeholder="news")
        self.pub_payload = W.Textarea(
            description="Payload",
            placeholder='{"hello": "world"}  (JSON, else sent as text)',
            layout=W.Layout(width="60%", height="90px"),
        )
        self.pub_button = W.Button(
            description="Publish", icon="paper-plane", button_style="primary"
        )
        self.pub_result = W.HTML()
        self.pub_result.add_class("rtk-publish-result")
        self.pub_button.on_click(lambda _: self.publish())
        return W.VBox([self.pub_channel, self.pub_payload, self.pub_button, self.pub_result])

    def publish(self) -> None:
        """Publish the form's payload; show the receivers or the error inline."""
        channel = self.pub_channel.value.strip()
        if not channel:
            self.pub_result.value = '<span style="color:#c00">enter a channel</span>'
            return
        try:
            receivers = self.state.toolkit.publish(
                channel, parse_form_payload(self.pub_payload.value)
            )
        except (ToolkitError, redis.RedisError) as exc:
            self.pub_result.value = (
                f'<span style="color:#c00">{escape(type(exc).__name__)}: {escape(str(exc))}</span>'
            )
            return
        self.pub_result.value = f"published to {escape(channel)}: {receivers} receiver(s)"

    # ---- Subscribe ---------------------------------------------------------------------------
    def _subscribe_tab(self) -> W.Widget:
        self.sub_names = W.Text(description="Channels", placeholder="news alerts.*")
        self.sub_name = W.Text(description="Name", placeholder="(default: sub_<channel>)")
        self.sub_rows = W.BoundedIntText(
            value=self.max_rows, min=1, max=10_000_000, description="Max rows"
        )
        self.sub_button = W.Button(description="Subscribe", icon="play", button_style="primary")
        self.sub_error = W.HTML()
        self.sub_area = W.VBox()
        self.sub_button.on_click(lambda _: self.subscribe())
        form = W.VBox([self.sub_names, self.sub_name, self.sub_rows, self.sub_button])
        return W.VBox([form, self.sub_error, self.sub_area])

    def subscribe(self, names: list[str] | None = None) -> Any:
        """Start a subscription from the form (or to ``names``) and show its panel here."""
        from_form = names is None
        names = names or self.sub_names.value.replace(",", " ").split()
        if not names:
            self.sub_error.value = '<span style="color:#c00">enter channels or patterns</span>'
            return None
        try:
            sub = self.state.subscribe(
                names,
                name=(self.sub_name.value.strip() or None) if from_form else None,
                max_rows=self.sub_rows.value,
                log_size=self.log_size,
            )
        except (ToolkitError, ValueError, redis.RedisError) as exc:
            self.sub_error.value = f'<span style="color:#c00">{escape(str(exc))}</span>'
            return None
        self.sub_error.value = f"started <code>{escape(sub.name)}</code> (bound in the notebook)"
        panels = [c for c in self.sub_area.children if c is not sub.panel.widget]
        self.sub_area.children = [sub.panel.widget, *panels][:5]
        self.refresh()
        return sub

    # ---- Channels ----------------------------------------------------------------------------
    def _channels_tab(self) -> W.Widget:
        self.ch_pattern = W.Text(value="*", description="Pattern")
        self.ch_refresh = W.Button(description="Refresh", icon="refresh")
        self.ch_summary = W.HTML()
        self.ch_list = W.VBox()
        self.ch_refresh.on_click(lambda _: self.list_channels())
        return W.VBox([W.HBox([self.ch_pattern, self.ch_refresh]), self.ch_summary, self.ch_list])

    def list_channels(self) -> list[tuple[str, int]]:
        """Run PUBSUB CHANNELS/NUMSUB/NUMPAT (and the shard variants where the server has
        them) and show a button per channel that subscribes to it."""
        pattern = self.ch_pattern.value.strip() or "*"
        try:
            client = self.state.toolkit.client
            names = sorted(_text(c) for c in client.pubsub_channels(pattern))
            numsub = dict(client.pubsub_numsub(*names[:_MAX_LISTED])) if names else {}
            numpat = client.pubsub_numpat()
            try:
                shard = sorted(
                    _text(c) for c in client.execute_command("PUBSUB", "SHARDCHANNELS", pattern)
                )
                shard_text = f"{len(shard)} shard channel(s)"
                if shard:
                    counts = client.execute_command("PUBSUB", "SHARDNUMSUB", *shard[:_MAX_LISTED])
                    pairs = list(zip(counts[::2], counts[1::2], strict=False))
                    shard_text += ": " + ", ".join(f"{escape(_text(c))} ({n})" for c, n in pairs)
            except redis.ResponseError:
                shard_text = "sharded pub/sub: not supported by this server"
        except (ToolkitError, redis.RedisError) as exc:
            self.ch_summary.value = f'<span style="color:#c00">{escape(str(exc))}</span>'
            return []
        counts = {_text(k): int(v) for k, v in numsub.items()}
        rows = [(n, counts.get(n, 0)) for n in names]
        more = f" (first {_MAX_LISTED} shown)" if len(names) > _MAX_LISTED else ""
        self.ch_summary.value = (
            f"{len(names)} channel(s) matching <code>{escape(pattern)}</code>{more} · "
            f"NUMPAT {numpat} · {shard_text}<br><i>click a channel to subscribe to it</i>"
        )
        buttons = []
        for name, n in rows[:_MAX_LISTED]:
            button = W.Button(description=name, tooltip=f"subscribe to {name}")
            button.on_click(lambda _, name=name: self._subscribe_clicked(name))
            buttons.append(W.HBox([button, W.Label(f"{n} subscriber(s)")]))
        self.ch_list.children = buttons
        return rows

    def _subscribe_clicked(self, channel: str) -> None:
        self.tabs.selected_index = 1
        self.subscribe([channel])

    # ---- Flows -------------------------------------------------------------------------------
    def _flows_tab(self) -> W.Widget:
        self.flows = W.HTML()
        self.flows.add_class("rtk-flows")
        note = W.HTML(
            "<i>messages per subscribed channel or pattern (left) and channel (right), "
            "since each subscription started</i>"
        )
        return W.VBox([note, self.flows])

    def refresh(self) -> None:
        """Redraw the Flows chart when the figures changed (called by the refresher)."""
        with self._lock:
            links = flow_links(list(self.state.subscriptions.values()))
            if links != self._last_links:
                self._last_links = links
                self.flows.value = charts.flows_chart(links)

    def close(self) -> None:
        """Stop refreshing this dashboard (the subscriptions keep running)."""
        REFRESHER.remove(self)
        self.cluster.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"<Dashboard: {len(self.state.subscriptions)} subscription(s)>"


def _text(name: bytes | str) -> str:
    """A channel name from the server, as text (never fails on non-UTF-8 bytes)."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name
