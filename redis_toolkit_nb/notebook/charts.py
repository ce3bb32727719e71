"""Charts drawn as SVG text, shown in an ``ipywidgets.HTML``.

SVG inside an HTML widget needs no frontend extension, so it renders the same in JupyterLab,
Notebook 7 and Voila. Every label comes from the network (channel names) and is escaped.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .flows import FlowLink

# Mid-tone line colours: readable on JupyterLab's light and dark backgrounds alike.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")
# Text, lines and boxes follow JupyterLab's theme (CSS variables, light and dark); the
# fallbacks are the light theme's colours, for frontends without them.
TEXT = "var(--jp-ui-font-color1, #1f1f1f)"
TEXT_DIM = "var(--jp-ui-font-color2, #616161)"
LINE = "var(--jp-border-color1, #bdbdbd)"
BOX = "var(--jp-layout-color2, #eeeeee)"
WARN = "var(--jp-warn-color0, #cc6600)"
# On the <svg>: every <text> inherits the theme's text colour.
_SVG_STYLE = f'style="fill:{TEXT};color:{TEXT}"'


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def rate_chart(
    series: dict[str, list[int]],
    width: int = 560,
    height: int = 180,
    legend: dict[str, float] | None = None,
    note: str = "",
    now_label: str = "now",
) -> str:
    """A line per channel: messages per second over the window (oldest on the left).

    ``legend`` gives each channel's rate "now" (the panel's one definition); without it the
    legend shows the last second drawn. ``note`` is written in the top right corner.
    """
    left, right, top, bottom = 44, 150, 12, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max((len(v) for v in series.values()), default=60)
    peak = max((max(v) for v in series.values() if v), default=0)
    ymax = max(peak, 1)
    parts = [
        f'<svg class="rtk-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" {_SVG_STYLE} '
        'aria-label="messages per second per channel, last minute">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
        f'style="fill:none;stroke:{LINE}"/>',
        f'<text x="{left - 4}" y="{top + 9}" font-size="10" text-anchor="end">{_fmt(ymax)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 6}" font-size="10">-{n}s</text>',
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="10" '
        f'text-anchor="end">{escape(now_label)}</text>',
        f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="10" '
        'text-anchor="middle">messages/s</text>',
    ]
    if note:
        parts.append(
            f'<text class="rtk-chart-note" x="{left + plot_w - 4}" y="{top + 12}" '
            f'font-size="11" style="fill:{WARN}" text-anchor="end">{escape(note)}</text>'
        )
    if not series:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" '
            f'style="fill:{TEXT_DIM}" text-anchor="middle">no messages in the last minute</text>'
        )
    step = plot_w / max(n - 1, 1)
    for k, (channel, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(
            f"{left + i * step:.1f},{top + plot_h - v / ymax * plot_h:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline class="rtk-series" data-channel="{escape(channel)}" fill="none" '
            f'stroke="{color}" stroke-width="1.5" points="{points}"/>'
        )
        y = top + 10 + k * 14
        last = legend.get(channel, 0.0) if legend is not None else (values[-1] if values else 0)
        parts.append(
            f'<rect x="{left + plot_w + 8}" y="{y - 8}" width="10" height="3" fill="{color}"/>'
            f'<text x="{left + plot_w + 22}" y="{y - 3}" font-size="10">'
            f"{escape(_short(channel, 14))} {_fmt(last)}/s</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def flows_chart(
    links: list[FlowLink],
    *,
    window: float = 1.0,
    span: int = 60,
    delivered: dict[str, int] | None = None,
    width: int = 720,
    row: int = 26,
) -> str:
    """Deliveries per second from subscriptions (left) to channels (right), as bands as wide
    as the rate, with totals in each element's ``<title>`` (shown on hover).

    ``links`` come in drawing order: sources and channels are laid out in the order they
    first appear, so the caller keeps the layout stable. A source is ``"subscription:
    channel-or-pattern"``; its ``rate`` is deliveries per second over the last ``window``
    seconds and ``recent`` the deliveries of the last ``span`` seconds. A channel box shows
    its distinct messages per second (what one link carries) and ``×N`` when N links
    deliver each message; ``delivered`` gives each subscription's total since it started.
    """
    if not links:
        return (
            f'<svg class="rtk-flows" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="60" {_SVG_STYLE}><text x="{width / 2}" y="32" font-size="12" '
            f'style="fill:{TEXT_DIM}" text-anchor="middle">no traffic yet: start a '
            "subscription</text></svg>"
        )
    from .flows import OTHER_CHANNELS  # the one channel box with no distinct figure

    sources: dict[str, list[float]] = {}  # rate, recent
    channels: dict[str, list[float]] = {}  # deliveries, links, recent deliveries
    for s, c, rate, recent in links:
        src = sources.setdefault(s, [0.0, 0.0])
        src[0] += rate
        src[1] += recent
        ch = channels.setdefault(c, [0.0, 0, 0.0])
        ch[0], ch[1], ch[2] = ch[0] + rate, ch[1] + 1, ch[2] + recent
    rows = max(len(sources), len(channels))
    height = rows * row + 30
    peak = max(lk.rate for lk in links) or 1.0
    box_w, lx = 220, 8
    rx = width - box_w - 8
    src_y = {s: 20 + i * row for i, s in enumerate(sources)}
    dst_y = {c: 20 + i * row for i, c in enumerate(channels)}
    color = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sources)}
    now = f"now (last {window:g} s)"
    parts = [
        f'<svg class="rtk-flows" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" {_SVG_STYLE} '
        f'aria-label="deliveries per second per subscription and channel, {now}">',
        f'<text x="{lx}" y="12" font-size="10" style="fill:{TEXT_DIM}">subscribed as: '
        f"deliveries/s {now}</text>",
        f'<text x="{rx + box_w}" y="12" font-size="10" text-anchor="end" '
        f'style="fill:{TEXT_DIM}">channel: distinct messages/s (\u00d7N: N deliveries)</text>',
    ]
    for s, c, rate, recent in links:
        w = max(1.5, rate / peak * (row - 6))
        x0, x1 = lx + box_w, rx
        y0, y1 = src_y[s] + row / 2 - 3, dst_y[c] + row / 2 - 3
        mid = (x0 + x1) / 2
        parts.append(
            f'<path class="rtk-flow" data-source="{escape(s)}" data-channel="{escape(c)}" '
            f'd="M{x0},{y0} C{mid},{y0} {mid},{y1} {x1},{y1}" fill="none" '
            f'stroke="{color[s]}" stroke-opacity="0.6" stroke-width="{w:.1f}"><title>'
            f"{escape(s)} \u2192 {escape(c)}: {rate:.1f} deliveries/s {now}; "
            f"{recent:,.0f} in the last {span} s</title></path>"
        )
    delivered = delivered or {}
    for s, (rate, recent) in sources.items():
        y = src_y[s]
        name = s.split(": ", 1)[0]
        total = (
            f"; subscription {name}: {delivered[name]:,} delivered since it started"
            if name in delivered
            else ""
        )
        parts.append(
            f'<g class="rtk-flow-source"><title>{escape(s)}: {rate:.1f} deliveries/s {now}; '
            f"{recent:,.0f} in the last {span} s{escape(total)}</title>"
            f'<rect x="{lx}" y="{y}" width="{box_w}" height="{row - 6}" rx="3" '
            f'fill="{color[s]}" fill-opacity="0.18" stroke="{color[s]}"/>'
            f'<text x="{lx + 4}" y="{y + row / 2}" font-size="11">{escape(_short(s, 24))} '
            f"{_fmt(rate)}/s</text></g>"
        )
    for c, (deliveries, n, recent) in channels.items():
        # Every link of a channel carries each of its messages: distinct = the links' mean.
        distinct, recent_distinct, n = deliveries / n, recent / n, int(n)
        y = dst_y[c]
        if c == OTHER_CHANNELS:
            label = f"{_fmt(deliveries)}/s"
            title = f"{deliveries:.1f} deliveries/s {now}; {recent:,.0f} in the last {span} s"
        else:
            label = f"{_fmt(distinct)}/s" + (f" \u00d7{n}" if n > 1 else "")
            title = (
                f"{distinct:.1f} distinct messages/s {now}, {deliveries:.1f} deliveries/s "
                f"over {n} link(s); {recent_distinct:,.0f} messages ({recent:,.0f} "
                f"deliveries) in the last {span} s"
            )
        parts.append(
            f'<g class="rtk-flow-channel" data-channel="{escape(c)}"><title>{escape(c)}: '
            f'{title}</title><rect x="{rx}" y="{y}" width="{box_w}" height="{row - 6}" rx="3" '
            f'style="fill:{BOX};stroke:{LINE}"/><text x="{rx + 4}" y="{y + row / 2}" '
            f'font-size="11">{escape(_short(c, 24))} {label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
