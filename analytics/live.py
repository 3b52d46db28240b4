"""The live thermal lease: while an operator watches a device's thermal view,
that device is told (in the answers to its own requests) to send frames fast.

Nothing ever connects to a device, so the server can only advise it in the
responses to requests it makes anyway. The view's polls of the newest frame
refresh a lease (a cache key per device that expires after
THERMAL_LIVE_LEASE_SECONDS); the device's pending/heartbeat/telemetry/frame
responses carry `X-Thermal-Interval` and `X-Thermal-Lease` while it holds.

The device side is the agents' hot path, so a lookup is remembered in the
process's local memory: "no lease" until a lease starts (which resets the
scope in every process), and a running lease until the time it ends. So a
device without a lease costs no cache read at all, and one with a lease costs
one read per lease period at most.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from homepot.local_memory import local_memory

_ENTRY = "lease"


def _key(device_pk: int) -> str:
    return f"thermal-live:{device_pk}"


def _scope(device_pk: int) -> str:
    return f"thermal-live:{device_pk}"


@dataclass(frozen=True)
class ThermalLease:
    interval: float  # seconds between frames the device should keep to
    remaining: float  # seconds the fast rate holds unless the lease is refreshed


def thermal_lease_refresh(device_pk: int) -> None:
    """An operator is watching: (re)start the device's lease."""
    until = time.time() + settings.THERMAL_LIVE_LEASE_SECONDS
    was_running = cache.get(_key(device_pk)) is not None
    cache.set(_key(device_pk), until, timeout=settings.THERMAL_LIVE_LEASE_SECONDS)
    memory = local_memory()
    if memory is not None and not was_running:
        # other processes may remember "no lease" for this device
        memory.reset(_scope(device_pk))


def thermal_lease_get(device_pk: int) -> ThermalLease | None:
    """The device's running lease, or None (cheap: see the module docstring)."""
    until = _lease_until(device_pk)
    remaining = until - time.time()
    if remaining <= 0:
        return None
    return ThermalLease(interval=settings.THERMAL_LIVE_INTERVAL_SECONDS, remaining=remaining)


def _lease_until(device_pk: int) -> float:
    memory, scope = local_memory(), _scope(device_pk)
    if memory is not None:
        entry = memory.get(scope, _ENTRY)
        # a remembered lease that has run out may have been refreshed since: ask again
        if entry is not None and (entry["until"] == 0 or entry["until"] > time.time()):
            return entry["until"]
        version = memory.version(scope)
    until = float(cache.get(_key(device_pk)) or 0)
    if memory is not None:
        memory.put(scope, _ENTRY, {"until": until}, version)
    return until
