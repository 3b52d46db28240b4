"""Reads of the fleet that several pages share (writes are in services)."""

from datetime import datetime

from devices.models import Device, Event, Site
from homepot.errors import NotFoundError


def site_get(public_id: str) -> Site:
    """The site with this public id (the API's site_id), or NotFoundError (404)."""
    site = Site.objects.filter(public_id=public_id).first()
    if site is None:
        raise NotFoundError(f"Site {public_id!r} not found.")
    return site


def device_get(public_id: str) -> Device:
    """The device with this public id (the API's device_id, with its site), or
    NotFoundError (404)."""
    device = Device.objects.select_related("site").filter(public_id=public_id).first()
    if device is None:
        raise NotFoundError(f"Device {public_id!r} not found.")
    return device


# The device page shows this many of the device's latest events; the rest are a
# link away, so the page stays small however long the device's history.
DEVICE_PAGE_EVENTS = 50


def device_events_latest(*, device: Device, limit: int = DEVICE_PAGE_EVENTS) -> list[Event]:
    """The device's newest events first (served by the (device, -created_at) index)."""
    return list(Event.objects.filter(device=device).order_by("-created_at", "-id")[:limit])


def device_identity_conflict_latest(*, device: Device) -> Event | None:
    return (
        Event.objects.filter(device=device, kind="device.identity_conflict")
        .order_by("-created_at")
        .first()
    )


def device_newest_key_created(*, device: Device) -> datetime | None:
    """When the device's newest API key was issued (None: it never had one)."""
    return device.credentials.order_by("-created_at").values_list("created_at", flat=True).first()
