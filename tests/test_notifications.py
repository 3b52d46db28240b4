"""Queueing notifications (one delivery per channel and transition, the
min_severity filter, the body fixed at queueing) and the channel services the
API and the admin call (create, validate, update, rotate the secret, test)."""

import base64
from datetime import UTC, datetime

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from analytics.models import NotificationChannel, NotificationDelivery, Severity
from analytics.notifications import notifications_enqueue
from analytics.notifications.channels import (
    EMAIL_ADDRESSES_MAX,
    notification_channel_create,
    notification_channel_secret_rotate,
    notification_channel_test,
    notification_channel_update,
)
from devices.models import AuditEntry
from homepot.errors import ConflictError, ServiceError
from tests.receivers import HttpReceiver, SmtpReceiver, alert_make

Status = NotificationDelivery.Status
pytestmark = pytest.mark.django_db


def email_channel(name: str, min_severity: str = Severity.INFO, **fields) -> NotificationChannel:
    channel, _ = notification_channel_create(
        actor=None,
        name=name,
        kind="email",
        addresses=fields.pop("addresses", [f"{name}@lab.example"]),
        min_severity=min_severity,
        **fields,
    )
    return channel


# --- notifications_enqueue ---------------------------------------------------------------


def test_two_enqueues_of_one_transition_make_one_delivery(
    site, django_capture_on_commit_callbacks
) -> None:
    alert = alert_make(site, [email_channel("ops")])

    with django_capture_on_commit_callbacks() as queued:
        first = notifications_enqueue(alert=alert, event_type="alert.fired")
        again = notifications_enqueue(alert=alert, event_type="alert.fired")

    assert len(first) == 1 and again == []
    assert NotificationDelivery.objects.count() == 1
    assert len(queued) == 1  # one task, sent once the transition commits
    [delivery] = first
    assert delivery.message_id.startswith("msg_") and len(delivery.message_id) > 20
    assert (delivery.status, delivery.attempts) == (Status.PENDING, 0)


def test_each_reminder_and_the_resolution_are_their_own_deliveries(site) -> None:
    alert = alert_make(site, [email_channel("ops")])

    notifications_enqueue(alert=alert, event_type="alert.fired")
    notifications_enqueue(alert=alert, event_type="alert.reminder", sequence=1)
    notifications_enqueue(alert=alert, event_type="alert.reminder", sequence=2)
    notifications_enqueue(alert=alert, event_type="alert.reminder", sequence=2)
    notifications_enqueue(alert=alert, event_type="alert.resolved")

    rows = NotificationDelivery.objects.order_by("id").values_list("event_type", "sequence")
    assert list(rows) == [
        ("alert.fired", 0),
        ("alert.reminder", 1),
        ("alert.reminder", 2),
        ("alert.resolved", 0),
    ]
    assert NotificationDelivery.objects.values("message_id").distinct().count() == 4


def test_only_enabled_channels_the_severity_meets_are_notified(site) -> None:
    channels = [
        email_channel("everything", Severity.INFO),
        email_channel("warnings", Severity.WARNING),
        email_channel("pager", Severity.CRITICAL),
        email_channel("muted", Severity.INFO, enabled=False),
    ]
    warning = alert_make(site, channels, severity=Severity.WARNING)

    created = notifications_enqueue(alert=warning, event_type="alert.fired")

    assert sorted(d.channel.name for d in created) == ["everything", "warnings"]


def test_an_alert_whose_rule_has_no_channels_notifies_no_one(site) -> None:
    assert notifications_enqueue(alert=alert_make(site, []), event_type="alert.fired") == []
    assert not NotificationDelivery.objects.exists()


def test_the_body_is_fixed_when_queued(site) -> None:
    alert = alert_make(site, [email_channel("ops")], value=85.2)
    now = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)

    [delivery] = notifications_enqueue(alert=alert, event_type="alert.fired", now=now)
    alert.state, alert.value = "resolved", 10.0
    alert.save()
    delivery.refresh_from_db()

    body = delivery.payload
    assert (body["type"], body["timestamp"]) == ("alert.fired", "2026-05-01T12:30:00Z")
    data = body["data"]
    assert (data["id"], data["state"], data["severity"], data["value"]) == (
        alert.pk,
        "firing",
        "critical",
        85.2,
    )
    assert data["device"] == {
        "device_id": "pi-lab-01",
        "name": "Lab Pi 1",
        "site": "lab-1",
        "type": "raspberry_pi",
        "status": "new",
    }
    assert data["rule"] == {
        "id": alert.rule_id,
        "name": "Hot board",
        "source": "metric",
        "metric": "temp",
        "condition": "gt",
        "threshold": 80.0,
    }
    assert {"last_value", "message", "fired_at", "acknowledged_at", "resolved_at"} <= set(data)
    assert data["reminders_sent"] == 0


def test_a_transition_rolled_back_queues_nothing(site, django_capture_on_commit_callbacks) -> None:
    alert = alert_make(site, [email_channel("ops")])

    with django_capture_on_commit_callbacks() as queued:
        with pytest.raises(RuntimeError), transaction.atomic():
            notifications_enqueue(alert=alert, event_type="alert.fired")
            raise RuntimeError("the transition failed")

    assert queued == []
    assert not NotificationDelivery.objects.exists()


# --- Creating channels ------------------------------------------------------------------------


def test_a_webhook_channel_gets_a_secret_returned_once(admin_user) -> None:
    channel, secret = notification_channel_create(
        actor=admin_user, name="hooks", kind="webhook", url="https://hooks.lab.example/in"
    )

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    Webhook(secret)  # the library takes it
    assert NotificationChannel.objects.get(pk=channel.pk).secret == secret
    assert channel.created_by == admin_user
    entry = AuditEntry.objects.get(action="notification_channel.create")
    assert entry.actor_user == admin_user and entry.target_id == str(channel.pk)
    assert entry.data["url"] == "https://hooks.lab.example/in"
    assert secret not in str(entry.data) and "secret" not in entry.data


def test_two_webhook_channels_get_different_secrets() -> None:
    _, first = notification_channel_create(actor=None, name="a", kind="webhook", url="http://a/")
    _, second = notification_channel_create(actor=None, name="b", kind="webhook", url="http://b/")

    assert first != second


def test_email_addresses_are_stored_stripped_without_repeats() -> None:
    channel, secret = notification_channel_create(
        actor=None,
        name="ops",
        kind="email",
        addresses=[" ops@lab.example", "ops@lab.example", "lead@lab.example "],
    )

    assert secret is None
    assert channel.addresses == ["ops@lab.example", "lead@lab.example"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"kind": "email", "addresses": ["not-an-address"]}, "invalid_address"),
        ({"kind": "email", "addresses": []}, "addresses_required"),
        (
            {"kind": "email", "addresses": [f"u{n}@lab.example" for n in range(51)]},
            "too_many_addresses",
        ),
        ({"kind": "email", "addresses": ["a@lab.example"], "url": "http://x/"}, "url_not_allowed"),
        ({"kind": "webhook", "url": ""}, "url_required"),
        ({"kind": "webhook", "url": "ftp://files.lab.example/in"}, "invalid_scheme"),
        ({"kind": "webhook", "url": "https://user:pw@hooks.lab.example/in"}, "credentials_in_url"),
        ({"kind": "webhook", "url": "https://hooks.lab.example:99999/in"}, "invalid_url"),
        ({"kind": "webhook", "url": "https:///in"}, "invalid_url"),
        ({"kind": "webhook", "url": "https://hooks lab/in"}, "invalid_url"),
        (
            {"kind": "webhook", "url": "http://x/", "addresses": ["a@lab.example"]},
            "addresses_not_allowed",
        ),
        ({"kind": "sms", "url": ""}, "invalid_kind"),
        ({"kind": "webhook", "url": "http://x/", "min_severity": "panic"}, "invalid_min_severity"),
        ({"kind": "webhook", "url": "http://x/", "name": "  "}, "invalid_name"),
    ],
)
def test_invalid_channels_are_refused_naming_the_problem(fields: dict, code: str) -> None:
    fields = {"name": "ch"} | fields

    with pytest.raises(ServiceError) as refused:
        notification_channel_create(actor=None, **fields)

    assert refused.value.code == code
    assert refused.value.status_code == 400
    assert not NotificationChannel.objects.exists()


def test_fifty_addresses_are_allowed() -> None:
    addresses = [f"u{n}@lab.example" for n in range(EMAIL_ADDRESSES_MAX)]

    channel = email_channel("many", addresses=addresses)

    assert len(channel.addresses) == 50


def test_a_name_in_use_is_a_conflict() -> None:
    email_channel("ops")

    with pytest.raises(ConflictError) as conflict:
        email_channel("ops")

    assert (conflict.value.status_code, conflict.value.code) == (409, "name_in_use")


# --- Changing channels -------------------------------------------------------------------


def test_changes_are_saved_and_audited(admin_user) -> None:
    channel = email_channel("ops")

    channel = notification_channel_update(
        actor=admin_user,
        channel=channel,
        changes={"addresses": ["new@lab.example"], "min_severity": "critical", "enabled": True},
    )

    stored = NotificationChannel.objects.get(pk=channel.pk)
    assert (stored.addresses, stored.min_severity) == (["new@lab.example"], "critical")
    entry = AuditEntry.objects.get(action="notification_channel.change")
    assert entry.data == {"changed": {"addresses": ["new@lab.example"], "min_severity": "critical"}}


def test_no_change_writes_no_audit_entry() -> None:
    channel = email_channel("ops")

    notification_channel_update(actor=None, channel=channel, changes={"name": "ops"})

    assert not AuditEntry.objects.filter(action="notification_channel.change").exists()


def test_an_invalid_change_is_refused_and_nothing_changes(settings) -> None:
    channel, _ = notification_channel_create(
        actor=None, name="hooks", kind="webhook", url="http://hooks.lab.example/"
    )
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False

    with pytest.raises(ServiceError) as refused:
        notification_channel_update(
            actor=None, channel=channel, changes={"url": "http://127.0.0.1:6379/"}
        )

    assert refused.value.code == "blocked_address"
    assert refused.value.message.startswith("url: ")
    assert NotificationChannel.objects.get(pk=channel.pk).url == "http://hooks.lab.example/"


def test_the_kind_cannot_change_and_names_stay_unique() -> None:
    channel = email_channel("ops")
    email_channel("pager")

    with pytest.raises(ValueError):
        notification_channel_update(actor=None, channel=channel, changes={"kind": "webhook"})
    with pytest.raises(ConflictError):
        notification_channel_update(actor=None, channel=channel, changes={"name": "pager"})


def test_rotating_the_secret_returns_a_new_one_once(admin_user) -> None:
    channel, old = notification_channel_create(
        actor=None, name="hooks", kind="webhook", url="http://hooks.lab.example/"
    )

    new = notification_channel_secret_rotate(actor=admin_user, channel=channel)

    assert new != old and new.startswith("whsec_")
    assert NotificationChannel.objects.get(pk=channel.pk).secret == new
    entry = AuditEntry.objects.get(action="notification_channel.rotate_secret")
    assert new not in str(entry.data) and old not in str(entry.data)
    with pytest.raises(ServiceError) as refused:
        notification_channel_secret_rotate(actor=admin_user, channel=email_channel("ops"))
    assert refused.value.code == "not_a_webhook"


# --- Sending a test ----------------------------------------------------------------------


def test_a_test_to_a_webhook_is_sent_now_and_recorded(
    admin_user, http_receiver: HttpReceiver
) -> None:
    channel, secret = notification_channel_create(
        actor=None, name="hooks", kind="webhook", url=http_receiver.url()
    )

    delivery = notification_channel_test(channel=channel, actor=admin_user)

    [request] = http_receiver.requests
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "test" and body["data"]["channel"]["name"] == "hooks"
    assert (delivery.status, delivery.attempts, delivery.event_type) == (
        Status.DELIVERED,
        1,
        "test",
    )
    assert delivery.alert is None
    assert NotificationDelivery.objects.get(pk=delivery.pk).status == Status.DELIVERED
    entry = AuditEntry.objects.get(action="notification_channel.test")
    assert entry.data == {"status": "delivered", "error": ""}


def test_a_failed_test_is_recorded_and_not_retried(http_receiver: HttpReceiver) -> None:
    channel, _ = notification_channel_create(
        actor=None, name="hooks", kind="webhook", url=http_receiver.url()
    )
    http_receiver.script(503)

    delivery = notification_channel_test(channel=channel, actor=None)

    stored = NotificationDelivery.objects.get(pk=delivery.pk)
    assert (stored.status, stored.attempts, stored.last_status_code) == (Status.FAILED, 1, 503)
    assert stored.next_attempt_at is None


def test_a_disabled_email_channel_can_be_tested(smtp_receiver: SmtpReceiver) -> None:
    channel = email_channel("ops", enabled=False)

    delivery = notification_channel_test(channel=channel, actor=None)

    assert delivery.status == Status.DELIVERED
    [message] = smtp_receiver.messages
    assert message["Subject"] == "[HOMEPOT] Test notification to ops"
    assert "the channel 'ops'" in message.get_content()
