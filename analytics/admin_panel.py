"""The telemetry part of the device page in the admin, a lab monitor's panel, and the
boards a device powers."""

import json
from collections import defaultdict
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from analytics import charts, queries
from analytics.models import LatestValue, ThermalFrame
from devices.models import Device, SshTarget


def device_thermal_svg(device: Device) -> str | None:
    """The latest thermal frame as a heatmap (None: the device sent none)."""
    frame = ThermalFrame.objects.filter(device_id=device.pk).first()
    return mark_safe(charts.thermal_heatmap_svg(frame)) if frame else None


# --- The lab monitor panel -----------------------------------------------------------------------

LAB_MONITOR = "lab_monitor"
LAB_CHART_HOURS = 1
LAB_CHART_STEP_SECONDS = 30  # raw samples: a lab wants the last minutes, not rollups
ENVIRONMENT_METRICS = ["bme680.temperature", "bme680.humidity", "bme680.iaq"]
PSU_METRICS = [
    "psu.up",
    "psu.output",
    "psu.voltage",
    "psu.current",
    "psu.power",
    "psu.voltage_set",
    "psu.current_limit",
]
THERMAL_LIVE_POLL_MS = 1000


def _electrical_metrics(names: list[str], quantity: str) -> list[str]:
    """psu.voltage / psu.current, and the ADC channels named after the quantity
    (adc.supply_voltage, adc.board_current: channel names are the operator's)."""
    return [f"psu.{quantity}"] + [
        name for name in names if name.startswith("adc.") and quantity[:4] in name
    ]


def _lab_charts(device: Device, names: list[str]) -> list[str]:
    now = timezone.now()
    wanted = ENVIRONMENT_METRICS + _electrical_metrics(names, "voltage")
    wanted += _electrical_metrics(names, "current")
    svgs = []
    for name in (n for n in wanted if n in names):
        series = queries.metric_series(
            device_pk=device.pk,
            name=name,
            start=now - timedelta(hours=LAB_CHART_HOURS),
            end=now,
            step=LAB_CHART_STEP_SECONDS,
            agg="avg",
        )
        svgs.append(mark_safe(charts.metric_chart_svg(name, series.points)))
    return svgs


def device_lab_context(device: Device) -> dict:
    """Charts, PSU state and the live thermal view of a lab monitor (nothing for others)."""
    if device.device_type != LAB_MONITOR:
        return {"is_lab_monitor": False}
    latest = queries.latest_values(device.pk)
    frame = ThermalFrame.objects.filter(device_id=device.pk).first()
    return {
        "is_lab_monitor": True,
        "charts": _lab_charts(device, list(latest)),
        "psu": {name: latest[name]["value"] for name in PSU_METRICS if name in latest},
        "thermal_svg": mark_safe(charts.thermal_heatmap_svg(frame)) if frame else None,
        "thermal_scale_svg": mark_safe(charts.thermal_scale_svg(frame.min, frame.max))
        if frame
        else None,
        "thermal_url": f"/api/v1/devices/{device.public_id}/thermal/latest?live=true",
        "thermal_poll_ms": THERMAL_LIVE_POLL_MS,
        "heat_stops": json.dumps([[f, list(rgb)] for f, rgb in charts.HEAT_STOPS]),
    }


# --- The boards a device powers (the lab view of WET boards) ------------------------------------

BOARD_TEMPERATURE_PREFIX = "wet.temp."


def _board_temperatures(device_pks: list[int]) -> dict[int, dict[str, float]]:
    """{board pk: {sensor: latest °C}}, from the latest values, in one query."""
    rows = (
        LatestValue.objects.filter(
            device_id__in=device_pks, metric__name__startswith=BOARD_TEMPERATURE_PREFIX
        )
        .order_by("metric__name")
        .values_list("device_id", "metric__name", "value")
    )
    temperatures: dict[int, dict[str, float]] = defaultdict(dict)
    for device_pk, name, value in rows:
        temperatures[device_pk][name.removeprefix(BOARD_TEMPERATURE_PREFIX)] = value
    return temperatures


def device_powered_boards_context(device: Device) -> dict:
    """The SSH boards this device powers (SshTarget.powered_by): each one's status,
    last check and latest temperatures, beside the supply's readings on its page."""
    targets = list(
        SshTarget.objects.filter(powered_by=device)
        .select_related("device")
        .order_by("device__public_id")
    )
    temperatures = _board_temperatures([target.device_id for target in targets])
    boards = [
        {
            "device_id": target.device.public_id,
            "name": target.device.name,
            "status": target.device.get_status_display(),
            "last_status": target.last_status or "never",
            "last_status_label": target.get_last_status_display(),
            "last_check_at": target.last_check_at,
            "last_error": target.last_error,
            "temperatures": temperatures.get(target.device_id, {}),
            "url": reverse("admin:devices_device_change", args=[target.device_id]),
        }
        for target in targets
    ]
    return {"boards": boards}
