"""Webhooks to a real HTTP receiver: Standard Webhooks signatures, retries with
back-off on 5xx, 429, timeouts and refused connections, failures that are not
retried (4xx, redirects, blocked addresses), one send per attempt whatever the
broker redelivers, and a real Celery worker running the retries.

The tests play the worker with a controlled clock (`attempt`), except the last,
which runs the retries through a real worker with a tiny back-off.
"""

import os
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from analytics.models import NotificationChannel, NotificationDelivery
from analytics.notifications import notifications_enqueue
from analytics.notifications.channels import notification_channel_create, webhook_secret_new
from analytics.notifications.delivery import delivery_claim, notification_deliver
from analytics.tasks import deliver_notification
from homepot import celery_app
from homepot.errors import ServiceError
from tests.receivers import Answer, HttpReceiver, Received, alert_make, attempt
from tests.sshd import free_port

Status = NotificationDelivery.Status


@pytest.fixture(autouse=True)
def _backoff(settings) -> None:  # noqa: ANN001
    settings.NOTIFY_RETRY_BASE_SECONDS = 10.0
    settings.NOTIFY_MAX_ATTEMPTS = 10
    settings.NOTIFY_TIMEOUT_SECONDS = 2.0


def webhook_channel(url: str, name: str = "hooks") -> tuple[NotificationChannel, str]:
    channel, secret = notification_channel_create(actor=None, name=name, kind="webhook", url=url)
    return channel, secret


@pytest.fixture
def webhook(http_receiver: HttpReceiver) -> tuple[NotificationChannel, str]:
    return webhook_channel(http_receiver.url())


def queued(site, channel: NotificationChannel) -> NotificationDelivery:  # noqa: ANN001
    [delivery] = notifications_enqueue(alert=alert_make(site, [channel]), event_type="alert.fired")
    return delivery


def verified(secret: str, request: Received) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


# --- Signatures ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_signature_verifies_with_the_standard_webhooks_library(
    site, webhook, http_receiver
) -> None:
    channel, secret = webhook
    delivery = queued(site, channel)

    assert attempt(delivery) is None

    [request] = http_receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    body = verified(secret, request)
    assert body["type"] == "alert.fired"
    assert body["data"]["device"]["device_id"] == "pi-lab-01"
    assert body["data"]["rule"]["metric"] == "temp"
    assert body["data"]["value"] == 85.2
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "HOMEPOT"
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.DELIVERED,
        1,
        200,
    )
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


@pytest.mark.django_db
def test_a_wrong_secret_or_a_changed_body_fails_verification(site, webhook, http_receiver) -> None:
    channel, secret = webhook
    attempt(queued(site, channel))
    [request] = http_receiver.requests

    with pytest.raises(WebhookVerificationError):
        verified(webhook_secret_new(), request)
    tampered = Received(request.method, request.path, request.headers, request.body + b" ")
    with pytest.raises(WebhookVerificationError):
        verified(secret, tampered)


# --- Retries --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_503_twice_then_200_is_delivered_once_after_three_attempts(
    site, webhook, http_receiver
) -> None:
    channel, secret = webhook
    http_receiver.script(503, 503)
    delivery = queued(site, channel)
    start = timezone.now()

    retry = attempt(delivery, start)
    assert retry.countdown == 10 and retry.attempts == 1
    assert (delivery.status, delivery.last_status_code) == (Status.PENDING, 503)
    assert delivery.next_attempt_at == start + timedelta(seconds=10)
    assert "503" in delivery.last_error

    # Too early (a worker whose clock is behind): nothing is sent, it comes back.
    early = attempt(delivery, start + timedelta(seconds=4))
    assert early.countdown == 6 and early.attempts == 1
    assert len(http_receiver.requests) == 1

    retry = attempt(delivery, start + timedelta(seconds=10))
    assert retry.countdown == 20 and delivery.attempts == 2  # doubling
    assert attempt(delivery, start + timedelta(seconds=30)) is None

    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.DELIVERED, 3, "")
    assert len(http_receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in http_receiver.requests} == {delivery.message_id}
    for request in http_receiver.requests:
        assert verified(secret, request)["type"] == "alert.fired"
    # The message of a finished delivery, redelivered: nothing more is sent.
    assert notification_deliver(delivery_pk=delivery.pk, attempts=2, now=timezone.now()) is None
    assert len(http_receiver.requests) == 3


@pytest.mark.django_db
def test_it_gives_up_after_notify_max_attempts(site, webhook, http_receiver, settings) -> None:
    settings.NOTIFY_MAX_ATTEMPTS = 3
    http_receiver.script(500, 502, 504, 200)
    delivery = queued(site, webhook[0])
    now = timezone.now()

    assert attempt(delivery, now) is not None
    assert attempt(delivery, now + timedelta(seconds=10)) is not None
    assert attempt(delivery, now + timedelta(seconds=30)) is None

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.FAILED,
        3,
        504,
    )
    assert delivery.next_attempt_at is None and delivery.delivered_at is None


@pytest.mark.django_db
def test_429_waits_as_long_as_retry_after_says_within_reason(site, webhook, http_receiver) -> None:
    http_receiver.script(
        Answer(429, {"retry-after": "120"}), Answer(503, {"retry-after": "999999"})
    )
    delivery = queued(site, webhook[0])
    now = timezone.now()

    assert attempt(delivery, now).countdown == 120
    assert delivery.last_status_code == 429
    assert attempt(delivery, now + timedelta(seconds=120)).countdown == 3600


@pytest.mark.django_db
def test_a_receiver_that_does_not_answer_times_out_and_is_retried(
    site, webhook, http_receiver, settings
) -> None:
    settings.NOTIFY_TIMEOUT_SECONDS = 0.3
    http_receiver.script(Answer(hang=True))
    delivery = queued(site, webhook[0])

    retry = attempt(delivery)

    assert retry is not None
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.PENDING,
        1,
        None,
    )
    assert "timed out" in delivery.last_error


@pytest.mark.django_db
def test_a_refused_connection_is_retried(site) -> None:
    channel, _ = webhook_channel(f"http://127.0.0.1:{free_port()}/hook")
    delivery = queued(site, channel)

    assert attempt(delivery) is not None

    assert (delivery.status, delivery.attempts) == (Status.PENDING, 1)
    assert "ConnectionRefused" in delivery.last_error


# --- Not retried ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", [410, 400, 401, 404])
def test_a_4xx_fails_at_once(site, webhook, http_receiver, status: int) -> None:
    http_receiver.script(status)
    delivery = queued(site, webhook[0])

    assert attempt(delivery) is None

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.FAILED,
        1,
        status,
    )
    assert len(http_receiver.requests) == 1


@pytest.mark.django_db
def test_a_redirect_is_not_followed(site, webhook, http_receiver) -> None:
    http_receiver.script(Answer(302, {"location": http_receiver.url("/elsewhere")}))
    delivery = queued(site, webhook[0])

    assert attempt(delivery) is None

    assert [request.path for request in http_receiver.requests] == ["/hook"]
    assert (delivery.status, delivery.last_status_code) == (Status.FAILED, 302)
    assert "/elsewhere" in delivery.last_error and "not followed" in delivery.last_error


@pytest.mark.django_db
def test_disabling_a_channel_stops_its_retries(site, webhook, http_receiver) -> None:
    channel, _ = webhook
    http_receiver.script(503)
    delivery = queued(site, channel)
    attempt(delivery)
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False)

    assert attempt(delivery, timezone.now() + timedelta(seconds=10)) is None

    assert (delivery.status, delivery.attempts) == (Status.FAILED, 2)
    assert "disabled" in delivery.last_error
    assert len(http_receiver.requests) == 1


# --- Private addresses ------------------------------------------------------------------------


@pytest.mark.django_db
def test_private_addresses_are_refused_at_delivery_when_the_setting_is_off(
    site, webhook, http_receiver, settings
) -> None:
    delivery = queued(site, webhook[0])  # created while allowed (the default)
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False

    assert attempt(delivery) is None

    assert http_receiver.requests == []
    assert delivery.status == Status.FAILED
    assert "127.0.0.1" in delivery.last_error
    assert "NOTIFY_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.20:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://100.64.0.1/hook",
    ],
)
def test_private_addresses_are_refused_at_creation_when_the_setting_is_off(
    settings, url: str
) -> None:
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False

    with pytest.raises(ServiceError) as refused:
        webhook_channel(url)

    assert refused.value.code == "blocked_address"
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_public_addresses_and_private_ones_when_allowed_are_accepted(settings) -> None:
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    public, _ = webhook_channel("https://8.8.8.8/hook", name="public")
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    lan, _ = webhook_channel("http://192.168.1.20:8080/hook", name="lan")

    assert (public.url, lan.url) == ("https://8.8.8.8/hook", "http://192.168.1.20:8080/hook")


# --- Redelivered tasks --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_redelivered_task_does_not_send_twice(site, webhook, http_receiver) -> None:
    delivery = queued(site, webhook[0])

    first = deliver_notification.apply(args=[delivery.pk]).get()
    again = deliver_notification.apply(args=[delivery.pk]).get()

    assert (first, again) == (Status.DELIVERED, None)
    assert len(http_receiver.requests) == 1


@pytest.mark.django_db
def test_a_copy_of_a_task_waits_while_another_makes_the_attempt(
    site, webhook, http_receiver, settings
) -> None:
    settings.CELERY_TASK_TIME_LIMIT = 300
    delivery = queued(site, webhook[0])
    now = timezone.now()
    # One worker claims the first attempt, then dies before making it.
    assert delivery_claim(delivery_pk=delivery.pk, attempts=0, now=now) is not None

    waiting = attempt(delivery, now + timedelta(seconds=1))
    assert waiting.countdown == 299 and waiting.attempts == 0
    assert http_receiver.requests == []

    # Once its claim has lapsed, the redelivered task makes the attempt.
    assert attempt(delivery, now + timedelta(seconds=300)) is None
    assert (delivery.status, delivery.attempts) == (Status.DELIVERED, 1)
    assert len(http_receiver.requests) == 1


# --- A real worker --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_503_twice_and_delivers_once(
    site, webhook, http_receiver, tmp_path
) -> None:
    from tests.test_ssh_runner import worker_start, worker_stop

    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("a worker process needs the test database on PostgreSQL and a Redis broker")
    channel, secret = webhook
    http_receiver.script(503, 503)
    alert = alert_make(site, [channel])
    database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    env = os.environ | {
        "DATABASE_URL": database._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
        "NOTIFY_RETRY_BASE_SECONDS": "0.2",
    }
    celery_app.control.purge()  # messages earlier runs left in this test's broker
    worker = worker_start(env, tmp_path / "worker.log")
    try:
        with transaction.atomic():
            [delivery] = notifications_enqueue(alert=alert, event_type="alert.fired")
        delivery = wait_for_finished(delivery, tmp_path / "worker.log")
    finally:
        worker_stop(worker)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.DELIVERED,
        3,
        200,
    )
    assert len(http_receiver.requests) == 3
    for request in http_receiver.requests:
        assert verified(secret, request)["data"]["id"] == alert.pk


def wait_for_finished(delivery: NotificationDelivery, log: Path) -> NotificationDelivery:
    deadline = time.monotonic() + 60
    while True:
        delivery.refresh_from_db()
        if delivery.status != Status.PENDING:
            return delivery
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


# --- HTTPS ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_https_checks_the_certificate_against_the_urls_host_name(
    site, https_receiver, monkeypatch
) -> None:
    receiver, tls = https_receiver
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # trust the test authority
    # "localhost" resolves to ::1 (nothing listens there) and 127.0.0.1 (the receiver).
    channel, secret = webhook_channel(receiver.url(host="localhost"))
    delivery = queued(site, channel)

    assert attempt(delivery) is None

    assert delivery.status == Status.DELIVERED
    [request] = receiver.requests
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert verified(secret, request)["type"] == "alert.fired"


@pytest.mark.django_db
def test_an_untrusted_certificate_is_not_sent_to(site, https_receiver) -> None:
    receiver, _ = https_receiver
    delivery = queued(site, webhook_channel(receiver.url(host="localhost"))[0])

    assert attempt(delivery) is not None

    assert receiver.requests == []
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error
