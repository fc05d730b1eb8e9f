"""Line charts as SVG text, with 95% intervals as error bars: no plotting library needed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 36, 48


@dataclass
class Series:
    """One line: y (None where missing) against x, optional [low, high] intervals, dashed or solid."""

    label: str
    x: list[float]
    y: list[float | None]
    intervals: list[list[float] | None] | None = None
    dashed: bool = False
    colour: str | None = None


def _ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    if integer:  # steps and layers: whole ticks only
        step = max(1, math.ceil(step))
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}"


def line_chart(
    title: str, x_label: str, y_label: str, series: list[Series], *, y_range: tuple[float, float] | None = None
) -> str:
    """An SVG document: every series as a polyline with markers and interval bars, a legend on the right."""
    xs = [x for s in series for x, y in zip(s.x, s.y, strict=True) if y is not None]
    ys = [y for s in series for y in s.y if y is not None]
    ys += [v for s in series for iv in (s.intervals or []) if iv for v in iv]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_range is not None:
        y_lo, y_hi = y_range
    else:
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 0.05)
        y_lo, y_hi = y_lo - pad, y_hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>',
    ]
    for t in _ticks(y_lo, y_hi):
        y = py(t)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x_lo, x_hi, 8, integer=bool(xs) and all(float(x).is_integer() for x in xs)):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" stroke="#444"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        points = [(px(x), py(y)) for x, y in zip(s.x, s.y, strict=True) if y is not None]
        if len(points) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        for j, (x, y) in enumerate(zip(s.x, s.y, strict=True)):
            if y is None:
                continue
            interval = s.intervals[j] if s.intervals else None
            if interval:
                lo, hi = py(interval[0]), py(interval[1])
                out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{lo:.1f}" y2="{hi:.1f}" stroke="{colour}"/>')
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{colour}"/>')
        ly = TOP + 12 + 16 * i
        lx = LEFT + plot_w + 12
        out.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 28}" y="{ly}">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
