"""The burst's boot-time chart as inline SVG: a histogram of request-to-ACTIVE times, p50/p95/threshold lines.

Hand-written SVG keeps the report a single offline file with no plotting dependency; the figure is simple
enough that this stays small and testable (the numbers are in the markup).
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 20, 28, 48


def nice_step(span: float, target_ticks: int = 6) -> float:
    """A 1/2/5 x 10^n step giving about `target_ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def histogram(times: list[float], bins: int = 20) -> tuple[list[int], float, float]:
    """Counts per bin over [0, upper), upper a multiple of a nice step so bin edges are round numbers."""
    upper = max(times) if times else 1.0
    step = nice_step(upper, bins)
    upper = step * max(1, math.ceil(upper / step + 1e-9))
    if upper <= max(times or [0]):
        upper += step
    nbins = int(round(upper / step))
    counts = [0] * nbins
    for t in times:
        counts[min(nbins - 1, int(t // step))] += 1
    return counts, step, upper


def _fmt(value: float) -> str:
    return f"{value:g}"


def boot_time_svg(burst: dict | None) -> str:
    """The chart, or a paragraph saying why there is none."""
    if not burst:
        return '<p class="conformance-nochart">No burst was run (R12 has no boot times in this run).</p>'
    servers = burst.get("servers") or []
    summary = burst.get("summary") or {}
    times = [float(s["request_to_active_s"]) for s in servers if isinstance(s.get("request_to_active_s"), (int, float))]
    failed = len(servers) - len(times)
    if not times:
        return (
            f'<p class="conformance-nochart">The burst recorded no boot times ({len(servers)} servers, '
            f"none reached ACTIVE).</p>"
        )
    counts, step, upper = histogram(times)
    markers = [
        ("p50", summary.get("p50"), "#1f77b4"),
        ("p95", summary.get("p95"), "#ff7f0e"),
        ("threshold", burst.get("max_p95_boot_s"), "#d62728"),
    ]
    # A threshold far beyond every boot time would squash the bars into a corner: it is then named at the
    # right edge ("off scale") instead of drawn.
    on_scale = [
        (label, v, colour)
        for label, v, colour in markers
        if isinstance(v, (int, float)) and (label != "threshold" or v <= 2 * upper)
    ]
    upper = max([upper] + [float(v) + step for _, v, _ in on_scale])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ymax = max(counts)
    ystep = max(1, int(nice_step(ymax, 5)))
    ytop = ystep * math.ceil(ymax / ystep)

    def x(value: float) -> float:
        return LEFT + plot_w * value / upper

    def y(count: float) -> float:
        return TOP + plot_h * (1 - count / ytop)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="conformance-boot-chart" '
        f'width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>Boot times of {len(servers)} servers (request to ACTIVE), {failed} without a time</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>',
    ]
    for tick in range(0, ytop + 1, ystep):
        parts.append(
            f'<line x1="{LEFT - 4}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    xstep = nice_step(upper, 8)
    tick = 0.0
    while tick <= upper + 1e-9:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{TOP + plot_h}" x2="{x(tick):.1f}" y2="{TOP + plot_h + 4}" '
            f'stroke="#333"/><text x="{x(tick):.1f}" y="{TOP + plot_h + 16}" '
            f'text-anchor="middle">{_fmt(round(tick, 6))}</text>'
        )
        tick += xstep
    for index, count in enumerate(counts):
        if count:
            left, right = x(index * step), x((index + 1) * step)
            parts.append(
                f'<rect class="bar" x="{left + 0.5:.1f}" y="{y(count):.1f}" width="{right - left - 1:.1f}" '
                f'height="{TOP + plot_h - y(count):.1f}" fill="#6b8fb3" data-count="{count}" '
                f'data-from="{_fmt(index * step)}"><title>{_fmt(index * step)}-{_fmt((index + 1) * step)} s:'
                f" {count}</title></rect>"
            )
    # Labels on three rows so close p50/p95/threshold lines stay readable.
    for (label, value, colour), label_y in zip(markers, (TOP - 16, TOP - 4, TOP + 12), strict=False):
        if not isinstance(value, (int, float)):
            continue
        text = f"{escape(label)} {_fmt(round(float(value), 1))} s"
        if (label, value, colour) not in on_scale:
            parts.append(
                f'<text class="marker-off-scale" data-marker="{label}" x="{LEFT + plot_w - 4}" y="{label_y}" '
                f'text-anchor="end" fill="{colour}">{text} (off scale) &#8594;</text>'
            )
            continue
        anchor_start = x(value) < WIDTH - 140
        parts.append(
            f'<line class="marker" data-marker="{label}" x1="{x(value):.1f}" y1="{TOP}" '
            f'x2="{x(value):.1f}" y2="{TOP + plot_h}" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{"6,3" if label == "threshold" else "none"}"/>'
            f'<text x="{x(value) + (3 if anchor_start else -3):.1f}" y="{label_y}" '
            f'text-anchor="{"start" if anchor_start else "end"}" fill="{colour}">{text}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">seconds from create request '
        f"to ACTIVE (bin {_fmt(step)} s)</text>"
    )
    parts.append(
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">servers</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
