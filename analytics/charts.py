"""Server-side SVG for the admin: metric charts (pygal) and thermal heatmaps.

Lab networks are often offline, so nothing here loads a script or a font
from elsewhere: the SVG is complete in the page.
"""

import re

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


def metric_chart_svg(name: str, points: list[dict]) -> str:
    values = [p["value"] for p in points if p["value"] is not None]
    chart = pygal.DateTimeLine(
        range=_y_range(values),
        title=name,
        height=260,
        width=900,
        show_legend=False,
        show_dots=False,
        x_label_rotation=20,
        x_value_formatter=lambda ts: ts.strftime("%H:%M"),
        style=LightStyle,
        js=[],  # pygal would otherwise link its tooltip script from a CDN
        disable_xml_declaration=True,
    )
    chart.add(name, [(p["ts"], p["value"]) for p in points])
    return _INLINE_SCRIPT.sub("", chart.render(is_unicode=True))


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
