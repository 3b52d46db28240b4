"""The analytics part of the admin: the telemetry panel on the device page."""

from django.http import HttpRequest

from analytics.admin_panel import device_telemetry_context
from devices.admin_panels import device_panel_register
from devices.models import Device


def _telemetry_panel(request: HttpRequest, device: Device) -> dict:
    return device_telemetry_context(device, request.GET.getlist("chart"))


device_panel_register(
    name="telemetry",
    template="admin/analytics/device_telemetry_panel.html",
    context=_telemetry_panel,
    permission="analytics.view_sample",
)
