"""Delivering a queued notification: one attempt per run of the task
`analytics.tasks.deliver_notification`, retried with back-off.

Each attempt is claimed by a conditional UPDATE on (status pending, the number
of attempts the task expects, due): two copies of one task (a broker that
redelivers a message, a worker restarted mid-attempt) never make one attempt
twice, and a task that finds its attempt made, or the delivery finished, does
nothing. A claim holds the delivery until `next_attempt_at` (the task's hard time
limit later): if the worker dies mid-attempt, the redelivered task makes the
attempt once that has passed.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from analytics.models import NotificationChannel, NotificationDelivery
from analytics.notifications import outcome
from analytics.notifications.email import email_send
from analytics.notifications.outcome import AttemptResult
from analytics.notifications.payload import body_text
from analytics.notifications.webhooks import webhook_headers, webhook_post

logger = logging.getLogger(__name__)
Status = NotificationDelivery.Status
# A receiver's Retry-After is honoured up to this long; more is not a reason to
# hold a notification back for a day.
RETRY_AFTER_MAX_SECONDS = 3600


class DeliveryRetry(Exception):
    """Run the task again in `countdown` seconds, expecting `attempts` attempts made."""

    def __init__(self, reason: str, *, countdown: float, attempts: int) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.attempts = attempts


def notification_deliver(
    *, delivery_pk: int, attempts: int, now: datetime
) -> NotificationDelivery | None:
    """Make attempt `attempts` + 1 of a delivery and record it. None when there was
    nothing to do (delivered, failed, gone, or that attempt already made).
    Raises DeliveryRetry when another attempt is due later."""
    delivery = delivery_claim(delivery_pk=delivery_pk, attempts=attempts, now=now)
    if delivery is None:
        return None
    result = delivery_attempt(delivery, now=now)
    if not attempt_record(delivery, result, now=now, retry=True):
        return None
    if delivery.status == Status.PENDING:
        countdown = (delivery.next_attempt_at - now).total_seconds()
        raise DeliveryRetry(result.error, countdown=countdown, attempts=delivery.attempts)
    return delivery


def delivery_claim(
    *, delivery_pk: int, attempts: int, now: datetime
) -> NotificationDelivery | None:
    """The delivery, claimed for its next attempt; None when that attempt is not
    ours to make. Raises DeliveryRetry when it is not due yet (this worker's clock
    is behind the one that scheduled it, or another worker's claim still holds)."""
    expected = NotificationDelivery.objects.filter(
        pk=delivery_pk, status=Status.PENDING, attempts=attempts
    )
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    if expected.filter(due).update(next_attempt_at=now + claim_duration()):
        return NotificationDelivery.objects.select_related("channel").get(pk=delivery_pk)
    waiting = expected.values_list("next_attempt_at", flat=True).first()
    if waiting is None:
        return None
    countdown = max(1.0, (waiting - now).total_seconds())
    raise DeliveryRetry("not due yet", countdown=countdown, attempts=attempts)


def claim_duration() -> timedelta:
    # After the hard time limit the attempt's worker has surely let go of it.
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def delivery_attempt(delivery: NotificationDelivery, *, now: datetime) -> AttemptResult:
    """Send the delivery's stored body once through its channel."""
    channel = delivery.channel
    if not channel.enabled and delivery.event_type != NotificationDelivery.EventType.TEST:
        # Disabling a channel stops what it still had to retry.
        return outcome.refused("the channel is disabled")
    if channel.kind == NotificationChannel.Kind.EMAIL:
        return email_send(addresses=channel.addresses, payload=delivery.payload)
    if not channel.secret:
        return outcome.refused("the channel has no signing secret")
    body = body_text(delivery.payload)
    headers = webhook_headers(
        secret=channel.secret, message_id=delivery.message_id, body=body, at=now
    )
    return webhook_post(url=channel.url, body=body, headers=headers, now=now)


def attempt_record(
    delivery: NotificationDelivery, result: AttemptResult, *, now: datetime, retry: bool
) -> bool:
    """Record an attempt on the claimed delivery (and on `delivery`): delivered,
    pending with the next attempt's time, or failed. False when the claim was lost."""
    made = delivery.attempts + 1
    fields = {
        "attempts": made,
        "last_status_code": result.status_code,
        "last_error": "" if result.delivered else result.error,
        "status": _status_after(result, attempts=made, retry=retry),
        "next_attempt_at": None,
        "delivered_at": now if result.delivered else None,
    }
    if fields["status"] == Status.PENDING:
        fields["next_attempt_at"] = now + timedelta(seconds=retry_countdown(made, result))
    recorded = NotificationDelivery.objects.filter(
        pk=delivery.pk, status=Status.PENDING, attempts=delivery.attempts
    ).update(**fields)
    if not recorded:
        logger.warning("notification %s: attempt %d outlived its claim", delivery.pk, made)
        return False
    for name, value in fields.items():
        setattr(delivery, name, value)
    if delivery.status == Status.FAILED:
        logger.warning(
            "notification %s (%s to %s) failed after %d attempts: %s",
            delivery.pk,
            delivery.event_type,
            delivery.channel.name,
            made,
            result.error,
        )
    return True


def _status_after(result: AttemptResult, *, attempts: int, retry: bool) -> str:
    if result.delivered:
        return Status.DELIVERED
    if retry and result.retryable and attempts < settings.NOTIFY_MAX_ATTEMPTS:
        return Status.PENDING
    return Status.FAILED


def retry_countdown(attempts: int, result: AttemptResult) -> float:
    """NOTIFY_RETRY_BASE_SECONDS, doubling with each attempt made; longer if the
    receiver asked for it with Retry-After (within reason)."""
    backoff = settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    if result.retry_after_seconds is None:
        return backoff
    return max(backoff, min(result.retry_after_seconds, RETRY_AFTER_MAX_SECONDS))
