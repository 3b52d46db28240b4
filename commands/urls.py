from django.urls import path

import homepot.converters  # noqa: F401 (registers <id:...>)
from commands import views

# Mounted under /api/v1/ before the devices app, so that devices/pending is not
# taken for a device id.
urlpatterns = [
    path("devices/pending", views.PendingCommandsApi.as_view(), name="commands-pending"),
    path(
        "devices/<uuid:command_id>/status",
        views.CommandReportApi.as_view(),
        name="command-report",
    ),
    path(
        "devices/<id:device_id>/commands/<uuid:command_id>/ack",
        views.CommandAckApi.as_view(),
        name="command-ack",
    ),
    path(
        "devices/<id:device_id>/commands",
        views.DeviceCommandsApi.as_view(),
        name="device-commands",
    ),
    path("commands/bulk", views.BulkCommandsApi.as_view(), name="commands-bulk"),
    path("commands/<uuid:command_id>", views.CommandDetailApi.as_view(), name="command-detail"),
    path(
        "commands/<uuid:command_id>/cancel",
        views.CommandCancelApi.as_view(),
        name="command-cancel",
    ),
    path(
        "command-groups/<uuid:group_id>",
        views.CommandGroupDetailApi.as_view(),
        name="command-group-detail",
    ),
]
