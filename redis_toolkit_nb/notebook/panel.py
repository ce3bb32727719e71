"""``LivePanel``: the per-subscription view (counters, rate chart, newest rows, log, controls).

DOM contract (the browser tests rely on it): the outermost widget has CSS class ``rtk-panel``;
the counters widget ``rtk-counters`` (its text includes ``received <N>``); the newest-rows
table ``rtk-table``; the log ``rtk-log``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import orjson

from . import charts
from .refresher import REFRESHER

if TYPE_CHECKING:
    from .subscription import Subscription

ALL = "(all channels)"
_SCAN = 5000  # newest buffered messages scanned when a channel filter is on


def preview(value: Any, limit: int = 120) -> str:
    """A one-line text form of a payload, cut to ``limit`` characters (not yet escaped)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = repr(value)
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            text = repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def counters_text(sub: Subscription, now_rate: float) -> str:
    s = sub.stats
    state = "stopped" if not sub.running else ("paused" if s.paused else "running")
    link = "connected" if s.connected else "disconnected"
    return (
        f"received {s.received} · delivered {s.delivered} · {now_rate:.1f} msg/s now "
        f"({s.rate:.1f} avg) · dropped {s.dropped} · handler errors {s.handler_errors} · "
        f"decode errors {s.decode_errors} · skipped {s.skipped} · reconnects {s.reconnects} · "
        f"{state}, {link}"
    )


class LivePanel:
    """The live view of one ``Subscription``; ``widget`` is what the notebook displays."""

    def __init__(self, sub: Subscription, *, log_size: int = 50, table_rows: int = 10) -> None:
        self.sub = sub
        self.log_size = log_size
        self.table_rows = table_rows
        self._lock = threading.RLock()
        self.header = W.HTML()
        self.counters = W.HTML()
        self.counters.add_class("rtk-counters")
        self.chart = W.HTML()
        self.chart.add_class("rtk-chart")
        self.table = W.HTML()
        self.table.add_class("rtk-table")
        # Bounded on screen too: the log scrolls instead of growing the cell.
        self.log = W.HTML(layout=W.Layout(max_height="18em", overflow="auto"))
        self.log.add_class("rtk-log")
        self.pause_button = W.Button(description="Pause", icon="pause")
        self.clear_button = W.Button(description="Clear", icon="eraser")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger")
        self.filter = W.Dropdown(options=[ALL], value=ALL, description="Channel")
        self.pause_button.on_click(self._on_pause)
        self.clear_button.on_click(lambda _: self._guard(self.sub.clear))
        self.stop_button.on_click(lambda _: self._guard(self.sub.stop))
        self._syncing = False
        self.filter.observe(
            lambda _: None if self._syncing else self._guard(self.refresh), names="value"
        )
        self.error = W.HTML()
        controls = W.HBox([self.pause_button, self.clear_button, self.stop_button, self.filter])
        self.widget = W.VBox(
            [
                self.header,
                self.counters,
                self.chart,
                controls,
                self.error,
                W.HTML("<b>Newest messages</b>"),
                self.table,
                W.HTML("<b>Log</b> (messages, handler errors, print output; newest first)"),
                self.log,
            ]
        )
        self.widget.add_class("rtk-panel")
        self.refresh()
        REFRESHER.add(self)

    # ---- controls (run on the kernel's main thread, from button clicks) -----------------------
    def _guard(self, action: Any) -> None:
        """Run a button's action; show its error in the panel instead of losing it."""
        try:
            action()
            self.error.value = ""
        except Exception as exc:  # noqa: BLE001 - a callback's error is shown, not raised
            self.error.value = (
                f'<span style="color:#c00">{escape(type(exc).__name__)}: {escape(str(exc))}</span>'
            )

    def _on_pause(self, _: Any) -> None:
        self._guard(self.sub.resume if self.sub.paused else self.sub.pause)

    def stopped(self) -> None:
        """The subscription ended: show the final figures, disable the controls."""
        REFRESHER.remove(self)
        with self._lock:
            for button in (self.pause_button, self.clear_button, self.stop_button):
                button.disabled = True
        self.refresh()

    # ---- the tick -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute what is shown (called by the refresher a few times a second)."""
        with self._lock:
            sub = self.sub
            now = time.time()
            stats = sub.stats
            if sub.running:
                sub.rates.sample(stats.by_channel, now)
            recent = sub.rates.recent(5, now)
            _, series = sub.rates.series(now)
            channels = sorted({str(c) for c in stats.by_channel} | set(recent))
            header = self._header(stats)
            counters = counters_text(sub, sum(recent.values()))
            chart = charts.rate_chart(series)
            rows = self._rows()
            table = self._table(rows)
            log = self._log(rows)
            with self.widget.hold_sync():
                self.header.value = header
                self.counters.value = counters
                self.chart.value = chart
                self.table.value = table
                self.log.value = log
                wanted = [ALL, *channels[:200]]
                if self.filter.value not in wanted:
                    # Keep the selection listed (after Clear, say) so the menu stays live.
                    wanted.append(self.filter.value)
                if list(self.filter.options) != wanted:
                    # A Dropdown resets its value when its options change: put it back, with
                    # the observer muted (this is not the user choosing a channel).
                    current = self.filter.value
                    self._syncing = True
                    try:
                        self.filter.options = wanted
                        self.filter.value = current
                    finally:
                        self._syncing = False
                self.pause_button.description = "Resume" if stats.paused else "Pause"
                self.pause_button.icon = "play" if stats.paused else "pause"

    def _header(self, stats: Any) -> str:
        names = ", ".join(escape(n) for n in stats.channels) or "-"
        pats = ", ".join(escape(n) for n in stats.patterns) or "-"
        extra = ""
        if stats.last_error:
            extra = f' <span style="color:#c60">last error: {escape(stats.last_error)}</span>'
        return (
            f"<b>{escape(self.sub.name)}</b> on {escape(self.sub.url)} · channels: {names} · "
            f"patterns: {pats}{extra}"
        )

    def _rows(self) -> list[Any]:
        buffer = self.sub.subscriber.buffer
        if buffer is None:
            return []
        wanted = self.filter.value
        count = max(self.table_rows, self.log_size)
        if wanted == ALL:
            return buffer.newest(count)
        return [m for m in buffer.newest(_SCAN) if str(m.channel) == wanted][:count]

    def _table(self, rows: list[Any]) -> str:
        if not rows:
            return "<i>no messages yet</i>"
        cells = "".join(
            f"<tr><td>{clock(m.time)}</td><td>{escape(str(m.channel))}</td>"
            f"<td>{escape(str(m.pattern)) if m.pattern is not None else ''}</td>"
            f"<td><code>{escape(preview(m.data))}</code></td><td>{m.size}</td></tr>"
            for m in rows[: self.table_rows]
        )
        return (
            '<table style="font-size:12px"><thead><tr><th>time (UTC)</th><th>channel</th>'
            f"<th>pattern</th><th>data</th><th>size</th></tr></thead><tbody>{cells}</tbody>"
            "</table>"
        )

    def _log(self, rows: list[Any]) -> str:
        # Handler errors and print output are what the user most needs to see: they keep at
        # least half of the log even when messages stream in; messages fill the rest.
        special: list[tuple[float, str]] = []
        for t, channel, _data, exc, _tb in self.sub.failures[-self.log_size :]:
            special.append(
                (
                    t,
                    f'<span style="color:#c00">{clock(t)} {escape(str(channel))}: handler error '
                    f"{escape(type(exc).__name__)}: {escape(preview(str(exc), 160))}</span>",
                )
            )
        for t, channel, text in list(self.sub.prints)[-self.log_size :]:
            special.append(
                (t, f"{clock(t)} {escape(str(channel))}: print: {escape(preview(text, 160))}")
            )
        special.sort(key=lambda e: e[0], reverse=True)
        special = special[: max(self.log_size // 2, self.log_size - len(rows))]
        entries = special + [
            (m.time, f"{clock(m.time)} {escape(str(m.channel))}: {escape(preview(m.data, 80))}")
            for m in rows[: self.log_size - len(special)]
        ]
        entries.sort(key=lambda e: e[0], reverse=True)
        lines = "<br>".join(text for _, text in entries)
        return f'<div style="font-family:monospace;font-size:11px">{lines or "<i>empty</i>"}</div>'

    def __repr__(self) -> str:
        return f"<LivePanel {self.sub.name}>"
