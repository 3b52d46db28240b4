from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from analytics.services import check_metrics_store
        from devices.ssh.telemetry import telemetry_sink_register

        telemetry_sink_register(check_metrics_store)
