"""Charts drawn as SVG text, shown in an ``ipywidgets.HTML``.

SVG inside an HTML widget needs no frontend extension, so it renders the same in JupyterLab,
Notebook 7 and Voila. Every label comes from the network (channel names) and is escaped.
"""

from __future__ import annotations

from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")


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
    left, right, top, bottom = 44, 130, 12, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max((len(v) for v in series.values()), default=60)
    peak = max((max(v) for v in series.values() if v), default=0)
    ymax = max(peak, 1)
    parts = [
        f'<svg class="rtk-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="messages per second per channel, last minute">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#ccc"/>',
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
            f'font-size="11" fill="#c60" text-anchor="end">{escape(note)}</text>'
        )
    if not series:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" '
            'fill="#888" text-anchor="middle">no messages in the last minute</text>'
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
    links: list[tuple[str, str, float]], width: int = 640, row: int = 26, unit: str = "msg"
) -> str:
    """Traffic from subscriptions (left) to channels (right), as bands as wide as the traffic.

    ``links`` are ``(source, channel, amount)``: a source is a subscribed channel or pattern
    (with its subscription's name), ``amount`` the messages it carried.
    """
    sources = sorted({s for s, _, _ in links})
    targets: dict[str, float] = {}
    for _, t, a in links:
        targets[t] = targets.get(t, 0) + a
    channels = sorted(targets, key=lambda t: (-targets[t], t))
    rows = max(len(sources), len(channels), 1)
    height = rows * row + 30
    if not links:
        return (
            f'<svg class="rtk-flows" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="60"><text x="{width / 2}" y="32" font-size="12" fill="#888" '
            'text-anchor="middle">no traffic yet: start a subscription</text></svg>'
        )
    peak = max(a for _, _, a in links) or 1
    box_w, lx, rx = 170, 8, width - 178
    src_y = {s: 20 + i * row for i, s in enumerate(sources)}
    dst_y = {t: 20 + i * row for i, t in enumerate(channels)}
    source_total: dict[str, float] = {}
    for s, _, a in links:
        source_total[s] = source_total.get(s, 0) + a
    parts = [
        f'<svg class="rtk-flows" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="traffic per subscription and channel">',
        f'<text x="{lx}" y="12" font-size="10" fill="#555">subscribed as</text>',
        f'<text x="{rx}" y="12" font-size="10" fill="#555">channel</text>',
    ]
    for _k, (s, t, a) in enumerate(sorted(links, key=lambda x: -x[2])):
        w = max(1.5, a / peak * (row - 6))
        x0, x1 = lx + box_w, rx
        y0, y1 = src_y[s] + row / 2 - 3, dst_y[t] + row / 2 - 3
        mid = (x0 + x1) / 2
        color = PALETTE[sources.index(s) % len(PALETTE)]
        parts.append(
            f'<path class="rtk-flow" data-source="{escape(s)}" data-channel="{escape(t)}" '
            f'd="M{x0},{y0} C{mid},{y0} {mid},{y1} {x1},{y1}" fill="none" stroke="{color}" '
            f'stroke-opacity="0.55" stroke-width="{w:.1f}"><title>{escape(s)} \u2192 '
            f"{escape(t)}: {_fmt(a)} {unit}</title></path>"
        )
    for s in sources:
        y = src_y[s]
        color = PALETTE[sources.index(s) % len(PALETTE)]
        parts.append(
            f'<rect x="{lx}" y="{y}" width="{box_w}" height="{row - 6}" rx="3" '
            f'fill="{color}" fill-opacity="0.15" stroke="{color}"/>'
            f'<text x="{lx + 4}" y="{y + row / 2}" font-size="11">{escape(_short(s, 20))} '
            f"({_fmt(source_total[s])})</text>"
        )
    for t in channels:
        y = dst_y[t]
        parts.append(
            f'<rect x="{rx}" y="{y}" width="{box_w}" height="{row - 6}" rx="3" fill="#eee" '
            f'stroke="#999"/><text x="{rx + 4}" y="{y + row / 2}" font-size="11">'
            f"{escape(_short(t, 20))} ({_fmt(targets[t])})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
