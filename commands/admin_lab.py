"""The lab controls of a lab monitor's device page: PSU set/on/off and ARP update.

The controls are buttons inside the device page's form that post here instead
(formaction: forms cannot nest); their fields are prefixed `lab_` so they mean
nothing to the device form itself. Each queues one command through the same
service the API uses, so the registry validates it and the audit trail names who.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from commands.services import CommandSpec, command_enqueue
from devices.models import Device
from homepot.errors import ServiceError

LAB_MONITOR = "lab_monitor"
QUEUE_PERMISSION = "commands.add_command"


def _optional_number(raw: str) -> str | None:
    return raw.strip() or None  # the registry's number field parses and bounds it


def _psu_set(post: dict) -> dict:
    values = {"voltage": post.get("lab_voltage", ""), "current": post.get("lab_current", "")}
    return {name: number for name, raw in values.items() if (number := _optional_number(raw))}


def _arp_update(post: dict) -> dict:
    return {name: post.get(f"lab_{name}", "").strip() for name in ("ip", "mac", "interface")}


# The button pressed (lab_command) -> (command type, payload from the posted fields)
CONTROLS = {
    "psu_set": ("psu_set", _psu_set),
    "psu_output_on": ("psu_output", lambda post: {"enabled": True}),
    "psu_output_off": ("psu_output", lambda post: {"enabled": False}),
    "arp_update": ("arp_update", _arp_update),
}


def lab_controls_context(request: HttpRequest, device: Device) -> dict:
    return {
        "is_lab_monitor": device.device_type == LAB_MONITOR,
        "queue_url": reverse("admin:commands_lab_queue", args=[device.pk]),
    }


@require_POST
def lab_command_queue(request: HttpRequest, device_pk: int) -> HttpResponseRedirect:
    if not request.user.has_perm(QUEUE_PERMISSION):
        raise PermissionDenied
    device = get_object_or_404(Device, pk=device_pk)
    control = request.POST.get("lab_command", "")
    if control not in CONTROLS:
        messages.error(request, f"Unknown lab control {control!r}.")
    else:
        command_type, payload = CONTROLS[control]
        admin_command_queue(request, device, command_type, payload(request.POST))
    return HttpResponseRedirect(reverse("admin:devices_device_change", args=[device.pk]))


def admin_command_queue(
    request: HttpRequest, device: Device, command_type: str, payload: dict
) -> None:
    """Queue one command from an admin page as the API would; the outcome is a message."""
    try:
        spec = CommandSpec.validated(command_type=command_type, payload=payload)
        command_enqueue(actor=request.user, device=device, spec=spec)
    except ValidationError as exc:
        messages.error(request, f"{command_type} not queued: {_describe(exc.detail)}")
        return
    except ServiceError as exc:
        messages.error(request, f"{command_type} not queued: {exc.message}")
        return
    messages.success(request, f"Queued {command_type} {spec.payload}.")


def _describe(detail: object) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_describe(errors)}" for field, errors in detail.items())
    if isinstance(detail, list):
        return " ".join(str(item) for item in detail)
    return str(detail)
