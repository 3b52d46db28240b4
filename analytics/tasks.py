import logging
from dataclasses import asdict

from celery import shared_task

from analytics import services

logger = logging.getLogger(__name__)


@shared_task
def rollup_telemetry() -> dict[str, int]:
    return asdict(services.telemetry_rollup())


@shared_task
def prune_telemetry() -> dict[str, int]:
    report = asdict(services.telemetry_prune())
    logger.info("telemetry prune: %s", report)
    return report
