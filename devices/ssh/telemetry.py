"""Where the metrics of SSH checks go.

devices sits below analytics and must not import it: analytics registers its
ingest service here when it starts (analytics/apps.py), so a check's metrics are
stored exactly as an agent's are.
"""

from collections.abc import Callable
from datetime import datetime

from devices.models import Device

# (device, sampled at, {metric name: value}) -> number of values stored
TelemetrySink = Callable[[Device, datetime, dict[str, float]], int]

_sink: list[TelemetrySink] = []


def telemetry_sink_register(sink: TelemetrySink) -> None:
    _sink[:] = [sink]


def telemetry_store(*, device: Device, at: datetime, metrics: dict[str, float]) -> int:
    if not metrics:
        return 0
    if not _sink:
        raise RuntimeError("no telemetry sink: is 'analytics' in INSTALLED_APPS?")
    return _sink[0](device, at, metrics)
