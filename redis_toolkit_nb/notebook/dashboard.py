"""``%rtk panel``: the dashboard, with Publish, Subscribe, Channels, Flows and Cluster tabs.

The outermost widget has CSS class ``rtk-dashboard`` (the browser tests rely on it).
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import Any

import ipywidgets as W
import orjson
import redis

from .. import ToolkitError
from . import charts
from .cluster_tab import attach as attach_cluster_tab
from .flows import MAX_LINKS, Flows, StableOrder, drawn, observe, redis_glob
from .refresher import REFRESHER
from .state import NotebookState, default_name

_MAX_LISTED = 100  # channel rows shown in the Channels tab
CHANNELS_TAB, FLOWS_TAB = 2, 3
_ERROR = "var(--jp-error-color1, #c00)"  # the theme's error colour (light and dark)
#: Seconds between two PUBSUB queries while the Channels tab is shown (they cost the server
#: work proportional to its channels, so they are not sent every tick).
CHANNELS_EVERY = 2.0


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
        self._order = StableOrder()
        self._flows: Flows | None = None
        self._channels_at = 0.0  # when the Channels tab last asked the server
        self._channel_rows: dict[str, tuple[W.HBox, W.Label]] = {}
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
            return _error_html(str(exc))
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
            self.pub_result.value = _error_html("enter a channel")
            return
        try:
            receivers = self.state.toolkit.publish(
                channel, parse_form_payload(self.pub_payload.value)
            )
        except (ToolkitError, redis.RedisError) as exc:
            self.pub_result.value = _error_html(f"{type(exc).__name__}: {exc}")
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
        """Start a subscription from the form (or to ``names``) and show its panel here.
        Mistakes are shown under the form, in the form's words."""
        from_form = names is None
        names = names or self.sub_names.value.replace(",", " ").split()
        if not names:
            self._form_error("enter channels or patterns")
            return None
        name = (self.sub_name.value.strip() or None) if from_form else None
        if name is not None and not name.isidentifier():
            self._form_error(
                f"Name {name!r} is not a Python variable name (letters, digits and _, not "
                "starting with a digit); leave it empty for the default"
            )
            return None
        try:
            sub = self.state.subscribe(
                names, name=name, max_rows=self.sub_rows.value, log_size=self.log_size
            )
        except (ToolkitError, ValueError, redis.RedisError) as exc:
            self._form_error(str(exc))
            return None
        self.sub_error.value = f"started <code>{escape(sub.name)}</code> (bound in the notebook)"
        panels = [c for c in self.sub_area.children if c is not sub.panel.widget]
        self.sub_area.children = [sub.panel.widget, *panels][:5]
        self.refresh()
        return sub

    def _form_error(self, text: str) -> None:
        self.sub_error.value = _error_html(text)

    def prefill(self, channel: str) -> None:
        """Fill the Subscribe form for ``channel`` (every field, so nothing typed before is
        left over) and show it; the user presses Subscribe."""
        self.sub_names.value = channel
        self.sub_name.value = default_name([channel])
        self.sub_rows.value = self.max_rows
        self.sub_error.value = (
            f"<i>ready to subscribe to <code>{escape(channel)}</code>: press Subscribe</i>"
        )
        self.tabs.selected_index = 1

    # ---- Channels ----------------------------------------------------------------------------
    def _channels_tab(self) -> W.Widget:
        self.ch_pattern = W.Text(value="*", description="Pattern")
        self.ch_refresh = W.Button(description="Refresh", icon="refresh")
        self.ch_summary = W.HTML()
        self.ch_list = W.VBox()
        self.ch_refresh.on_click(lambda _: self.list_channels())
        note = W.HTML(
            f"<i>refreshes every {CHANNELS_EVERY:g} s while shown · rates are what this "
            "notebook's subscriptions receive now (last 1 s) · click a channel to fill the "
            "Subscribe form</i>"
        )
        return W.VBox(
            [W.HBox([self.ch_pattern, self.ch_refresh]), note, self.ch_summary, self.ch_list]
        )

    def list_channels(self) -> list[tuple[str, int]]:
        """Run PUBSUB CHANNELS/NUMSUB/NUMPAT (and the shard variants where the server has
        them) and list each channel with its subscribers and, when this notebook receives
        it, its rate; channels seen in this notebook's traffic that only patterns reach
        (PUBSUB CHANNELS leaves them out) are listed too. Returns (channel, subscribers)."""
        with self._lock:
            self._channels_at = time.monotonic()
            pattern = self.ch_pattern.value.strip() or "*"
            try:
                client = self.state.toolkit.client
                names = sorted(_text(c) for c in client.pubsub_channels(pattern))
                numsub = dict(client.pubsub_numsub(*names[:_MAX_LISTED])) if names else {}
                numpat = client.pubsub_numpat()
                shard_text = _shard_text(client, pattern)
            except (ToolkitError, redis.RedisError) as exc:
                self.ch_summary.value = _error_html(str(exc))
                return []
            counts = {_text(k): int(v) for k, v in numsub.items()}
            rows = [(n, counts.get(n, 0)) for n in names]
            flows = self._flows or observe([])
            rates = flows.channel_rates()
            listed = set(names)
            via: dict[str, list[str]] = {}
            for link in flows.links:
                c = link.channel
                if c not in listed and redis_glob(pattern, c):
                    via.setdefault(c, []).append(link.source)
            more = f" (first {_MAX_LISTED} shown)" if len(names) > _MAX_LISTED else ""
            self.ch_summary.value = (
                f"{len(names)} channel(s) with subscribers matching <code>{escape(pattern)}"
                f"</code>{more} · {len(via)} more seen here through patterns only · "
                f"NUMPAT {numpat} · {shard_text}"
            )
            shown: list[tuple[str, str]] = []
            for name, n in rows[:_MAX_LISTED]:
                shown.append((name, f"{n} subscriber(s){_rate_text(rates.get(name))}"))
            for name in sorted(via)[:_MAX_LISTED]:
                sources = ", ".join(via[name])
                shown.append(
                    (name, f"no direct subscriber · via {sources}{_rate_text(rates.get(name))}")
                )
            self._show_channel_rows(shown)
            return rows

    def _show_channel_rows(self, shown: list[tuple[str, str]]) -> None:
        """Keep each channel's row (a click in progress is never lost to a rebuild); update
        labels only where they changed."""
        old = self._channel_rows
        rows: dict[str, tuple[W.HBox, W.Label]] = {}
        for name, text in shown:
            row = old.get(name)
            if row is None:
                button = W.Button(description=name, tooltip=f"fill the Subscribe form for {name}")
                button.on_click(lambda _, name=name: self.prefill(name))
                label = W.Label(text)
                row = (W.HBox([button, label]), label)
            elif row[1].value != text:
                row[1].value = text
            rows[name] = row
        self._channel_rows = rows
        children = tuple(r[0] for r in rows.values())
        if tuple(self.ch_list.children) != children:
            self.ch_list.children = children

    # ---- Flows -------------------------------------------------------------------------------
    def _flows_tab(self) -> W.Widget:
        self.flows = W.HTML()
        self.flows.add_class("rtk-flows")
        note = W.HTML(
            "<i>deliveries per second now (last 1 s) per subscribed channel or pattern (left) "
            "and channel (right: distinct messages per second; ×N when N subscription "
            "links each deliver every message). Hover for totals. The "
            f"{MAX_LINKS} busiest links of the last minute, in the order first seen; the "
            "rest summed under (other links).</i>"
        )
        return W.VBox([note, self.flows])

    def refresh(self) -> None:
        """One tick (the refresher's): the Flows chart from this tick's figures, and the
        Channels tab while it is shown. Widgets are written only when their text changed."""
        with self._lock:
            self._flows = flows = observe(list(self.state.subscriptions.values()))
            svg = charts.flows_chart(
                drawn(flows, self._order),
                window=flows.window,
                span=flows.span,
                delivered=flows.delivered,
            )
            if self.flows.value != svg:
                self.flows.value = svg
            shown = self.tabs.selected_index == CHANNELS_TAB
            if shown and time.monotonic() - self._channels_at >= CHANNELS_EVERY:
                self.list_channels()

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


def _error_html(text: str) -> str:
    return f'<span style="color:{_ERROR}">{escape(text)}</span>'


def _rate_text(rate: tuple[float, float, int] | None) -> str:
    if rate is None:
        return ""
    distinct, deliveries, links = rate
    extra = f" ({deliveries:.1f} deliveries/s)" if links > 1 else ""
    return f" · {distinct:.1f} msg/s here{extra}"


def _shard_text(client: Any, pattern: str) -> str:
    try:
        shard = sorted(_text(c) for c in client.execute_command("PUBSUB", "SHARDCHANNELS", pattern))
    except redis.ResponseError:
        return "sharded pub/sub: not supported by this server"
    text = f"{len(shard)} shard channel(s)"
    if shard:
        counts = client.execute_command("PUBSUB", "SHARDNUMSUB", *shard[:_MAX_LISTED])
        pairs = list(zip(counts[::2], counts[1::2], strict=False))
        text += ": " + ", ".join(f"{escape(_text(c))} ({n})" for c, n in pairs)
    return text


def _text(name: bytes | str) -> str:
    """A channel name from the server, as text (never fails on non-UTF-8 bytes)."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name
