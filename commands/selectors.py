"""Reads of the command queue that several pages share (writes are in services)."""

from commands.models import Command
from devices.models import Device

# The device page lists this many of the device's latest commands.
DEVICE_PAGE_COMMANDS = 10


def device_commands_latest(*, device: Device, limit: int = DEVICE_PAGE_COMMANDS) -> list[Command]:
    """The device's newest commands first, with who queued them."""
    return list(
        Command.objects.filter(device=device)
        .select_related("created_by")
        .order_by("-created_at", "-id")[:limit]
    )
