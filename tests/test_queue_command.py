"""POST /api/v1/devices/{device_id}/commands"""

import pytest

from commands.models import Command
from devices.models import AuditEntry, Event


def queue(client, body, device_id="pi-1", **headers):
    return client.post(f"/api/v1/devices/{device_id}/commands", body, format="json", **headers)


def test_an_operator_queues_a_command(client, operator, agent):
    client.force_authenticate(operator)

    response = queue(client, {"command_type": "restart_service", "payload": {"service": "nginx"}})

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["device_id"], body["created_by"]) == ("queued", "pi-1", "otto")
    assert body["payload"] == {"service": "nginx"}
    assert body["attempts"] == 0 and body["max_attempts"] == 3
    command = Command.objects.get()
    assert Event.objects.filter(kind="command.queued", device=agent.device).count() == 1
    audit = AuditEntry.objects.get(action="command.queue")
    assert (audit.actor_user, audit.target_id) == (operator, str(command.public_id))


def test_expiry_timeout_and_attempts_can_be_set(client, operator, agent):
    client.force_authenticate(operator)

    body = queue(
        client, {"command_type": "ping", "expires_in": 60, "timeout": 30, "max_attempts": 1}
    ).json()

    command = Command.objects.get()
    assert round((command.expires_at - command.created_at).total_seconds()) == 60
    assert (body["timeout_seconds"], body["max_attempts"]) == (30, 1)


def test_seed_style_upper_case_types_are_accepted(client, operator, agent):
    client.force_authenticate(operator)

    response = queue(client, {"command_type": "UPDATE_CONFIG", "payload": {"push_interval": 30}})

    assert response.status_code == 201
    assert response.json()["command_type"] == "update_config"


def test_an_idempotency_key_makes_a_retry_create_one_command(client, operator, agent):
    client.force_authenticate(operator)
    body = {"command_type": "reboot"}

    first = queue(client, body, HTTP_IDEMPOTENCY_KEY="abc-1")
    retry = queue(client, body, HTTP_IDEMPOTENCY_KEY="abc-1")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json()["command_id"] == retry.json()["command_id"]
    assert Command.objects.count() == 1


def test_an_idempotency_key_reused_with_another_body_is_422(client, operator, agent):
    client.force_authenticate(operator)
    first = queue(client, {"command_type": "reboot"}, HTTP_IDEMPOTENCY_KEY="abc-1")

    reused = queue(client, {"command_type": "ping"}, HTTP_IDEMPOTENCY_KEY="abc-1")

    assert first.status_code == 201
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert list(Command.objects.values_list("command_type", flat=True)) == ["reboot"]


def test_an_idempotency_key_reused_for_another_device_is_422(client, operator, make_agent):
    make_agent("pi-1"), make_agent("pi-2")
    client.force_authenticate(operator)
    body = {"command_type": "reboot"}
    assert queue(client, body, "pi-1", HTTP_IDEMPOTENCY_KEY="abc-1").status_code == 201

    reused = queue(client, body, "pi-2", HTTP_IDEMPOTENCY_KEY="abc-1")

    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Command.objects.get().device.public_id == "pi-1"


def test_an_idempotency_key_longer_than_128_characters_is_400(client, operator, agent):
    client.force_authenticate(operator)
    # Two keys that differ only after 128 characters must not be taken for one.
    response = queue(client, {"command_type": "reboot"}, HTTP_IDEMPOTENCY_KEY="k" * 129)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Command.objects.exists()


def test_idempotency_keys_are_per_caller(client, operator, admin_user, agent):
    body = {"command_type": "reboot"}
    client.force_authenticate(operator)
    mine = queue(client, body, HTTP_IDEMPOTENCY_KEY="abc-1")
    client.force_authenticate(admin_user)

    theirs = queue(client, body, HTTP_IDEMPOTENCY_KEY="abc-1")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["command_id"] != theirs.json()["command_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command_type": "format_disk"}, "detail"),
        ({"command_type": "restart_service"}, "service"),
        ({"command_type": "restart_service", "payload": {"service": "a; rm -rf /"}}, "service"),
        ({"command_type": "ping", "payload": {"extra": 1}}, "extra"),
        ({"command_type": "update_config", "payload": {}}, "non_field_errors"),
        ({"command_type": "update_config", "payload": {"push_interval": 0}}, "push_interval"),
        ({"command_type": "ping", "expires_in": 0}, "expires_in"),
        ({"command_type": "ping", "payload": "x"}, "payload"),
        ({}, "command_type"),
    ],
)
def test_bad_commands_are_400_and_queue_nothing(client, operator, agent, body, field):
    client.force_authenticate(operator)

    response = queue(client, body)

    assert response.status_code == 400
    assert field in response.json()
    assert not Command.objects.exists()


def test_a_viewer_cannot_queue(client, viewer, agent):
    client.force_authenticate(viewer)

    assert queue(client, {"command_type": "ping"}).status_code == 403
    assert not Command.objects.exists()


def test_a_device_cannot_queue_commands(client, agent):
    assert queue(client, {"command_type": "ping"}, **agent.headers).status_code == 401


def test_an_unknown_device_is_404(client, operator, site):
    client.force_authenticate(operator)

    assert queue(client, {"command_type": "ping"}, device_id="ghost").status_code == 404


def test_a_decommissioned_device_gets_no_commands(client, operator, agent):
    client.force_authenticate(operator)
    client.post("/api/v1/devices/pi-1/decommission")

    response = queue(client, {"command_type": "ping"})

    assert response.status_code == 409
    assert not Command.objects.exists()
