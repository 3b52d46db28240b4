"""Presence: a device's last_seen, kept fresh by every authenticated request.

Device auth calls this on each request, and the services that auth depends on
must not be imported by auth (they import auth), so the write lives here, below
both.
"""

import time
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from devices.events import event_record
from devices.identity import DeviceIdentity
from devices.models import Device

# When this process last wrote each device's last_seen (monotonic seconds).
_last_seen_written: dict[int, float] = {}


def presence_cache_clear() -> None:
    _last_seen_written.clear()


def device_mark_seen(*, identity: DeviceIdentity, now: datetime | None = None) -> None:
    """Keep last_seen fresh, writing at most once per DEVICE_LAST_SEEN_WRITE_SECONDS.

    The window is kept per process: with N web workers a device costs at most
    N writes per window, and the hot path costs no cache round trip.
    """
    clock = time.monotonic()
    written = _last_seen_written.get(identity.pk)
    if written is not None and clock - written < settings.DEVICE_LAST_SEEN_WRITE_SECONDS:
        return
    _last_seen_written[identity.pk] = clock
    now = now or timezone.now()
    came_back = (
        Device.objects.filter(pk=identity.pk, decommissioned_at__isnull=True)
        .exclude(status=Device.Status.ONLINE)
        .update(status=Device.Status.ONLINE, last_seen=now)
    )
    if came_back:
        event_record(kind="device.online", device=identity.pk)
    else:
        Device.objects.filter(pk=identity.pk).update(last_seen=now)
