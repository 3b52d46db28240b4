from django.urls import path

import homepot.converters  # noqa: F401 (registers <id:...>)
from devices import feed_views, views
from devices.ssh import views as ssh_views

# Mounted under /api/v1/. No trailing slashes, as in the agents' contract.
urlpatterns = [
    path("sites", views.SiteListCreateApi.as_view(), name="site-list"),
    path("sites/<slug:site_id>", views.SiteDetailApi.as_view(), name="site-detail"),
    path(
        "sites/<slug:site_id>/enrollment-tokens",
        views.EnrollmentTokenCreateApi.as_view(),
        name="enrollment-token-create",
    ),
    path(
        "devices/sites/<slug:site_id>/devices",
        views.DeviceRegisterApi.as_view(),
        name="device-register",
    ),
    path("devices/heartbeat", views.HeartbeatApi.as_view(), name="device-heartbeat"),
    path("devices", views.DeviceListApi.as_view(), name="device-list"),
    path("devices/<id:device_id>", views.DeviceDetailApi.as_view(), name="device-detail"),
    path(
        "devices/<id:device_id>/rotate-key",
        views.DeviceRotateKeyApi.as_view(),
        name="device-rotate-key",
    ),
    path("devices/<id:device_id>/revoke", views.DeviceRevokeApi.as_view(), name="device-revoke"),
    path(
        "devices/<id:device_id>/decommission",
        views.DeviceDecommissionApi.as_view(),
        name="device-decommission",
    ),
    path("ssh-targets", ssh_views.SshTargetListCreateApi.as_view(), name="ssh-target-list"),
    path(
        "ssh-targets/<id:device_id>",
        ssh_views.SshTargetDetailApi.as_view(),
        name="ssh-target-detail",
    ),
    path(
        "ssh-targets/<id:device_id>/check",
        ssh_views.SshTargetCheckApi.as_view(),
        name="ssh-target-check",
    ),
    path(
        "ssh-targets/<id:device_id>/accept-host-key",
        ssh_views.SshTargetAcceptHostKeyApi.as_view(),
        name="ssh-target-accept-host-key",
    ),
    path("ssh-checks", ssh_views.SshCheckListCreateApi.as_view(), name="ssh-check-list"),
    path("events", feed_views.EventFeedApi.as_view(), name="event-feed"),
]
