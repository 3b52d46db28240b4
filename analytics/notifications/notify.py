"""Queueing the notifications of an alert transition."""

import secrets
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import SEVERITY_RANK, Alert, NotificationChannel, NotificationDelivery
from analytics.notifications.payload import alert_payload

DELIVER_TASK = "analytics.tasks.deliver_notification"


def notifications_enqueue(
    *, alert: Alert, event_type: str, sequence: int = 0, now: datetime | None = None
) -> list[NotificationDelivery]:
    """The deliveries this call created for a transition (fired, reminder
    `sequence`, resolved), one per enabled channel of the alert's rule whose
    min_severity the alert meets; [] when the transition was queued before (the
    unique constraint on channel, alert, type and sequence decides, so two
    concurrent calls make one delivery each). Call it inside the transition's
    transaction: the deliveries are sent once it commits."""
    channels = list(alert_channels(alert))
    if not channels:
        return []
    payload = alert_payload(alert=alert, event_type=event_type, now=now or timezone.now())
    candidates = [
        NotificationDelivery(
            channel=channel,
            alert=alert,
            event_type=event_type,
            sequence=sequence,
            message_id=message_id_new(),
            payload=payload,
        )
        for channel in channels
    ]
    NotificationDelivery.objects.bulk_create(candidates, ignore_conflicts=True)
    # The rows that conflicted keep their own message ids: ours mark the new ones.
    created = list(
        NotificationDelivery.objects.filter(
            message_id__in=[candidate.message_id for candidate in candidates]
        ).select_related("channel")
    )
    for delivery in created:
        delivery_queue(delivery)
    return created


def alert_channels(alert: Alert) -> QuerySet[NotificationChannel]:
    rank = SEVERITY_RANK[alert.severity]
    met = [severity for severity, needed in SEVERITY_RANK.items() if needed <= rank]
    return alert.rule.channels.filter(enabled=True, min_severity__in=met)


def message_id_new() -> str:
    """A webhook-id: unique, and no guess of another delivery's."""
    return "msg_" + secrets.token_urlsafe(24)


def delivery_queue(delivery: NotificationDelivery) -> None:
    """Send the delivery once the transaction that created it commits."""
    pk = delivery.pk
    # By name: analytics.tasks imports this package (the task runs the delivery).
    transaction.on_commit(lambda: current_app.send_task(DELIVER_TASK, args=[pk]))
