"""Email notifications through Django's email backend (the EMAIL_* settings).

Written from the delivery's stored body, so a retried email describes the alert
as it was at the transition, like the webhook does.
"""

import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import NoReverseMatch, reverse

from analytics.models import AlertRule, NotificationDelivery
from analytics.notifications import outcome
from analytics.notifications.outcome import AttemptResult

EventType = NotificationDelivery.EventType
TRANSITION_WORDS = {
    EventType.FIRED: "fired",
    EventType.REMINDER: "still firing",
    EventType.RESOLVED: "resolved",
}


def email_send(*, addresses: list[str], payload: dict[str, Any]) -> AttemptResult:
    """One message to all the channel's addresses; never raises for what the
    SMTP server does."""
    message = EmailMessage(
        subject=email_subject(payload),
        body=email_body(payload),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=addresses,
    )
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        return _recipients_refused(exc)
    except smtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.smtp_code}: {_reply_text(exc.smtp_error)}"
        return _by_code(exc.smtp_code, error)
    except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError) as exc:
        return outcome.retryable(f"SMTP server unreachable: {type(exc).__name__}: {exc}")
    except smtplib.SMTPException as exc:  # STARTTLS missing, ...: a setting to fix
        return outcome.refused(f"SMTP: {type(exc).__name__}: {exc}")
    except OSError as exc:  # no route, DNS, TLS handshake
        return outcome.retryable(f"SMTP server unreachable: {type(exc).__name__}: {exc}")
    return outcome.delivered(None)


def _recipients_refused(exc: smtplib.SMTPRecipientsRefused) -> AttemptResult:
    """Every recipient refused: retried if any refusal was temporary (4xx)."""
    codes = [code for code, _ in exc.recipients.values()]
    refusals = ", ".join(
        f"{address}: {code} {_reply_text(reply)}"
        for address, (code, reply) in exc.recipients.items()
    )
    return _by_code(min(codes), f"recipients refused: {refusals}")


def _by_code(code: int, error: str) -> AttemptResult:
    if 400 <= code < 500:
        return outcome.retryable(error, code)
    return outcome.refused(error, code)


def _reply_text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


# --- What the message says ----------------------------------------------------------------


def email_subject(payload: dict[str, Any]) -> str:
    """ "[HOMEPOT] CRITICAL pi-lab-01: temp 85.2 > 80 (fired)"."""
    prefix = settings.EMAIL_SUBJECT_PREFIX
    if payload["type"] == EventType.TEST:
        return f"{prefix}Test notification to {payload['data']['channel']['name']}"
    alert = payload["data"]
    device_id = alert["device"]["device_id"]
    what = f"{condition_text(alert)} ({transition_text(payload)})"
    return f"{prefix}{alert['severity'].upper()} {device_id}: {what}"


def transition_text(payload: dict[str, Any]) -> str:
    if payload["type"] == EventType.REMINDER:
        return f"still firing, reminder {payload['data']['reminders_sent']}"
    return TRANSITION_WORDS.get(payload["type"], payload["type"])


def condition_text(alert: dict[str, Any]) -> str:
    """What fired: "temp 85.2 > 80", "temp absent", or a built-in rule's name."""
    rule = alert["rule"]
    if not rule["metric"]:
        return rule["name"]
    if rule["condition"] == AlertRule.Condition.ABSENT:
        return f"{rule['metric']} absent"
    return f"{rule['metric']} {number_text(alert['value'])} {threshold_text(rule)}"


def threshold_text(rule: dict[str, Any]) -> str:
    if rule["condition"] == AlertRule.Condition.ABSENT:
        return "no value"
    symbol = AlertRule.Condition(rule["condition"]).label
    return f"{symbol} {number_text(rule['threshold'])}"


def number_text(value: float | None) -> str:
    return "-" if value is None else format(value, ".6g")


def email_body(payload: dict[str, Any]) -> str:
    if payload["type"] == EventType.TEST:
        return payload["data"]["message"] + "\n\nIf you read this, the channel works.\n"
    alert = payload["data"]
    device, rule = alert["device"], alert["rule"]
    lines = [
        f"{alert['severity'].upper()} alert {transition_text(payload)}: {condition_text(alert)}",
        "",
        f"Device:     {device['device_id']} ({device['name']}), type {device['type']}, "
        f"status {device['status']}",
        f"Site:       {device['site']}",
        f"Metric:     {rule['metric'] or '-'}",
        f"Value:      {number_text(alert['value'])} (latest {number_text(alert['last_value'])})",
        f"Threshold:  {threshold_text(rule) if rule['metric'] else '-'}",
        f"Severity:   {alert['severity']}",
        f"Rule:       {rule['name']} (#{rule['id']})",
        f"Message:    {alert['message'] or '-'}",
        f"Fired:      {alert['fired_at']}",
        f"Acknowledged: {alert['acknowledged_at'] or '-'}",
        f"Resolved:   {alert['resolved_at'] or '-'}",
        "",
        f"Alert: {alert_admin_path(alert['id'])}",
    ]
    return "\n".join(lines) + "\n"


def alert_admin_path(alert_pk: int) -> str:
    """A path, not a URL: the server does not know the address operators reach it by."""
    try:
        return reverse("admin:analytics_alert_change", args=[alert_pk])
    except NoReverseMatch:  # an admin without the alert pages: the path they have by default
        return f"{reverse('admin:index')}analytics/alert/{alert_pk}/change/"
