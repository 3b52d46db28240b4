"""GET /api/v1/devices/pending: delivery, and the cheap empty poll."""

from datetime import timedelta

from django.utils import timezone

from commands.models import Command
from devices.models import Event

URL = "/api/v1/devices/pending"


def poll(client, agent):
    return client.get(URL, **agent.headers)


def test_a_poll_delivers_queued_commands_oldest_first_in_the_seed_shape(client, agent, enqueue):
    first, second = enqueue(agent, "ping"), enqueue(agent, "reboot")

    response = poll(client, agent)

    assert response.status_code == 200
    body = response.json()
    assert [c["command_id"] for c in body] == [str(first.public_id), str(second.public_id)]
    assert {"command_id", "command_type", "payload", "status", "created_at"} <= set(body[0])
    assert body[0]["status"] == "delivered"
    assert set(Command.objects.values_list("status", flat=True)) == {"delivered"}
    assert Event.objects.filter(kind="command.delivered").count() == 2
    assert Command.objects.get(pk=first.pk).attempts == 1


def test_a_delivered_command_is_not_delivered_again(client, agent, enqueue):
    enqueue(agent)
    poll(client, agent)

    assert poll(client, agent).json() == []


def test_the_poll_interval_is_shorter_while_work_flows(client, agent, enqueue, settings):
    settings.COMMAND_POLL_BUSY_SECONDS, settings.COMMAND_POLL_IDLE_SECONDS = 2, 45
    enqueue(agent)

    assert poll(client, agent)["X-Poll-Interval"] == "2"
    assert poll(client, agent)["X-Poll-Interval"] == "45"


def test_an_empty_poll_touches_no_database(client, agent, django_assert_num_queries):
    poll(client, agent)  # checks the key against its hash and writes presence once

    with django_assert_num_queries(0):
        for _ in range(3):
            assert poll(client, agent).json() == []


def test_only_the_devices_own_commands_are_delivered(client, make_agent, enqueue):
    mine, theirs = make_agent("pi-1"), make_agent("pi-2")
    enqueue(theirs)

    assert poll(client, mine).json() == []
    assert Command.objects.get().status == "queued"


def test_an_expired_command_is_not_delivered(client, agent, enqueue):
    enqueue(agent)
    Command.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert poll(client, agent).json() == []


def test_a_poll_delivers_at_most_a_batch_and_the_rest_next(client, agent, enqueue, settings):
    settings.COMMAND_DELIVERY_BATCH = 2
    for _ in range(3):
        enqueue(agent)

    assert len(poll(client, agent).json()) == 2
    assert len(poll(client, agent).json()) == 1
    assert poll(client, agent).json() == []


def test_polling_needs_a_device_key(client, agent):
    assert client.get(URL).status_code == 401


def test_the_simple_homepot_agent_flow_ends_succeeded(client, agent, enqueue):
    """Exactly the requests HOMEPOT's simple agent makes: read the list, run,
    PUT the status with "completed" and a result. It never acknowledges."""
    enqueue(agent, "ping")

    pending = client.get(URL, HTTP_X_DEVICE_ID="pi-1", HTTP_X_API_KEY=agent.api_key).json()
    for command in pending:
        response = client.put(
            f"/api/v1/devices/{command['command_id']}/status",
            {
                "status": "completed",
                "result": {"pong": True},
                "executed_at": "2026-11-23T10:00:00Z",
            },
            format="json",
            HTTP_X_DEVICE_ID="pi-1",
            HTTP_X_API_KEY=agent.api_key,
        )
        assert response.status_code == 200

    command = Command.objects.get()
    assert command.status == "succeeded"
    assert command.result == {"pong": True}
    assert command.executed_at.isoformat() == "2026-11-23T10:00:00+00:00"


def test_a_limited_poll_delivers_only_that_many_and_keeps_the_rest_queued(client, agent, enqueue):
    first, second = enqueue(agent, "ping"), enqueue(agent, "ping")

    response = client.get(URL + "?limit=1", **agent.headers)

    assert [c["command_id"] for c in response.json()] == [str(first.public_id)]
    assert Command.objects.get(pk=second.pk).status == "queued"
    assert [c["command_id"] for c in poll(client, agent).json()] == [str(second.public_id)]


def test_a_bad_limit_is_refused_and_delivers_nothing(client, agent, enqueue):
    enqueue(agent, "ping")

    response = client.get(URL + "?limit=0", **agent.headers)

    assert response.status_code == 400
    assert "limit" in response.json()
    assert set(Command.objects.values_list("status", flat=True)) == {"queued"}
