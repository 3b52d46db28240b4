"""The analytics part of the admin: the telemetry, lab monitor, powered boards and open
alerts panels on the device page; alerting's own pages (analytics.alerting.admin
registers them)."""

from django.http import HttpRequest

from analytics.admin_panel import (
    device_lab_context,
    device_powered_boards_context,
    device_telemetry_context,
)
from analytics.alerting.admin import device_alerts_context
from devices.admin_panels import device_panel_register
from devices.models import Device

# First: what needs someone now.
device_panel_register(
    name="open_alerts",
    template="admin/analytics/alerting/device_alerts_panel.html",
    context=device_alerts_context,
    permission="analytics.view_alert",
)


def _telemetry_panel(request: HttpRequest, device: Device) -> dict:
    return device_telemetry_context(device, request.GET.getlist("chart"))


device_panel_register(
    name="telemetry",
    template="admin/analytics/device_telemetry_panel.html",
    context=_telemetry_panel,
    permission="analytics.view_sample",
)


def _lab_panel(request: HttpRequest, device: Device) -> dict:
    return device_lab_context(device)


device_panel_register(
    name="lab",
    template="admin/analytics/device_lab_panel.html",
    context=_lab_panel,
    permission="analytics.view_sample",
)


def _powered_boards_panel(request: HttpRequest, device: Device) -> dict:
    return device_powered_boards_context(device)


device_panel_register(
    name="powered_boards",
    template="admin/analytics/device_powered_boards_panel.html",
    context=_powered_boards_panel,
    permission="analytics.view_sample",
)
