"""Alerting end to end, every part real: an operator sets up a webhook channel and
a rule through the HTTP API of a live server; a device enrolls and pushes its
readings with the agent's own transport; a Celery worker process runs the beat's
evaluation task and delivers the notifications; an HTTP receiver gets them,
signed as Standard Webhooks say; the event feed tells the same story."""

import os
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from django.db import connection
from homepot_agent.transport import ApiClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from homepot import celery_app
from tests.receivers import HttpReceiver, Received
from tests.test_ssh_runner import worker_start, worker_stop

METRIC = "bme680.temperature"
DEVICE_ID = "pi-lab-e2e"
WAIT_SECONDS = 60
OTHER_SECRET = "whsec_" + "QUFB" * 8  # well-formed, not the channel's

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"),
        reason="a worker process needs the test database on PostgreSQL and a Redis broker",
    ),
]


class OperatorApi:
    """The operator's integration: HTTP with an API token, as in the README."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def post(self, path: str, body: dict) -> dict:
        response = self.session.post(self.base + path, json=body, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str, **params: object) -> dict:
        response = self.session.get(self.base + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def test_a_hot_device_fires_a_signed_webhook_resolves_and_the_feed_shows_both(
    live_server, site, operator, api_token, http_receiver, tmp_path
):
    api = OperatorApi(live_server.url, api_token(operator))
    channel = api.post(
        "/api/v1/notification-channels",
        {"name": "lab receiver", "kind": "webhook", "url": http_receiver.url()},
    )
    rule = api.post(
        "/api/v1/alert-rules",
        {
            "name": "Lab too warm",
            "metric": METRIC,
            "condition": "gt",
            "threshold": 30.0,
            "severity": "critical",
            "auto_resolve": True,
            "channels": [channel["id"]],
        },
    )
    device = device_enroll(api, live_server.url, site.public_id)
    log = tmp_path / "worker.log"
    celery_app.control.purge()  # messages earlier runs left in this test's broker
    worker = worker_start(worker_environment(), log)
    try:
        reading_push(device, 35.5)
        celery_app.send_task("analytics.tasks.evaluate_alerts")  # what beat sends
        fired = webhooks_wait(http_receiver, 1, log)[0]
        reading_push(device, 21.0)
        celery_app.send_task("analytics.tasks.evaluate_alerts")
        resolved = webhooks_wait(http_receiver, 2, log)[1]
    finally:
        worker_stop(worker)

    webhook = Webhook(channel["secret"])
    fired_body = webhook.verify(fired.body, fired.headers)
    resolved_body = webhook.verify(resolved.body, resolved.headers)
    assert fired_body["type"] == "alert.fired"
    assert fired_body["data"]["value"] == 35.5
    assert fired_body["data"]["device"]["device_id"] == DEVICE_ID
    assert fired_body["data"]["rule"]["id"] == rule["id"]
    assert resolved_body["type"] == "alert.resolved"
    assert resolved_body["data"]["id"] == fired_body["data"]["id"]
    assert resolved_body["data"]["state"] == "resolved"
    assert fired.headers["webhook-id"] != resolved.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(fired.body, fired.headers)

    events = feed_wait(api, lambda kinds: "alert.resolved" in kinds, device=DEVICE_ID)
    alert_events = [e for e in events if e["kind"].startswith("alert.")]
    assert [e["kind"] for e in alert_events] == ["alert.fired", "alert.resolved"]
    assert {e["alert"] for e in alert_events} == {fired_body["data"]["id"]}
    assert {(e["device"], e["site"]) for e in alert_events} == {(DEVICE_ID, site.public_id)}


def device_enroll(api: OperatorApi, server_url: str, site_id: str) -> ApiClient:
    """An enrollment token from the operator, then the agent's own registration."""
    token = api.post(
        f"/api/v1/sites/{site_id}/enrollment-tokens",
        {"label": "e2e", "max_uses": 1, "expires_in_hours": 1},
    )["token"]
    registered = ApiClient(server_url).register(
        site_id=site_id,
        token=token,
        device={"device_id": DEVICE_ID, "name": "Lab Pi", "device_type": "raspberry_pi"},
    )
    return ApiClient(server_url, device_id=DEVICE_ID, api_key=registered["api_key"])


def reading_push(device: ApiClient, value: float) -> None:
    """One batch as the agent pushes it: a sample stamped with the device's clock."""
    sample = {"ts": datetime.now(UTC).isoformat(), "metrics": {METRIC: value}}
    answer = device.push(batch_id=str(uuid.uuid4()), samples=[sample])
    assert answer["duplicate"] is False


def worker_environment() -> dict[str, str]:
    """The worker's settings: this test's database (pytest-django's test_ copy)."""
    database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    path = f"/{connection.settings_dict['NAME']}"
    return os.environ | {"DATABASE_URL": database._replace(path=path).geturl()}


def webhooks_wait(receiver: HttpReceiver, count: int, log: Path) -> list[Received]:
    deadline = time.monotonic() + WAIT_SECONDS
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    assert len(receiver.requests) == count  # nothing sent twice
    return receiver.requests


def feed_wait(api: OperatorApi, done: Callable[[list[str]], bool], **params: object) -> list[dict]:
    """Read the feed from the start, following `next`, until `done(kinds so far)`.
    An event shows once the transactions writing before it have ended (other
    test runs may share this PostgreSQL server), hence the deadline."""
    events: list[dict] = []
    after, deadline = "0.0", time.monotonic() + WAIT_SECONDS
    while not done([e["kind"] for e in events]):
        page = api.get("/api/v1/events", after=after, **params)
        events += page["results"]
        after = page["next"]
        if not page["results"]:
            assert time.monotonic() < deadline, [e["kind"] for e in events]
            time.sleep(0.05)
    return events
