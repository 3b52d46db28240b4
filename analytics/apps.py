from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from analytics.services import check_metrics_store
        from devices.ssh.telemetry import telemetry_sink_register

        telemetry_sink_register(check_metrics_store)
        from analytics.alerting.services import alert_rules_builtin_sync

        post_migrate.connect(
            alert_rules_builtin_sync, sender=self, dispatch_uid="homepot-alert-rules-builtin-sync"
        )
        from analytics.partitions import partitions_after_migrate

        post_migrate.connect(
            partitions_after_migrate, sender=self, dispatch_uid="homepot-sample-partitions"
        )
