import logging
from dataclasses import asdict

from celery import Task, shared_task
from celery.signals import worker_ready
from django.utils import timezone

from analytics import services
from analytics.alerting.evaluate import alerts_evaluate
from analytics.alerting.services import alerts_prune, notification_deliveries_prune
from analytics.models import NotificationDelivery
from analytics.notifications.delivery import DeliveryRetry, notification_deliver
from analytics.partitions import partitions_ensure

logger = logging.getLogger(__name__)


@shared_task
def rollup_telemetry() -> dict[str, int]:
    return asdict(services.telemetry_rollup())


@shared_task
def prune_telemetry() -> dict[str, int]:
    report = asdict(services.telemetry_prune())
    logger.info("telemetry prune: %s", report)
    return report


@shared_task
def ensure_telemetry_partitions() -> list[str]:
    """PostgreSQL: the raw sample partitions of the days ahead (none elsewhere)."""
    return partitions_ensure(timezone.now())


@worker_ready.connect
def _partitions_at_worker_start(**kwargs: object) -> None:
    # Queued, not run here: the worker's main process keeps no database connection.
    ensure_telemetry_partitions.delay()


# Retries are bounded by the delivery's attempts (NOTIFY_MAX_ATTEMPTS), not by
# Celery's count: `attempts` is how many the retried task expects made, so a
# redelivered copy of a task whose attempt was made does nothing.
@shared_task(bind=True, max_retries=None)
def deliver_notification(self: Task, delivery_pk: int, attempts: int = 0) -> str | None:
    try:
        delivery = notification_deliver(
            delivery_pk=delivery_pk, attempts=attempts, now=timezone.now()
        )
    except DeliveryRetry as retry:
        if self.request.is_eager:
            # apply() and CELERY_TASK_ALWAYS_EAGER would retry at once, ignoring the
            # countdown: the delivery stays pending with its next_attempt_at.
            logger.warning("notification %s: not retried in eager mode", delivery_pk)
            return NotificationDelivery.Status.PENDING
        kwargs = {"attempts": retry.attempts}
        raise self.retry(countdown=retry.countdown, kwargs=kwargs) from None
    return delivery.status if delivery else None


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
