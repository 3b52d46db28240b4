"""What a notification says: the Standard Webhooks body `{type, timestamp, data}`.

The body is built once, when the delivery is queued, and stored on the delivery:
every attempt sends the same content (a receiver that deduplicates on webhook-id
sees one message), and an email retried an hour later still describes the alert
as it was at the transition. Emails are written from the same stored body.
"""

import json
from datetime import UTC, datetime
from typing import Any

from analytics.models import Alert, AlertRule, NotificationChannel, NotificationDelivery
from devices.models import Device

EventType = NotificationDelivery.EventType


def timestamp_text(at: datetime | None) -> str | None:
    """ISO 8601 in UTC with a "Z", as the Standard Webhooks examples write times."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def body_text(payload: dict[str, Any]) -> str:
    """The exact text sent and signed: compact, keys sorted, so every attempt sends
    the same bytes whatever order the database returns the stored keys in."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def alert_payload(*, alert: Alert, event_type: str, now: datetime) -> dict[str, Any]:
    """The body for an alert transition (alert.fired, alert.reminder, alert.resolved)."""
    return {"type": event_type, "timestamp": timestamp_text(now), "data": alert_data(alert)}


def alert_data(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "state": alert.state,
        "severity": alert.severity,
        "value": alert.value,
        "last_value": alert.last_value,
        "message": alert.message,
        "fired_at": timestamp_text(alert.fired_at),
        "acknowledged_at": timestamp_text(alert.acknowledged_at),
        "resolved_at": timestamp_text(alert.resolved_at),
        "reminders_sent": alert.reminders_sent,
        "device": device_data(alert.device),
        "rule": rule_data(alert.rule),
    }


def device_data(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.public_id,
        "name": device.name,
        "site": device.site.public_id,
        "type": device.device_type,
        "status": device.status,
    }


def rule_data(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        # "metric", or a built-in condition ("device_offline", ...) with no metric.
        "source": rule.source,
        "metric": rule.metric,
        "condition": rule.condition,
        "threshold": rule.threshold,
    }


def channel_test_payload(*, channel: NotificationChannel, now: datetime) -> dict[str, Any]:
    """The body of a channel's test notification (no alert)."""
    return {
        "type": EventType.TEST,
        "timestamp": timestamp_text(now),
        "data": {
            "channel": {"id": channel.pk, "name": channel.name, "kind": channel.kind},
            "message": f"A test notification from HOMEPOT to the channel {channel.name!r}.",
        },
    }
