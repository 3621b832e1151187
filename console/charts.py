"""Small server-rendered SVG charts (bars and lines) for the analytics page: no scripts, no external assets."""

import math
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 26
GRID = "#e3e6ea"
AXIS_TEXT = "#6b7280"
Value = float | int | None


def _fmt(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


def _frame(
    title: str, body: list[str], labels: Sequence[str], top: float, fmt: Callable[[float], str], ticks: int
) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(ticks + 1):
        y = TOP + plot_h - plot_h * step / ticks
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS_TEXT}">'
            f"{escape(fmt(top * step / ticks))}</text>"
        )
    n = max(len(labels), 1)
    every = max(1, -(-n // 10))  # at most about ten axis labels
    for i, label in enumerate(labels):
        if i % every == (n - 1) % every:  # the last (today) always labelled
            x = LEFT + plot_w * (i + 0.5) / n
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="{AXIS_TEXT}">{escape(label)}</text>'
            )
    parts += body
    parts.append("</svg>")
    return Markup("".join(parts))


def _ceiling(values: Sequence[Value], minimum: float, ticks: int) -> float:
    """The top of the axis: at least `minimum`; for counts, a multiple of the ticks so that every tick is whole."""
    present = [v for v in values if v is not None]
    top = max([minimum, *(float(v) for v in present)]) or minimum
    if all(isinstance(v, int) for v in present):
        top = math.ceil(top / ticks) * ticks
    return top


def bar_chart(
    labels: Sequence[str],
    values: Sequence[Value],
    *,
    title: str,
    fmt: Callable[[float], str] = _fmt,
    color: str = "#1d4ed8",
    minimum: float = 1.0,
    ticks: int = 4,
) -> Markup:
    """One bar per label (a missing value draws no bar), each with a hover title."""
    top = _ceiling(values, minimum, ticks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        h = plot_h * float(value) / top
        x = LEFT + slot * i + slot * 0.15
        body.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(label)}：{escape(fmt(float(value)))}</title></rect>"
        )
    return _frame(title, body, labels, top, fmt, ticks)


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Value], str]],
    *,
    title: str,
    fmt: Callable[[float], str] = _fmt,
    maximum: float | None = None,
    ticks: int = 4,
) -> Markup:
    """One line per (name, values, colour) series, broken where a value is missing, with a legend."""
    top = maximum if maximum is not None else _ceiling([v for _, values, _ in series for v in values], 1.0, ticks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)
    body = []
    for number, (name, values, color) in enumerate(series):
        runs: list[list[str]] = [[]]
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            if value is None:
                runs.append([])
                continue
            x, y = LEFT + plot_w * (i + 0.5) / n, TOP + plot_h - plot_h * float(value) / top
            runs[-1].append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)} {escape(label)}：{escape(fmt(float(value)))}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                body.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"/>')
        lx = LEFT + 8 + number * 120
        body.append(f'<rect x="{lx}" y="2" width="10" height="10" fill="{color}"/>')
        body.append(f'<text x="{lx + 14}" y="11" fill="#374151">{escape(name)}</text>')
    return _frame(title, body, labels, top, fmt, ticks)


def percent(value: float) -> str:
    """A share as a whole percentage."""
    return f"{value * 100:.0f}%"


def time_format(values: Sequence[Value]) -> Callable[[float], str]:
    """A formatter of seconds in one unit for a whole axis: hours when the largest value is two hours or more, else
    minutes."""
    if max([0.0, *(float(v) for v in values if v is not None)]) >= 7200:
        return lambda seconds: f"{seconds / 3600:.1f} 小时"
    return lambda seconds: f"{seconds / 60:.0f} 分"
