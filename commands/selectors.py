"""Reads of the command queue that several pages share (writes are in services)."""

from uuid import UUID

from django.db.models import Count

from commands.models import Command, CommandGroup, Status
from devices.models import Device
from homepot.errors import NotFoundError


def command_get(public_id: UUID) -> Command:
    """The command with this id (with its device), or NotFoundError (404)."""
    command = Command.objects.select_related("device").filter(public_id=public_id).first()
    if command is None:
        raise NotFoundError("Command not found.")
    return command


def command_group_counts(group: CommandGroup) -> dict[str, int]:
    """How many of the group's commands are in each state (every state, zeros too)."""
    counts = dict.fromkeys(Status.values, 0)
    rows = group.commands.values("status").annotate(n=Count("id")).order_by()
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


# The device page lists this many of the device's latest commands.
DEVICE_PAGE_COMMANDS = 10


def device_commands_latest(*, device: Device, limit: int = DEVICE_PAGE_COMMANDS) -> list[Command]:
    """The device's newest commands first, with who queued them."""
    return list(
        Command.objects.filter(device=device)
        .select_related("created_by")
        .order_by("-created_at", "-id")[:limit]
    )
