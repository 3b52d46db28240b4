import logging
from dataclasses import asdict

from celery import shared_task
from django.utils import timezone

from analytics import services
from analytics.alerting.evaluate import alerts_evaluate
from analytics.alerting.services import alerts_prune, notification_deliveries_prune

logger = logging.getLogger(__name__)


@shared_task
def rollup_telemetry() -> dict[str, int]:
    return asdict(services.telemetry_rollup())


@shared_task
def prune_telemetry() -> dict[str, int]:
    report = asdict(services.telemetry_prune())
    logger.info("telemetry prune: %s", report)
    return report


# Rounds that overlap (two workers, a slow round) skip each other's rules.
@shared_task
def evaluate_alerts() -> dict[str, int]:
    report = asdict(alerts_evaluate(now=timezone.now()))
    if report["fired"] or report["resolved"] or report["failed"]:
        logger.info("alert evaluation: %s", report)
    return report


@shared_task
def prune_alerts() -> dict[str, int]:
    now = timezone.now()
    return {"alerts": alerts_prune(now=now), "deliveries": notification_deliveries_prune(now=now)}
