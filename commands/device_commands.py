"""The commands panel of the device page: the device's latest commands (polled live)
and a form for each command type its agent allows.

The forms sit inside the device page's own form (forms cannot nest): their fields
are prefixed with the command type and their buttons post here with formaction.
Each queues one command through the service the API uses (CommandSpec.validated,
command_enqueue), so the registry validates the payload and the audit trail names
who queued it.
"""

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from analytics.models import LatestValue
from commands import registry, selectors
from commands.admin_lab import LAB_MONITOR, admin_command_queue
from devices.admin_panels import device_panel_url
from devices.models import Device

QUEUE_PERMISSION = "commands.add_command"
OUTPUT_PREVIEW_CHARS = 200
LIVE_POLL_MS = 5000
# An agent allows every type but these unless its allowed_commands names them
# (arp_update is opt-in; the PSU types need a power supply, i.e. a lab monitor).
OFFERED_ONLY_WHEN_REPORTED = {"arp_update", "psu_set", "psu_output"}
# A lab monitor's PSU and ARP controls are its lab controls panel (commands.admin_lab).
LAB_CONTROLLED = {"arp_update", "psu_set", "psu_output"}
SERVICE_METRIC_PREFIX, SERVICE_METRIC_SUFFIX = "service.", ".active"


# --- What the device's agent allows -------------------------------------------------------------


def device_allowed_commands(device: Device) -> list[str]:
    """The command types the agent accepts, as its heartbeat reports them
    (attributes.allowed_commands), else the types every agent accepts by default."""
    reported = (device.attributes or {}).get("allowed_commands")
    if isinstance(reported, list):
        return [name for name in registry.COMMAND_TYPES if name in reported]
    return [name for name in registry.COMMAND_TYPES if name not in OFFERED_ONLY_WHEN_REPORTED]


def device_allowed_services(device: Device) -> list[str]:
    """The services the agent may act on: attributes.allowed_services if its heartbeat
    reports them, else those its services collector reports (service.<name>.active:
    it watches exactly the allowed services)."""
    reported = (device.attributes or {}).get("allowed_services")
    if isinstance(reported, list):
        return sorted(name for name in reported if isinstance(name, str))
    names = LatestValue.objects.filter(
        device=device,
        metric__name__startswith=SERVICE_METRIC_PREFIX,
        metric__name__endswith=SERVICE_METRIC_SUFFIX,
    ).values_list("metric__name", flat=True)
    return sorted(
        name.removeprefix(SERVICE_METRIC_PREFIX).removesuffix(SERVICE_METRIC_SUFFIX)
        for name in names
    )


# --- One form per kind of payload ---------------------------------------------------------------


def _registry_field(payload: type[registry.Payload], name: str) -> Any:
    return payload().fields[name]


class CommandForm(forms.Form):
    """No payload. Fields never carry `required` in the page: the device form around
    them must still save with these empty."""

    use_required_attribute = False

    def __init__(self, *args: Any, services: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def payload(self) -> dict:
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}


class ServiceForm(CommandForm):
    service = forms.ChoiceField(choices=[])

    def __init__(self, *args: Any, services: list[str], **kwargs: Any) -> None:
        super().__init__(*args, services=services, **kwargs)
        self.fields["service"].choices = [(name, name) for name in services]


def _bounded_float(payload: type[registry.Payload], name: str, label: str) -> forms.FloatField:
    field = _registry_field(payload, name)  # the limits are the registry's
    return forms.FloatField(
        label=label, required=False, min_value=field.min_value, max_value=field.max_value
    )


class PsuSetForm(CommandForm):
    voltage = _bounded_float(registry.PsuSetPayload, "voltage", "Voltage (V)")
    current = _bounded_float(registry.PsuSetPayload, "current", "Current limit (A)")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("voltage") is None and cleaned.get("current") is None:
            raise forms.ValidationError("Give a voltage, a current limit or both.")
        return cleaned


class PsuOutputForm(CommandForm):
    enabled = forms.TypedChoiceField(
        label="Output",
        choices=[("on", "on"), ("off", "off")],
        coerce=lambda value: value == "on",
    )

    def payload(self) -> dict:
        return {"enabled": self.cleaned_data["enabled"]}


class ArpUpdateForm(CommandForm):
    # Checked by the registry (and the agent) on the way: messages name the bad field.
    ip = forms.CharField(label="IP address", max_length=64)
    mac = forms.CharField(label="MAC address", max_length=17)
    interface = forms.CharField(label="Interface", max_length=15, strip=False)


def _bounded_int(name: str) -> forms.IntegerField:
    field = _registry_field(registry.UpdateConfigPayload, name)
    return forms.IntegerField(
        label=f"{name.replace('_', ' ')} (s)",
        required=False,
        min_value=field.min_value,
        max_value=field.max_value,
    )


class UpdateConfigForm(CommandForm):
    collect_interval = _bounded_int("collect_interval")
    push_interval = _bounded_int("push_interval")
    poll_interval = _bounded_int("poll_interval")
    enabled_collectors = forms.CharField(
        label="enabled collectors (comma-separated)", required=False
    )

    def payload(self) -> dict:
        payload = super().payload()
        if "enabled_collectors" in payload:
            raw = payload["enabled_collectors"]
            payload["enabled_collectors"] = [n.strip() for n in raw.split(",") if n.strip()]
        return payload


FORMS: dict[str, type[CommandForm]] = {
    "restart_service": ServiceForm,
    "stop_service": ServiceForm,
    "start_service": ServiceForm,
    "service_status": ServiceForm,
    "update_config": UpdateConfigForm,
    "psu_set": PsuSetForm,
    "psu_output": PsuOutputForm,
    "arp_update": ArpUpdateForm,
}
SERVICE_COMMANDS = {name for name, form in FORMS.items() if form is ServiceForm}


def command_form(command_type: str, services: list[str], data: Any = None) -> CommandForm:
    form_class = FORMS.get(command_type, CommandForm)
    return form_class(data, prefix=command_type, services=services)


# --- The panel ----------------------------------------------------------------------------------


def _offered(device: Device) -> list[str]:
    allowed = device_allowed_commands(device)
    if device.device_type == LAB_MONITOR:
        return [name for name in allowed if name not in LAB_CONTROLLED]
    return allowed


def _command_rows(device: Device) -> list[dict]:
    return [
        {
            "command": command,
            "result": "" if command.result is None else str(command.result),
            "output": command.output[:OUTPUT_PREVIEW_CHARS],
            "output_cut": len(command.output) > OUTPUT_PREVIEW_CHARS,
        }
        for command in selectors.device_commands_latest(device=device)
    ]


def device_commands_context(request: HttpRequest, device: Device) -> dict:
    changelist = reverse("admin:commands_command_changelist")
    context = {
        "commands": _command_rows(device),
        "all_commands_url": f"{changelist}?device__id__exact={device.pk}",
        "live_url": device_panel_url(device, "commands"),
        "poll_ms": LIVE_POLL_MS,
        "can_queue": request.user.has_perm(QUEUE_PERMISSION),
        "is_lab_monitor": device.device_type == LAB_MONITOR,
    }
    if context["can_queue"]:
        context.update(_forms_context(device))
    return context


def _forms_context(device: Device) -> dict:
    offered = _offered(device)
    services = device_allowed_services(device) if SERVICE_COMMANDS & set(offered) else []
    # A service command without a service to pick would only be refused.
    offered = [name for name in offered if services or name not in SERVICE_COMMANDS]
    return {
        "queue_url": reverse("admin:commands_device_queue", args=[device.pk]),
        "command_forms": [
            {
                "type": name,
                "description": registry.COMMAND_TYPES[name].description,
                "form": command_form(name, services),
            }
            for name in offered
        ],
        "no_services": not services,
    }


# --- Queueing -----------------------------------------------------------------------------------


@require_POST
def device_command_queue(request: HttpRequest, device_pk: int) -> HttpResponseRedirect:
    """Queue the command whose button was pressed (homepot_command) with its form's fields."""
    if not request.user.has_perm(QUEUE_PERMISSION):
        raise PermissionDenied
    device = get_object_or_404(Device, pk=device_pk)
    command_type = request.POST.get("homepot_command", "")
    if command_type not in _offered(device):
        messages.error(request, f"{command_type or 'A command'} is not allowed on this device.")
    else:
        _queue_from_form(request, device, command_type)
    page = reverse("admin:devices_device_change", args=[device.pk])
    return HttpResponseRedirect(f"{page}#homepot-commands")


def _queue_from_form(request: HttpRequest, device: Device, command_type: str) -> None:
    services = device_allowed_services(device) if command_type in SERVICE_COMMANDS else []
    form = command_form(command_type, services, request.POST)
    if not form.is_valid():
        messages.error(request, f"{command_type} not queued: {_form_errors(form)}")
        return
    admin_command_queue(request, device, command_type, form.payload())


def _form_errors(form: forms.Form) -> str:
    return "; ".join(
        f"{field}: {' '.join(errors)}" if field != "__all__" else " ".join(errors)
        for field, errors in form.errors.items()
    )
