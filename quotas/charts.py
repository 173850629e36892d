"""Server-rendered inline SVG charts for the admin: no JavaScript, no assets, no CDN.

Each function returns a complete ``<svg>`` element (safe HTML; every label is escaped). Hovering
a point or bar shows its exact value through SVG ``<title>`` tooltips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e07b39", "#5b9e4d", "#b0413e", "#7a5aa6", "#c9a227", "#3b8ea5", "#888")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 44


def _nice_max(value: float, *, whole: bool = True) -> float:
    """The top of the axis. For whole counts it is a multiple of 4 × a round unit, so the
    four gridlines fall on whole numbers (a top of 1 would label 0.25, 0.5 …)."""
    if whole:
        unit = 10 ** max(len(str(int(max(value, 1)))) - 2, 0)
        return max(math.ceil(value / (4 * unit)), 1) * 4 * unit
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 4, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value % 1 else str(int(value))


def _value(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:,.6f}".rstrip("0")


def _frame(title: str, top: float, inner_h: float) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="quota-chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = TOP + inner_h - inner_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#666">{_short(top * i / 4)}</text>'
        )
    return parts


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = LEFT
    for index, name in enumerate(names):
        color = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#333">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return parts


def _empty(title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - only escaped text inside
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} 60" width="100%" '
        f'role="img" class="quota-chart"><text x="{LEFT}" y="34" font-size="13" fill="#666">'
        f"{escape(title)}: no data for this selection.</text></svg>"
    )


def line_chart(
    *, title: str, days: Sequence[date], series: Mapping[str, Sequence[float]], whole: bool = True
) -> SafeString:
    """One line per series over ``days`` (tokens per day by model)."""
    if not days or not series:
        return _empty(title)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(
        max((max(values) for values in series.values() if values), default=0), whole=whole
    )
    step = inner_w / max(len(days) - 1, 1)
    parts = _frame(title, top, inner_h)
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        points = [
            (LEFT + step * i, TOP + inner_h - inner_h * value / top)
            for i, value in enumerate(values)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for (x, y), day, value in zip(points, days, values, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>'
                f"{escape(name)} {day:%Y-%m-%d}: {_value(value)}</title></circle>"
            )
    parts += _day_labels(days, step)
    parts += _legend(list(series))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label above is escaped


def _day_labels(days: Sequence[date], step: float) -> list[str]:
    every = max(len(days) // 8, 1)
    return [
        f'<text x="{LEFT + step * i:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
        f'font-size="11" fill="#666">{day:%m-%d}</text>'
        for i, day in enumerate(days)
        if i % every == 0
    ]


def bar_chart(
    *, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], whole: bool = True
) -> SafeString:
    """Grouped bars: one group per label, one bar per series (requests per day; 429s per
    organization split by kind)."""
    if not labels or not series or not any(any(v) for v in series.values()):
        return _empty(title)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max(max(values) for values in series.values()), whole=whole)
    group = inner_w / len(labels)
    bar = max(group * 0.8 / len(series), 1)
    parts = _frame(title, top, inner_h)
    for s_index, (name, values) in enumerate(series.items()):
        color = PALETTE[s_index % len(PALETTE)]
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            height = inner_h * value / top
            x = LEFT + group * i + group * 0.1 + bar * s_index
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + inner_h - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{color}"><title>{escape(label)} · {escape(name)}: '
                f"{_value(value)}</title></rect>"
            )
    every = max(len(labels) // 10, 1)
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text x="{LEFT + group * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle" font-size="11" fill="#666">{escape(label[:18])}</text>'
            )
    parts += _legend(list(series))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label above is escaped
