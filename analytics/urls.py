from django.urls import path

import homepot.converters  # noqa: F401 (registers <id:...>)
from analytics import views
from analytics.alerting import views as alerting

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
    # Alerting and notifications.
    path("alert-rules", alerting.AlertRuleListCreateApi.as_view(), name="alert-rules"),
    path("alert-rules/<int:rule_id>", alerting.AlertRuleDetailApi.as_view(), name="alert-rule"),
    path("alerts", alerting.AlertListApi.as_view(), name="alerts"),
    path("alerts/<int:alert_id>", alerting.AlertDetailApi.as_view(), name="alert"),
    path("alerts/<int:alert_id>/ack", alerting.AlertAckApi.as_view(), name="alert-ack"),
    path("alerts/<int:alert_id>/resolve", alerting.AlertResolveApi.as_view(), name="alert-resolve"),
    path("alerts/<int:alert_id>/silence", alerting.AlertSilenceApi.as_view(), name="alert-silence"),
    path("silences", alerting.SilenceListCreateApi.as_view(), name="silences"),
    path("silences/<int:silence_id>", alerting.SilenceDetailApi.as_view(), name="silence"),
    path(
        "notification-channels",
        alerting.NotificationChannelListCreateApi.as_view(),
        name="notification-channels",
    ),
    path(
        "notification-channels/<int:channel_id>",
        alerting.NotificationChannelDetailApi.as_view(),
        name="notification-channel",
    ),
    path(
        "notification-channels/<int:channel_id>/test",
        alerting.NotificationChannelTestApi.as_view(),
        name="notification-channel-test",
    ),
    path(
        "notification-channels/<int:channel_id>/rotate-secret",
        alerting.NotificationChannelRotateSecretApi.as_view(),
        name="notification-channel-rotate-secret",
    ),
    path(
        "notification-deliveries",
        alerting.NotificationDeliveryListApi.as_view(),
        name="notification-deliveries",
    ),
    path(
        "notification-deliveries/<int:delivery_id>",
        alerting.NotificationDeliveryDetailApi.as_view(),
        name="notification-delivery",
    ),
]
