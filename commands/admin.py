"""The commands part of the admin: command and group pages, and the command panel
and queue actions of the device page."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html_join

from commands import selectors, services
from commands.admin_actions import DEVICE_ACTIONS
from commands.admin_lab import lab_command_queue, lab_controls_context
from commands.device_commands import device_command_queue, device_commands_context
from commands.models import Command, CommandGroup
from devices.admin import ReadOnlyAdmin
from devices.admin_panels import device_actions_register, device_panel_register
from homepot.errors import ServiceError

device_panel_register(
    name="commands",
    template="admin/commands/device_commands.html",
    context=device_commands_context,
    permission="commands.view_command",
    order=20,
)
device_panel_register(
    name="lab_controls",
    template="admin/commands/device_lab_controls_panel.html",
    context=lab_controls_context,
    permission="commands.add_command",
    order=25,
)
device_actions_register(*DEVICE_ACTIONS)


@admin.register(Command)
class CommandAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "device",
        "command_type",
        "status",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "command_type", "device__site"]
    search_fields = ["public_id", "device__public_id"]
    list_select_related = ["device__site", "created_by"]  # a device is shown with its site
    actions = ["cancel"]
    fieldsets = [
        (None, {"fields": ["public_id", "device", "group", "command_type", "payload", "status"]}),
        (
            "Lifecycle",
            {
                "fields": [
                    "created_by",
                    "created_at",
                    "delivered_at",
                    "started_at",
                    "finished_at",
                    "executed_at",
                    "expires_at",
                    "ack_deadline",
                    "deadline",
                    "timeout_seconds",
                    "attempts",
                    "max_attempts",
                    "transitions",
                ]
            },
        ),
        ("Result", {"fields": ["exit_code", "result", "output", "error"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("commands.view_command")

    def get_urls(self) -> list:
        # the lab controls of a device page post here (see commands.admin_lab)
        lab = path(
            "lab/<int:device_pk>/queue/",
            self.admin_site.admin_view(lab_command_queue),
            name="commands_lab_queue",
        )
        # the command forms of a device page post here (see commands.device_commands)
        device_queue = path(
            "device/<int:device_pk>/queue/",
            self.admin_site.admin_view(device_command_queue),
            name="commands_device_queue",
        )
        return [lab, device_queue, *super().get_urls()]

    def has_cancel_command_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("commands.cancel_command")

    @admin.display(description="transitions")
    def transitions(self, command: Command) -> str:
        events = command.events.order_by("created_at", "id")  # the indexed foreign key
        return format_html_join(
            "\n", "<div>{} &nbsp; {}</div>", ((e.created_at.isoformat(), e.message) for e in events)
        )

    @admin.action(
        description="Cancel the selected commands (queued or not yet acknowledged)",
        permissions=["cancel_command"],
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        for command in queryset:
            try:
                services.command_cancel(actor=request.user, command=command)
            except ServiceError as exc:
                self.message_user(request, f"{command.public_id}: {exc.message}", messages.WARNING)


@admin.register(CommandGroup)
class CommandGroupAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "command_type", "target", "created_by", "created_at"]
    readonly_fields = [
        "public_id",
        "command_type",
        "payload",
        "target",
        "created_by",
        "created_at",
        "counts",
    ]

    @admin.display(description="commands by state")
    def counts(self, group: CommandGroup) -> str:
        return ", ".join(f"{k}: {v}" for k, v in selectors.command_group_counts(group).items() if v)
