from django.urls import path

import homepot.converters  # noqa: F401 (registers <id:...>)
from devices import views

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
]
