"""Charts as inline SVG, drawn on the server: no script, no library, nothing to fetch.

Each chart scales to its container (viewBox), names itself for screen readers
(role="img" and a summary), and every bar or point carries a <title> tooltip."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 200
LEFT, RIGHT, TOP, BOTTOM = 58, 8, 12, 24


def nice_ceiling(value: float, steps: tuple[int, ...] = (1, 2, 5)) -> float:
    """The smallest step times a power of ten at or above `value` (at least the first
    step): a round top for the axis, whose half is round too."""
    power = 1.0
    while True:
        for step in steps:
            if step * power >= value:
                return step * power
        power *= 10


def _day(d: date) -> str:
    return d.strftime("%b %-d")


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def _frame(title: str, summary: str, top: float, unit: str, body: list[str]) -> Markup:
    plot_h = HEIGHT - TOP - BOTTOM
    grid = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        grid.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_short(top * fraction))}{escape(unit)}</text>"
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(summary)}">'
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>"
        + "".join(grid)
        + "".join(body)
        + "</svg>"
    )


def _x_labels(days: Sequence[date], x_of: Callable[[int], float]) -> list[str]:
    if not days:
        return []
    picks = sorted({0, len(days) // 2, len(days) - 1})
    anchors = {0: "start", len(days) - 1: "end"}
    return [
        f'<text class="axis" x="{x_of(i):.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="{anchors.get(i, "middle")}">{escape(_day(days[i]))}</text>'
        for i in picks
    ]


def bar_chart(
    points: Sequence[tuple[date, int]], *, title: str, unit: str = "", what: str = ""
) -> Markup:
    """One bar per day; `what` names a bar's value in its tooltip ("jobs", "RCC")."""
    days = [d for d, _ in points]
    values = [v for _, v in points]
    top = nice_ceiling(max(values, default=0), steps=(2, 4, 10))  # whole halves: 1, 2, 5...
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(points))

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    bars = []
    for i, (d, v) in enumerate(points):
        h = plot_h * max(v, 0) / top
        bars.append(
            f'<rect class="bar" x="{LEFT + slot * i + slot * 0.15:.1f}" '
            f'y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}">'
            f"<title>{escape(_day(d))}: {v:,} {escape(what)}</title></rect>"
        )
    total = sum(values)
    peak = max(points, key=lambda p: p[1]) if points else None
    summary = f"{total:,} {what} over {len(points)} days"
    if peak is not None and peak[1] > 0:
        summary += f", most on {_day(peak[0])} ({peak[1]:,})"
    return _frame(title, summary, top, unit, bars + _x_labels(days, x_of))


def rate_chart(points: Sequence[tuple[date, float | None]], *, title: str) -> Markup:
    """A line of percentages per day; days with nothing to measure leave a gap."""
    days = [d for d, _ in points]
    known = [v for _, v in points if v is not None]
    top = min(nice_ceiling(max(known, default=0.0) * 100, steps=(1, 2, 5, 10)), 100.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(points))

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - min(v * 100, top) / top)

    lines: list[str] = []
    dots: list[str] = []
    run: list[str] = []
    for i, (d, v) in enumerate([*points, (date.min, None)]):  # the sentinel ends a run
        if v is None:
            if len(run) > 1:
                lines.append(f'<polyline class="line" points="{" ".join(run)}"/>')
            run = []
            continue
        run.append(f"{x_of(i):.1f},{y_of(v):.1f}")
        dots.append(
            f'<circle class="dot" cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3">'
            f"<title>{escape(_day(d))}: {v * 100:.1f}% failed</title></circle>"
        )
    body = lines + dots
    summary = (
        f"average {sum(known) / len(known) * 100:.1f}% on {len(known)} days with finished jobs"
        if known
        else "no finished jobs in this period"
    )
    return _frame(title, summary, top, "%", body + _x_labels(days, x_of))
