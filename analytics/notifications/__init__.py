"""Notifications: channels (email, Standard Webhooks), deliveries and their retries.

Interface (fixed; implementation by the notifications owner):

    notifications_enqueue(*, alert: Alert, event_type: str, sequence: int = 0)
        -> list[NotificationDelivery]
        Called inside the transaction of an alert transition (fired, reminder n,
        resolved). One delivery row per enabled channel of the alert's rule whose
        min_severity the alert meets; the unique constraint makes a repeated call
        for one transition a no-op (never twice). The payload is fixed now; the
        Celery task `analytics.tasks.deliver_notification(delivery_pk)` is queued
        on commit. Returns the deliveries this call created ([] on a repeat); an
        optional `now=` (a controlled clock) stamps the payload.

Modules: `notify` (queueing), `delivery` (one claimed attempt, retries),
`webhooks` and `email` (the two kinds), `network` (webhook URLs and the private
address check), `payload` (the body), `channels` (the services the API and the
admin call: create, update, rotate the secret, send a test).
"""

from analytics.notifications.notify import notifications_enqueue

__all__ = ["notifications_enqueue"]
