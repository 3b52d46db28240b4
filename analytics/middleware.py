"""Adds the live thermal lease headers to a device's own responses (see analytics.live).

A middleware, not code in each view: two of the four endpoints belong to the
devices and commands apps, which must not import analytics.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from analytics.live import thermal_lease_get
from devices.identity import DeviceIdentity

LEASE_PATHS = frozenset(
    {
        "/api/v1/devices/pending",
        "/api/v1/devices/heartbeat",
        "/api/v1/analytics/device-metrics",
        "/api/v1/analytics/thermal-frames",
    }
)
POLL_HEADER = "X-Poll-Interval"


class ThermalLeaseMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # DRF sets the authenticated device on the Django request too
        identity = getattr(request, "user", None)
        if request.path in LEASE_PATHS and isinstance(identity, DeviceIdentity):
            _advise(response, identity.pk)
        return response


def _advise(response: HttpResponse, device_pk: int) -> None:
    lease = thermal_lease_get(device_pk)
    if lease is None:
        return
    response["X-Thermal-Interval"] = f"{lease.interval:g}"
    response["X-Thermal-Lease"] = f"{lease.remaining:.0f}"
    # so the device hears of a lease (or its end) soon, whatever it polls at
    short = settings.THERMAL_LIVE_POLL_SECONDS
    current = response.get(POLL_HEADER)
    if current is None or float(current) > short:
        response[POLL_HEADER] = f"{short:g}"
