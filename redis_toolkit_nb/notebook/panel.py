"""``LivePanel``: the per-subscription view (counters, rate chart, newest rows, log, controls).

Each tick renders one ``Snapshot`` of the subscription (see ``snapshot``) and the rows of its
buffer; a widget is written only when its text changed, so an idle panel sends nothing. The
refreshing thread never writes a trait the user owns (the channel filter's value, the page).

DOM contract (the browser tests rely on it): the outermost widget has CSS class ``rtk-panel``;
the counters widget ``rtk-counters`` (its text includes ``received <N>``); the newest-rows
table ``rtk-table``; the log ``rtk-log``.
"""

from __future__ import annotations

import threading
from html import escape
from itertools import islice
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import orjson

from . import charts
from .errors import failure_html
from .refresher import REFRESHER
from .snapshot import Snapshot, clock

if TYPE_CHECKING:
    from .subscription import Subscription

_SCAN = 5000  # buffered messages scanned per page when a channel filter is on


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


def counters_text(snap: Snapshot, tz: str = "UTC") -> str:
    """The counters line: every figure, "now" with its window, the average since the start."""
    s = snap.stats
    link = "connected" if s.connected else "disconnected"
    if snap.state == "stopped" and snap.stopped_at is not None:
        state = f"<b>stopped</b> at {clock(snap.stopped_at, tz)[:8]} (final figures)"
    else:
        state = f"{snap.state}, {link}"
    text = (
        f"received {s.received} · delivered {s.delivered} · "
        f"{snap.rates.now:.1f} msg/s now (last {snap.rates.window:g} s) · "
        f"{snap.avg:.1f} msg/s avg since start · dropped {s.dropped} · {_sequence(snap)}"
        f"handler errors {s.handler_errors} · decode errors {s.decode_errors} · "
        f"discarded {s.skipped} · reconnects {s.reconnects} · {state}"
    )
    text += _server_buffer(snap)
    if snap.discarding:
        text += ' · <b style="color:#c60">discarding incoming</b>'
    text += _schema(snap, tz)
    if snap.state == "paused" and snap.paused_at is not None:
        text += (
            f'<br><b class="rtk-paused">paused at {clock(snap.paused_at, tz)[:8]}: '
            f"{snap.new_since_pause} new since paused</b> (captured in <code>df</code> and "
            "the counters; Resume shows them)"
        )
    return text + _latency(snap)


def nodes_html(snap: Snapshot, tz: str = "UTC") -> str:
    """The nodes a subscription reads from, its moves and their gaps (empty on one server
    with no sharded channel: nothing to say there)."""
    s = snap.stats
    if len(snap.nodes) <= 1 and not snap.sharded and not s.moves:
        return ""
    parts = []
    for node, state in sorted(snap.nodes.items()):
        held = list(state.sharded_channels)
        if state.classic and (snap.channels or snap.patterns):
            held.insert(0, "channels & patterns")
        mark = "" if state.connected else ' <span style="color:#c00">(down)</span>'
        parts.append(f"<code>{escape(node)}</code> ({escape(', '.join(held) or 'idle')}){mark}")
    line = (
        f"<br>reads from: {'; '.join(parts) or '-'} · moves {s.moves} · longest gap "
        f"{s.max_move_gap_s * 1000:.1f} ms · total gap {s.move_gap_s * 1000:.1f} ms"
    )
    if snap.moves:
        m = snap.moves[-1]
        line += (
            f" · last move: {escape(m.channel)} {escape(str(m.from_node))} \u2192 "
            f"{escape(m.to_node)} at {clock(m.time, tz)}"
        )
    return f'<span class="rtk-nodes">{line}</span>'


def _server_buffer(snap: Snapshot) -> str:
    """The health gauge: this connection's output buffer on the server, in colour from half
    the soft limit on (the server cuts the subscriber off at its limits)."""
    sb = snap.server_buffer
    if sb is None:
        return ""
    colour = {"warn": "#c60", "critical": "#c00"}.get(sb.level)
    if colour is None:
        return f' · <span class="rtk-buffer">{escape(sb.text())}</span>'
    return (
        f'<br><b class="rtk-buffer rtk-buffer-{sb.level}" style="color:{colour}">'
        f"{sb.level}: {escape(sb.text())}</b>"
    )


def _sequence(snap: Snapshot) -> str:
    """``--seq-field``'s figures, beside the loss counters (in colour once any is non-zero)."""
    if snap.sequence is None:
        return ""
    gaps, missing, duplicates, reorders = snap.sequence
    text = f"gaps {gaps} (missing {missing}) · duplicates {duplicates} · reordered {reorders}"
    if gaps or duplicates or reorders:
        text = f'<b class="rtk-gaps" style="color:#c60">{text}</b>'
    return text + " · "


def _latency(snap: Snapshot) -> str:
    """``--latency-field``'s p50 / p99 / max of the busiest channels, on a line of its own."""
    if not snap.latency or not snap.latency[1]:
        return ""
    channels, rows = snap.latency
    parts = [
        f"{escape(str(channel))} {_ms(p50)} / {_ms(p99)} / {_ms(top)} ms"
        for channel, _, p50, p99, top in rows
    ]
    more = channels - len(rows)
    if more > 0:
        parts.append(f"+{more} more channels (<code>{escape(snap.name)}.latency()</code>)")
    return f'<br><span class="rtk-latency">latency p50 / p99 / max: {" · ".join(parts)}</span>'


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f}" if abs(ms) >= 100 else f"{ms:.1f}" if abs(ms) >= 10 else f"{ms:.2f}"


def _schema(snap: Snapshot, tz: str) -> str:
    """Schema drift, on a line of its own once there is any (with the newest change)."""
    if snap.schema is None or not snap.schema[0]:
        return ""
    changes, last = snap.schema
    text = f"schema changes {changes}"
    if last is not None:
        where = f"{last.channel}.{last.field}" if last.field != "(payload)" else last.channel
        if last.change == "type":
            what = f"{last.before} \u2192 {last.after}"
        elif last.change == "appeared":
            what = f"appeared ({last.after})"
        else:
            what = f"disappeared (was {last.before})"
        text += f"; last: {where} {what} at {clock(last.time, tz)[:8]}"
    return f'<br><span class="rtk-schema" style="color:#c60">{escape(text)}</span>'


class LivePanel:
    """The live view of one ``Subscription``; ``widget`` is what the notebook displays."""

    def __init__(self, sub: Subscription, *, log_size: int = 50, table_rows: int = 10) -> None:
        self.sub = sub
        self.log_size = log_size
        self.table_rows = table_rows
        self._lock = threading.RLock()
        #: View state the user owns (set by clicks on the kernel's thread, read by ticks).
        self.page = 0
        self._anchor: int | None = None  # messages counted when the view left "newest"
        self._frozen: Snapshot | None = None  # the snapshot shown while paused
        self._last_key: Any = None
        self._last_snapshot: Snapshot | None = None
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
        self.pause_button.add_class("rtk-pause")
        self.discard_button = W.ToggleButton(
            description="Discard incoming",
            icon="ban",
            tooltip="drop messages as they arrive (counted as discarded, never in df)",
            # Its whole name on screen: a control that discards says so (the default width
            # cut it to "Discard inco...").
            layout=W.Layout(width="max-content", min_width="max-content"),
        )
        self.clear_button = W.Button(description="Clear", icon="eraser")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger")
        # A Combobox: new suggestions never reset what the user chose (a Dropdown would).
        self.filter = W.Combobox(
            placeholder="(all channels)",
            description="Channel",
            ensure_option=False,
            continuous_update=False,
        )
        self.older_button = W.Button(description="Older", icon="chevron-left")
        self.newer_button = W.Button(description="Newer", icon="chevron-right")
        self.page_label = W.HTML()
        self.pause_button.on_click(self._on_pause)
        self.discard_button.observe(
            lambda change: self._guard(lambda: self.sub.discard(change["new"])), names="value"
        )
        self.clear_button.on_click(lambda _: self._guard(self.sub.clear))
        self.stop_button.on_click(lambda _: self._guard(self.sub.stop))
        self.older_button.on_click(lambda _: self._guard(lambda: self.go(self.page + 1)))
        self.newer_button.on_click(lambda _: self._guard(lambda: self.go(self.page - 1)))
        self.filter.observe(lambda _: self._guard(self._filter_changed), names="value")
        self.error = W.HTML()
        controls = W.HBox(
            [
                self.pause_button,
                self.discard_button,
                self.clear_button,
                self.stop_button,
                self.filter,
            ]
        )
        pager = W.HBox([self.older_button, self.newer_button, self.page_label])
        self.widget = W.VBox(
            [
                self.header,
                self.counters,
                self.chart,
                controls,
                self.error,
                W.HTML("<b>Newest messages</b>"),
                self.table,
                pager,
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

    def _filter_changed(self) -> None:
        with self._lock:
            self.page, self._anchor = 0, self._anchor if self.sub.paused else None
            self._last_key = None
        self.refresh()

    def go(self, page: int) -> None:
        """Show page ``page`` of the buffer and the log (0: the newest). Leaving the newest
        page holds the view where it was, so new messages do not shift what is read."""
        with self._lock:
            page = max(page, 0)
            if page and self._anchor is None:
                self._anchor = self.sub.traffic.total
            if not page and not self.sub.paused:
                self._anchor = None
            self.page = page
            self._last_key = None
        self.refresh()

    def cleared(self) -> None:
        """The subscription was cleared: back to the newest page."""
        with self._lock:
            self.page = 0
            self._anchor = self.sub.traffic.total if self.sub.paused else None
            self._last_key = None
        self.refresh()

    def stopped(self) -> None:
        """The subscription ended: keep its last view, marked stopped; disable the controls."""
        REFRESHER.remove(self)
        with self._lock:
            for button in (
                self.pause_button,
                self.discard_button,
                self.clear_button,
                self.stop_button,
            ):
                button.disabled = True
            self._last_key = None
        self.refresh()

    # ---- the tick -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Render the subscription's snapshot (called by the refresher a few times a second)."""
        with self._lock:
            sub = self.sub
            live = sub.snapshot()
            self._last_snapshot = live
            if live.state == "paused":
                if self._frozen is None:
                    self._frozen = live
                    if self._anchor is None:
                        self._anchor = sub._paused_at[1] if sub._paused_at else live.rates.total
            else:
                self._frozen = None
                if self.page == 0:
                    self._anchor = None
            shown = self._frozen or live  # the chart and the log's errors freeze with the view
            wanted = (self.filter.value or "").strip()
            frozen_at = self._frozen.rates.time if self._frozen is not None else None
            key = (live.key(), frozen_at, self.page, self._anchor, wanted)
            if key == self._last_key:
                return  # nothing changed: send nothing
            self._last_key = key
            tz = sub.timezone
            rows = self._rows(wanted, live.rates.total)
            self._set(self.header, self._header(live))
            self._set(self.counters, counters_text(live, tz))
            note = "stopped" if live.state == "stopped" else ("paused" if shown is not live else "")
            legend = dict(shown.rates.top)
            chart = charts.rate_chart(
                shown.rates.series,
                legend=legend,
                note=note,
                now_label=f"now ({shown.rates.window:g} s)",
            )
            self._set(self.chart, chart)
            self._set(self.table, self._table(rows, tz))
            self._set(self.log, self._log(rows, shown, tz))
            self._set(self.page_label, self._page_text(len(rows)))
            options = tuple(c for c in live.rates.channels if c)
            if tuple(self.filter.options) != options:
                self.filter.options = options  # suggestions only: the value is the user's
            self.older_button.disabled = not rows
            self.newer_button.disabled = self.page == 0
            paused = live.state == "paused"
            self.pause_button.description = "Resume" if paused else "Pause"
            self.pause_button.icon = "play" if paused else "pause"

    @staticmethod
    def _set(widget: W.HTML, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def _header(self, snap: Snapshot) -> str:
        names = ", ".join(escape(n) for n in snap.channels) or "-"
        pats = ", ".join(escape(n) for n in snap.patterns) or "-"
        extra = ""
        if snap.stats.last_error:
            extra = f' <span style="color:#c60">last error: {escape(snap.stats.last_error)}</span>'
        stopped = " · <b>stopped</b>" if snap.state == "stopped" else ""
        if snap.sharded or getattr(self.sub, "sharded", False):
            listed = ", ".join(escape(n) for n in snap.sharded) or "-"
            what = f"sharded channels: {listed}"
        else:
            what = f"channels: {names} · patterns: {pats}"
        return (
            f"<b>{escape(self.sub.name)}</b> on {escape(self.sub.url)} · {what}{stopped}{extra}"
            f"{nodes_html(snap, self.sub.timezone)}"
        )

    def _rows(self, wanted: str, total: int) -> list[Any]:
        """The messages of this page, newest first (up to the log's size)."""
        buffer = self.sub.subscriber.buffer
        if buffer is None:
            return []
        count = max(self.table_rows, self.log_size)
        skip = total - self._anchor if self._anchor is not None else 0
        skip = max(skip, 0)
        if not wanted:
            return buffer.newest(skip + (self.page + 1) * count)[skip + self.page * count :]
        scanned = buffer.newest(skip + _SCAN * (self.page + 1))[skip:]
        matching = (m for m in scanned if str(m.channel) == wanted)
        return list(islice(matching, self.page * count, (self.page + 1) * count))

    def _page_text(self, found: int) -> str:
        if self.page == 0 and self._anchor is None:
            return "<i>newest</i>"
        count = max(self.table_rows, self.log_size)
        first = self.page * count + 1
        where = "held while paused" if self.sub.paused else "held: Newer back to page 1 goes live"
        if not found:
            return f"page {self.page + 1}: <i>no older messages in the buffer</i> ({where})"
        return (
            f"page {self.page + 1}: messages {first}-{first + found - 1} from the newest ({where})"
        )

    def _table(self, rows: list[Any], tz: str) -> str:
        if not rows:
            return "<i>no messages yet</i>" if self.page == 0 else "<i>no older messages</i>"
        cells = "".join(
            f"<tr><td>{clock(m.time, tz)}</td><td>{escape(str(m.channel))}</td>"
            f"<td>{escape(str(m.pattern)) if m.pattern is not None else ''}</td>"
            f"<td><code>{escape(preview(m.data))}</code></td><td>{m.size}</td></tr>"
            for m in rows[: self.table_rows]
        )
        return (
            f'<table style="font-size:12px"><thead><tr><th>time ({escape(tz)})</th>'
            "<th>channel</th><th>pattern</th><th>data</th><th>size</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
        )

    def _log(self, rows: list[Any], snap: Snapshot, tz: str) -> str:
        # Handler errors and print output are what the user most needs to see: on the newest
        # page they keep at least half of the log even when messages stream in.
        special: list[tuple[float, str]] = []
        oldest = rows[-1].time if rows and self.page else None
        newest = rows[0].time if rows and (self.page or self._anchor is not None) else None
        for failure in snap.failures[-self.log_size :]:
            t = failure[0]
            if (oldest is None or t >= oldest) and (newest is None or t <= newest):
                special.append((t, failure_html(failure, self.sub.body_filename, tz)))
        for t, channel, text in snap.prints[-self.log_size :]:
            if (oldest is None or t >= oldest) and (newest is None or t <= newest):
                line = f"{clock(t, tz)} {escape(str(channel))}: print: {escape(preview(text, 160))}"
                special.append((t, line))
        for move in snap.moves[-self.log_size :]:
            t = move.time
            if (oldest is None or t >= oldest) and (newest is None or t <= newest):
                text = f"{move.channel} moved {move.from_node} \u2192 {move.to_node}"
                special.append((t, f"{clock(t, tz)} <b>{escape(text)}</b>"))
        special.sort(key=lambda e: e[0], reverse=True)
        special = special[: max(self.log_size // 2, self.log_size - len(rows))]
        entries = special + [
            (m.time, f"{clock(m.time, tz)} {escape(str(m.channel))}: {escape(preview(m.data, 80))}")
            for m in rows[: self.log_size - len(special)]
        ]
        entries.sort(key=lambda e: e[0], reverse=True)
        lines = "<br>".join(text for _, text in entries)
        return f'<div style="font-family:monospace;font-size:11px">{lines or "<i>empty</i>"}</div>'

    def __repr__(self) -> str:
        return f"<LivePanel {self.sub.name}>"
