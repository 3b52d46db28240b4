"""Server-side SVG for the admin: metric charts (pygal) and thermal heatmaps.

Lab networks are often offline, so nothing here loads a script or a font
from elsewhere: the SVG is complete in the page.
"""

import re
from datetime import UTC, datetime

import pygal
from django.utils.html import escape
from pygal.style import LightStyle

from analytics.models import ThermalFrame

CELL = 12  # pixels per thermal pixel
# pygal always embeds its tooltip configuration as an inline <script>. Without
# its tooltip script (js=[]) that does nothing, and the admin's
# Content-Security-Policy would refuse it: leave it out.
_INLINE_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S)


def _y_range(values: list[float]) -> tuple[float, float] | None:
    """An explicit y range for a series whose spread is mere float noise.

    pygal steps its y labels from min to max by a power of ten below the
    spread; for 11.98 and 11.979999999999999 that step is smaller than one unit
    in the last place, the position never advances and rendering never ends.
    """
    if not values:
        return None
    low, high = min(values), max(values)
    magnitude = max(abs(low), abs(high), 1.0)
    if high - low >= magnitude * 1e-9:
        return None
    return low - magnitude * 0.01, high + magnitude * 0.01


# (suffix or part of a metric name, unit): the first that matches names the unit.
UNIT_RULES = [
    ("percent", "%"),
    ("humidity", "%"),
    ("temperature", "°C"),
    ("wet.temp.", "°C"),
    ("voltage", "V"),
    ("current", "A"),
    ("power", "W"),
    ("rpm", "rpm"),
    ("bytes", "B"),
    ("seconds", "s"),
]
# Tick spacings for a time axis, seconds: the first that gives at most MAX_TICKS ticks.
TICK_SPACINGS = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400]
TICK_SPACINGS += [7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400]
MAX_TICKS = 8


def metric_unit(name: str) -> str:
    """The unit of a metric as its name says it ("" where the name does not tell)."""
    lowered = name.lower()
    return next((unit for part, unit in UNIT_RULES if part in lowered), "")


def time_format(span_seconds: float) -> str:
    """Labels as precise as the range needs: times within a day, dates beyond a week."""
    if span_seconds <= 86400:
        return "%H:%M"
    if span_seconds <= 7 * 86400:
        return "%m-%d %H:%M"
    return "%Y-%m-%d"


def time_ticks(start: datetime, end: datetime) -> list[datetime]:
    """At most MAX_TICKS round times in [start, end], spaced so that no two share a
    label in time_format (pygal's own labels repeat "10:00" across days)."""
    span = max(end.timestamp() - start.timestamp(), 1.0)
    spacing = next((s for s in TICK_SPACINGS if span / s <= MAX_TICKS), TICK_SPACINGS[-1])
    if time_format(span) == "%Y-%m-%d":
        spacing = max(spacing, 86400)
    first = -(-int(start.timestamp()) // spacing) * spacing
    return [
        datetime.fromtimestamp(ts, tz=UTC) for ts in range(first, int(end.timestamp()) + 1, spacing)
    ]


def _time_chart(
    title: str,
    unit: str,
    start: datetime | None,
    end: datetime | None,
    *,
    values: list[float],
    **options: object,
) -> pygal.DateTimeLine:
    span = (end.timestamp() - start.timestamp()) if start and end else 86400
    label_format = time_format(span)
    # pygal cannot place fixed x labels on a chart without a single value.
    ticks = time_ticks(start, end) if start and end and values else None
    return pygal.DateTimeLine(
        title=title,  # the unit is on the y axis
        y_title=unit or None,
        x_title="UTC",
        x_labels=ticks,
        width=900,
        show_dots=False,
        x_label_rotation=20,
        x_value_formatter=lambda ts: ts.strftime(label_format),
        style=LightStyle,
        js=[],  # pygal would otherwise link its tooltip script from a CDN
        disable_xml_declaration=True,
        **options,
    )


def metric_chart_svg(
    name: str,
    points: list[dict],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """One metric of one device; with start and end, its time axis is labelled for
    that range (without, for the last 24 hours)."""
    values = [p["value"] for p in points if p["value"] is not None]
    chart = _time_chart(
        name,
        metric_unit(name),
        start,
        end,
        values=values,
        range=_y_range(values),
        show_legend=False,
        height=260,
    )
    chart.add(name, [(p["ts"], p["value"]) for p in points])
    return _INLINE_SCRIPT.sub("", chart.render(is_unicode=True))


SITE_CHART_CLASS = "homepot-site-chart"


def site_chart_svg(
    name: str, series: dict[str, list[dict]], *, start: datetime, end: datetime
) -> str:
    """One metric across several devices (one line each, named in the legend)."""
    values = [p["value"] for points in series.values() for p in points if p["value"] is not None]
    chart = _time_chart(
        name,
        metric_unit(name),
        start,
        end,
        values=values,
        range=_y_range(values),
        show_legend=True,
        legend_at_bottom=True,
        height=320,
    )
    for label, points in series.items():
        chart.add(label, [(p["ts"], p["value"]) for p in points])
    svg = _INLINE_SCRIPT.sub("", chart.render(is_unicode=True))
    # Its own class: pages and tests tell a site chart from a device's charts.
    return svg.replace('class="pygal-chart"', f'class="pygal-chart {SITE_CHART_CLASS}"', 1)


# The thermal palette: (fraction of the frame's range, RGB). The live view's script
# reads it from the page, so the palette is defined here only.
HEAT_STOPS = [
    (0.0, (0, 0, 80)),
    (0.35, (140, 0, 150)),
    (0.7, (240, 110, 0)),
    (1.0, (255, 250, 190)),
]


def _heat_colour(fraction: float) -> str:
    """Dark blue -> purple -> orange -> pale yellow, like common thermal palettes."""
    stops = HEAT_STOPS
    for (f0, c0), (f1, c1) in zip(stops, stops[1:], strict=False):
        if fraction <= f1:
            t = (fraction - f0) / (f1 - f0) if f1 > f0 else 0.0
            r, g, b = (round(a + (b - a) * t) for a, b in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#fffabe"


def thermal_heatmap_svg(frame: ThermalFrame) -> str:
    span = (frame.max - frame.min) or 1.0
    cells = []
    for index, value in enumerate(frame.values):
        row, col = divmod(index, frame.width)
        colour = _heat_colour((value - frame.min) / span)
        cells.append(
            f'<rect x="{col * CELL}" y="{row * CELL}" width="{CELL}" height="{CELL}" '
            f'fill="{colour}"><title>{value:.1f} °C</title></rect>'
        )
    width, height = frame.width * CELL, frame.height * CELL
    hot_row, hot_col = divmod(
        max(range(len(frame.values)), key=frame.values.__getitem__), frame.width
    )
    cells.append(
        f'<circle class="homepot-hotspot" cx="{hot_col * CELL + CELL / 2}" '
        f'cy="{hot_row * CELL + CELL / 2}" r="{CELL}" fill="none" stroke="#00ff66" '
        f'stroke-width="2"><title>hot spot ({hot_col}, {hot_row})</title></circle>'
    )
    caption = escape(
        f"{frame.ts:%Y-%m-%d %H:%M:%S} UTC · min {frame.min:.1f} °C · "
        f"mean {frame.mean:.1f} °C · max {frame.max:.1f} °C"
    )
    return (
        f'<svg class="homepot-heatmap" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height + 20}" viewBox="0 0 {width} {height + 20}">{"".join(cells)}'
        f'<text x="0" y="{height + 15}" font-size="12">{caption}</text></svg>'
    )


def thermal_scale_svg(low: float, high: float) -> str:
    """The colour scale beside a heatmap: the palette from `low` to `high` °C."""
    stops = "".join(
        f'<stop offset="{fraction:g}" stop-color="{_heat_colour(fraction)}"/>'
        for fraction, _ in HEAT_STOPS
    )
    return (
        '<svg class="homepot-thermal-scale" xmlns="http://www.w3.org/2000/svg" width="384" '
        'height="34" viewBox="0 0 384 34"><defs><linearGradient id="homepot-heat">'
        f"{stops}</linearGradient></defs>"
        '<rect x="0" y="0" width="384" height="14" fill="url(#homepot-heat)"/>'
        f'<text class="homepot-scale-low" x="0" y="30" font-size="12">{low:.1f} °C</text>'
        f'<text class="homepot-scale-high" x="384" y="30" font-size="12" text-anchor="end">'
        f"{high:.1f} °C</text></svg>"
    )
