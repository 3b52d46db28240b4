"""Email notifications through a real SMTP server (aiosmtpd on a free port):
what the message says, retries when the server is down or answers 4xx, failure
when it refuses the recipients for good."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import NotificationChannel, NotificationDelivery
from analytics.notifications import notifications_enqueue
from analytics.notifications.channels import notification_channel_create
from analytics.notifications.delivery import notification_deliver
from tests.receivers import SmtpReceiver, alert_make, attempt
from tests.sshd import free_port

Status = NotificationDelivery.Status
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _backoff(settings) -> None:  # noqa: ANN001
    settings.NOTIFY_RETRY_BASE_SECONDS = 10.0
    settings.DEFAULT_FROM_EMAIL = "homepot@lab.example"


@pytest.fixture
def mail_channel() -> NotificationChannel:
    channel, secret = notification_channel_create(
        actor=None,
        name="on-call",
        kind="email",
        addresses=["ops@lab.example", "lead@lab.example"],
    )
    assert secret is None
    return channel


def test_the_message_names_device_metric_value_and_severity(
    site, mail_channel, smtp_receiver: SmtpReceiver
) -> None:
    alert = alert_make(site, [mail_channel], value=85.2)
    [delivery] = notifications_enqueue(alert=alert, event_type="alert.fired")

    assert attempt(delivery) is None

    [message] = smtp_receiver.messages
    assert message["Subject"] == "[HOMEPOT] CRITICAL pi-lab-01: temp 85.2 > 80 (fired)"
    assert message["From"] == "homepot@lab.example"
    assert message["X-Envelope-To"] == "ops@lab.example, lead@lab.example"
    body = message.get_content()
    for text in ["pi-lab-01", "Lab Pi 1", "lab-1", "temp", "85.2", "> 80", "critical", "Hot board"]:
        assert text in body
    assert f"/admin/analytics/alert/{alert.pk}/change/" in body
    assert (delivery.status, delivery.attempts) == (Status.DELIVERED, 1)


def test_reminders_and_resolutions_say_so(site, mail_channel, smtp_receiver) -> None:
    alert = alert_make(site, [mail_channel], value=91)
    alert.reminders_sent = 2
    [reminder] = notifications_enqueue(alert=alert, event_type="alert.reminder", sequence=2)
    alert.state, alert.resolved_at, alert.last_value = "resolved", timezone.now(), 70.5
    [resolved] = notifications_enqueue(alert=alert, event_type="alert.resolved")

    attempt(reminder)
    attempt(resolved)

    subjects = [message["Subject"] for message in smtp_receiver.messages]
    assert subjects == [
        "[HOMEPOT] CRITICAL pi-lab-01: temp 91 > 80 (still firing, reminder 2)",
        "[HOMEPOT] CRITICAL pi-lab-01: temp 91 > 80 (resolved)",
    ]
    assert "latest 70.5" in smtp_receiver.messages[1].get_content()


def test_an_smtp_server_that_is_down_is_retried(
    site, mail_channel, smtp_receiver, settings
) -> None:
    settings.EMAIL_PORT = free_port()  # nothing listens there
    [delivery] = notifications_enqueue(
        alert=alert_make(site, [mail_channel]), event_type="alert.fired"
    )
    start = timezone.now()

    retry = attempt(delivery)

    assert retry is not None and retry.attempts == 1
    assert delivery.status == Status.PENDING
    assert "unreachable" in delivery.last_error
    assert start + timedelta(seconds=9) < delivery.next_attempt_at
    # The server is back: the retry goes out.
    settings.EMAIL_PORT = smtp_receiver.port
    notification_deliver(delivery_pk=delivery.pk, attempts=1, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.DELIVERED, 2)
    assert len(smtp_receiver.messages) == 1


def test_recipients_refused_for_good_fail_at_once(site, mail_channel, smtp_receiver) -> None:
    smtp_receiver.rcpt_replies = {
        "ops@lab.example": "550 5.1.1 No such user",
        "lead@lab.example": "550 5.1.1 No such user",
    }
    [delivery] = notifications_enqueue(
        alert=alert_make(site, [mail_channel]), event_type="alert.fired"
    )

    assert attempt(delivery) is None

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.FAILED,
        1,
        550,
    )
    assert "ops@lab.example" in delivery.last_error
    assert smtp_receiver.messages == []


def test_recipients_refused_for_now_are_retried(site, mail_channel, smtp_receiver) -> None:
    smtp_receiver.rcpt_replies = {
        "ops@lab.example": "450 4.2.1 Mailbox busy",
        "lead@lab.example": "550 5.1.1 No such user",
    }
    [delivery] = notifications_enqueue(
        alert=alert_make(site, [mail_channel]), event_type="alert.fired"
    )

    assert attempt(delivery) is not None

    assert (delivery.status, delivery.last_status_code) == (Status.PENDING, 450)


def test_one_refused_recipient_does_not_stop_the_others(site, mail_channel, smtp_receiver) -> None:
    smtp_receiver.rcpt_replies = {"lead@lab.example": "550 5.1.1 No such user"}
    [delivery] = notifications_enqueue(
        alert=alert_make(site, [mail_channel]), event_type="alert.fired"
    )

    assert attempt(delivery) is None

    assert delivery.status == Status.DELIVERED
    [message] = smtp_receiver.messages
    assert message["X-Envelope-To"] == "ops@lab.example"
