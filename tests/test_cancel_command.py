"""POST /api/v1/commands/{command_id}/cancel"""

from commands.models import Command
from devices.models import AuditEntry


def cancel(client, command):
    return client.post(f"/api/v1/commands/{command.public_id}/cancel")


def poll(client, agent):
    return client.get("/api/v1/devices/pending", **agent.headers).json()


def test_a_queued_command_is_canceled_and_never_delivered(client, operator, agent, enqueue):
    command = enqueue(agent)
    client.force_authenticate(operator)

    response = cancel(client, command)

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    client.force_authenticate(None)
    assert poll(client, agent) == []
    assert AuditEntry.objects.get(action="command.cancel").actor_user == operator


def test_a_delivered_command_is_canceled_and_its_ack_refused(client, operator, agent, enqueue):
    command = enqueue(agent)
    poll(client, agent)
    client.force_authenticate(operator)

    assert cancel(client, command).status_code == 200

    client.force_authenticate(None)
    ack = client.post(f"/api/v1/devices/pi-1/commands/{command.public_id}/ack", **agent.headers)
    assert ack.status_code == 409
    assert ack.json()["code"] == "canceled"


def test_a_running_command_cannot_be_canceled(client, operator, agent, enqueue):
    command = enqueue(agent)
    poll(client, agent)
    client.post(f"/api/v1/devices/pi-1/commands/{command.public_id}/ack", **agent.headers)
    client.force_authenticate(operator)

    response = cancel(client, command)

    assert response.status_code == 409
    assert "already running" in response.json()["detail"]
    assert Command.objects.get().status == "in_progress"


def test_a_finished_command_cannot_be_canceled(client, operator, agent, enqueue):
    command = enqueue(agent)
    client.force_authenticate(operator)
    cancel(client, command)

    assert cancel(client, command).status_code == 409


def test_a_viewer_cannot_cancel(client, viewer, agent, enqueue):
    command = enqueue(agent)
    client.force_authenticate(viewer)

    assert cancel(client, command).status_code == 403
    assert Command.objects.get().status == "queued"


def test_an_unknown_command_is_404(client, operator, db):
    client.force_authenticate(operator)

    assert (
        client.post("/api/v1/commands/00000000-0000-0000-0000-000000000000/cancel").status_code
        == 404
    )
