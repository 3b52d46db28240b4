"""Admin actions on selected devices that queue commands (used by DeviceAdmin)."""

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from rest_framework.exceptions import ValidationError

from commands.registry import COMMAND_TYPES
from commands.services import CommandSpec, commands_enqueue_bulk
from homepot.errors import ServiceError

Action = Callable[[admin.ModelAdmin, HttpRequest, QuerySet], TemplateResponse | None]

# The labels operators read in the action menu (the registry's descriptions are
# documentation sentences, not menu items). "…": a form asks for the service.
ACTION_LABELS = {
    "ping": "Queue a ping",
    "reboot": "Queue a reboot",
    "list_services": "Queue a listing of the configured services",
    "restart_service": "Queue a service restart…",
    "stop_service": "Queue a service stop…",
    "start_service": "Queue a service start…",
    "service_status": "Queue a service status check…",
}


class ServiceForm(forms.Form):
    service = forms.CharField(max_length=128, help_text="A systemd unit, e.g. nginx.service")

    def clean_service(self) -> str:
        try:
            CommandSpec.validated(command_type="restart_service", payload=self.cleaned_data)
        except ValidationError as exc:
            raise forms.ValidationError(str(exc.detail.get("service", exc.detail))) from None
        return self.cleaned_data["service"]


def _queue(
    modeladmin: admin.ModelAdmin, request: HttpRequest, devices: QuerySet, spec: CommandSpec
) -> None:
    """Queue through the bulk service the API uses: one group, one audit entry, the
    same device limit. Decommissioned devices in the selection are named and skipped."""
    for public_id in devices.exclude(decommissioned_at=None).values_list("public_id", flat=True):
        modeladmin.message_user(
            request, f"{public_id}: Device {public_id} is decommissioned.", messages.WARNING
        )
    active = devices.filter(decommissioned_at=None)
    public_ids = sorted(active.values_list("public_id", flat=True))
    if not public_ids:
        return
    try:
        # The target as the bulk API names it (its request field is device_ids).
        commands_enqueue_bulk(
            actor=request.user, devices=active, spec=spec, target={"device_ids": public_ids}
        )
    except ServiceError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return
    modeladmin.message_user(request, f"Queued {spec.command_type} for {len(public_ids)} device(s).")


def queue_action(command_type: str) -> Action:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, devices: QuerySet) -> None:
        _queue(
            modeladmin,
            request,
            devices,
            CommandSpec.validated(command_type=command_type, payload={}),
        )

    action.__name__ = f"queue_{command_type}"
    return admin.action(description=ACTION_LABELS[command_type], permissions=["queue_command"])(
        action
    )


def queue_service_action(command_type: str) -> Action:
    """Asks for the service name on an intermediate page, then queues."""

    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, devices: QuerySet
    ) -> TemplateResponse | None:
        form = ServiceForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            spec = CommandSpec.validated(command_type=command_type, payload=form.cleaned_data)
            _queue(modeladmin, request, devices, spec)
            return None
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": COMMAND_TYPES[command_type].description.replace("SERVICE", "a service"),
            "form": form,
            "devices": devices,
            "action": action.__name__,
        }
        return TemplateResponse(request, "admin/commands/service_form.html", context)

    action.__name__ = f"queue_{command_type}"
    return admin.action(description=ACTION_LABELS[command_type], permissions=["queue_command"])(
        action
    )


DEVICE_ACTIONS = [
    queue_action("ping"),
    queue_action("reboot"),
    queue_action("list_services"),
    queue_service_action("restart_service"),
    queue_service_action("stop_service"),
    queue_service_action("start_service"),
    queue_service_action("service_status"),
]
