import logging
from dataclasses import asdict

from celery import shared_task
from django.utils import timezone

from commands import services

logger = logging.getLogger(__name__)


@shared_task
def sweep_commands() -> dict[str, int]:
    report = asdict(services.commands_sweep())
    if any(report.values()):
        logger.info("command sweep: %s", report)
    return report


@shared_task
def prune_commands() -> int:
    return services.commands_prune(now=timezone.now())
