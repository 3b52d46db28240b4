"""Notifications: channels (email, Standard Webhooks), deliveries and their retries.

Interface (fixed; implementation by the notifications owner):

    notifications_enqueue(*, alert: Alert, event_type: str, sequence: int = 0)
        -> list[NotificationDelivery]
        Called inside the transaction of an alert transition (fired, reminder n,
        resolved). One delivery row per enabled channel of the alert's rule whose
        min_severity the alert meets; the unique constraint makes a repeated call
        for one transition a no-op (never twice). The payload is fixed now; the
        Celery task `analytics.tasks.deliver_notification(delivery_pk)` is queued
        on commit.
"""
