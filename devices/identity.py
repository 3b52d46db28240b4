"""A device's identity: what an authenticated device request acts as, and noticing
two agents that use one identity (a copied state directory, a cloned SD card).

DeviceIdentity lives here, below auth and the services, so that everything that
needs the type (auth, the event log, presence, services) can import it without
importing device auth.

Each HOMEPOT agent process sends a random `instance_id` in its heartbeat
attributes. A restart changes it once: A, then B, and A never comes back.
Two agents sharing a key take turns: A, B, A. So the cache keeps, per device,
the instance ids seen within the window, most recent last; an id coming back
after another one is a conflict.

This runs only for a heartbeat whose state differs from the stored one (an
instance change always does), so the agents' hot path pays nothing for it.
"""

from dataclasses import dataclass
from typing import ClassVar

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone


@dataclass(frozen=True)
class DeviceIdentity:
    """The authenticated device: what a device request acts as, and nothing else."""

    pk: int
    public_id: str  # the device's public id (X-Device-ID)
    site_pk: int
    credential_pk: int

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.public_id


# Distinct instances remembered per device: enough for restarts and a few clones.
MAX_REMEMBERED = 8


@dataclass(frozen=True)
class Conflict:
    instance_ids: tuple[str, str]  # (the one back again, the one it took turns with)
    addresses: tuple[str, str]


def _seen_key(device_pk: int) -> str:
    return f"devinst:{device_pk}"


def _reported_key(device_pk: int) -> str:
    return f"devinst:reported:{device_pk}"


def instance_seen(*, device_pk: int, instance_id: str, address: str) -> Conflict | None:
    """Note a heartbeat of this instance; a Conflict if it takes turns with another
    and none was reported for the device within the window."""
    window = settings.DEVICE_IDENTITY_CONFLICT_WINDOW_SECONDS
    now = timezone.now().timestamp()
    seen = [row for row in cache.get(_seen_key(device_pk), []) if now - row[1] < window]
    latest = seen[-1] if seen else None
    came_back = latest is not None and latest[0] != instance_id and _ids(seen, instance_id)
    seen = [row for row in seen if row[0] != instance_id] + [[instance_id, now, address]]
    cache.set(_seen_key(device_pk), seen[-MAX_REMEMBERED:], timeout=window)
    if not came_back:
        return None
    # Once per window, atomically across web processes.
    if not cache.add(_reported_key(device_pk), 1, timeout=window):
        return None
    return Conflict(instance_ids=(instance_id, latest[0]), addresses=(address, latest[2]))


def _ids(seen: list[list], instance_id: str) -> bool:
    return any(row[0] == instance_id for row in seen)
