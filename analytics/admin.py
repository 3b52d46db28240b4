"""The analytics part of the admin: the telemetry, lab monitor, powered boards and open
alerts panels on the device page; alerting's own pages (analytics.alerting.admin
registers them)."""

from django.http import HttpRequest

from analytics.admin_panel import (
    LAB_MONITOR,
    device_lab_context,
    device_powered_boards_context,
    device_thermal_svg,
)
from analytics.alerting.admin import device_alerts_context
from analytics.device_charts import device_charts_context, device_header_context
from devices.admin_panels import device_panel_register, device_panel_url
from devices.models import Device


def _header_panel(request: HttpRequest, device: Device) -> dict:
    return device_header_context(device)


# First: what the device is, then what needs someone now.
device_panel_register(
    name="header",
    template="admin/analytics/device_header_panel.html",
    context=_header_panel,
    permission="devices.view_device",
    order=0,
)
device_panel_register(
    name="open_alerts",
    template="admin/analytics/alerting/device_alerts_panel.html",
    context=device_alerts_context,
    permission="analytics.view_alert",
    order=10,
)


def _telemetry_panel(request: HttpRequest, device: Device) -> dict:
    live_url = device_panel_url(device, "telemetry", request.GET.urlencode())
    # A lab monitor's frame is in its lab panel, live: drawn once, not re-read every refresh.
    thermal = None if device.device_type == LAB_MONITOR else device_thermal_svg(device)
    return {**device_charts_context(device, request.GET, live_url), "thermal_svg": thermal}


device_panel_register(
    name="telemetry",
    template="admin/analytics/device_console_panel.html",
    context=_telemetry_panel,
    permission="analytics.view_sample",
    order=30,
)


def _lab_panel(request: HttpRequest, device: Device) -> dict:
    return device_lab_context(device)


device_panel_register(
    name="lab",
    template="admin/analytics/device_lab_panel.html",
    context=_lab_panel,
    permission="analytics.view_sample",
    order=40,
)


def _powered_boards_panel(request: HttpRequest, device: Device) -> dict:
    return device_powered_boards_context(device)


device_panel_register(
    name="powered_boards",
    template="admin/analytics/device_powered_boards_panel.html",
    context=_powered_boards_panel,
    permission="analytics.view_sample",
    order=50,
)
