from django.urls import path

import homepot.converters  # noqa: F401 (registers <id:...>)
from analytics import views

# Mounted under /api/v1/ before the devices app (devices/<id>/... paths).
urlpatterns = [
    path("analytics/device-metrics", views.DeviceMetricsIngestApi.as_view(), name="metrics-ingest"),
    path("analytics/thermal-frames", views.ThermalFrameIngestApi.as_view(), name="thermal-ingest"),
    path("metrics/names", views.MetricNamesApi.as_view(), name="metric-names"),
    path(
        "devices/<id:device_id>/metrics",
        views.DeviceMetricSeriesApi.as_view(),
        name="device-metrics",
    ),
    path(
        "devices/<id:device_id>/metrics/latest",
        views.DeviceLatestMetricsApi.as_view(),
        name="device-metrics-latest",
    ),
    path(
        "devices/<id:device_id>/thermal/latest",
        views.DeviceThermalLatestApi.as_view(),
        name="device-thermal-latest",
    ),
]
