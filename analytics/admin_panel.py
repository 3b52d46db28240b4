"""The telemetry part of the device page in the admin."""

from datetime import timedelta

from django.utils import timezone
from django.utils.safestring import mark_safe

from analytics import charts, queries
from analytics.models import ThermalFrame
from devices.models import Device

DEFAULT_CHARTS = ["cpu_percent", "memory_percent", "disk_percent"]
CHART_STEP_SECONDS = 300
MAX_CHARTS = 6


def device_telemetry_context(device: Device, chosen: list[str]) -> dict:
    latest = queries.latest_values(device.pk)
    names = list(latest)
    chosen = (
        [name for name in chosen if name in latest][:MAX_CHARTS]
        or [name for name in DEFAULT_CHARTS if name in latest]
        or names[:2]
    )
    now = timezone.now()
    chart_svgs = []
    for name in chosen:
        series = queries.metric_series(
            device_pk=device.pk,
            name=name,
            start=now - timedelta(hours=24),
            end=now,
            step=CHART_STEP_SECONDS,
            agg="avg",
        )
        # SVG we generate; metric names are validated at ingest (no markup possible)
        chart_svgs.append(mark_safe(charts.metric_chart_svg(name, series.points)))
    frame = ThermalFrame.objects.filter(device_id=device.pk).first()
    return {
        "latest_metrics": latest,
        "metric_names": names,
        "chosen_charts": chosen,
        "chart_svgs": chart_svgs,
        "thermal_svg": mark_safe(charts.thermal_heatmap_svg(frame)) if frame else None,
    }
