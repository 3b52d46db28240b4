"""POST .../commands/{command_id}/ack and PUT /api/v1/devices/{command_id}/status"""

import pytest

from commands.models import Command
from devices.models import AuditEntry, Event


@pytest.fixture
def delivered(client, agent, enqueue) -> Command:
    command = enqueue(agent, "restart_service", {"service": "nginx"})
    client.get("/api/v1/devices/pending", **agent.headers)
    command.refresh_from_db()
    return command


def ack(client, agent, command, device_id=None):
    url = f"/api/v1/devices/{device_id or agent.device.public_id}/commands/{command.public_id}/ack"
    return client.post(url, **agent.headers)


def report(client, agent, command, body):
    url = f"/api/v1/devices/{command.public_id}/status"
    return client.put(url, body, format="json", **agent.headers)


def status_of(command: Command) -> str:
    command.refresh_from_db()
    return command.status


def test_ack_starts_the_command_with_a_deadline(client, agent, delivered):
    response = ack(client, agent, delivered)

    assert response.status_code == 200
    assert response.json()["status"] == "in_progress"
    delivered.refresh_from_db()
    assert delivered.started_at is not None
    assert (delivered.deadline - delivered.started_at).total_seconds() == delivered.timeout_seconds


def test_a_repeated_ack_changes_nothing(client, agent, delivered):
    ack(client, agent, delivered)

    assert ack(client, agent, delivered).status_code == 200
    assert Event.objects.filter(kind="command.in_progress").count() == 1


def test_ack_of_a_queued_command_is_409(client, agent, enqueue):
    command = enqueue(agent)

    response = ack(client, agent, command)

    assert response.status_code == 409
    assert response.json()["code"] == "queued"
    assert status_of(command) == "queued"


def test_ack_as_another_device_in_the_path_is_403(client, agent, delivered, make_agent):
    make_agent("pi-2")

    assert ack(client, agent, delivered, device_id="pi-2").status_code == 403
    assert status_of(delivered) == "delivered"


def test_another_devices_command_is_404(client, delivered, make_agent):
    intruder = make_agent("pi-2")

    assert ack(client, intruder, delivered).status_code == 404
    assert report(client, intruder, delivered, {"status": "failed"}).status_code == 404
    assert status_of(delivered) == "delivered"


def test_an_unknown_command_is_404(client, agent, delivered):
    delivered.public_id = "00000000-0000-0000-0000-000000000000"

    assert ack(client, agent, delivered).status_code == 404
    assert report(client, agent, delivered, {"status": "completed"}).status_code == 404


@pytest.mark.parametrize(
    ("reported", "stored"),
    [
        ("completed", "succeeded"),
        ("succeeded", "succeeded"),
        ("FAILED", "failed"),
        ("rejected", "rejected"),
    ],
)
def test_a_running_command_reports_its_result(client, agent, delivered, reported, stored):
    ack(client, agent, delivered)

    response = report(
        client,
        agent,
        delivered,
        {
            "status": reported,
            "result": {"unit": "nginx"},
            "exit_code": 3,
            "output": "out",
            "error": "err",
        },
    )

    assert response.status_code == 200
    delivered.refresh_from_db()
    assert delivered.status == stored
    assert (delivered.exit_code, delivered.output, delivered.error) == (3, "out", "err")
    assert delivered.result == {"unit": "nginx"}
    assert delivered.finished_at is not None
    assert AuditEntry.objects.filter(action="command.report", actor="pi-1").exists()


def test_the_agent_may_refuse_a_delivered_command(client, agent, delivered):
    assert (
        report(client, agent, delivered, {"status": "rejected", "error": "not allowed"}).status_code
        == 200
    )
    assert status_of(delivered) == "rejected"


def test_in_progress_may_be_reported_instead_of_an_ack(client, agent, delivered):
    assert report(client, agent, delivered, {"status": "running"}).status_code == 200
    assert status_of(delivered) == "in_progress"


def test_a_terminal_command_never_changes_again(client, agent, delivered, caplog):
    report(client, agent, delivered, {"status": "completed"})

    for late in ["failed", "completed", "rejected", "running"]:
        response = report(client, agent, delivered, {"status": late})
        assert response.status_code == 409, late
        assert response.json()["code"] == "succeeded"
    assert ack(client, agent, delivered).status_code == 409
    assert status_of(delivered) == "succeeded"
    assert "refused" in caplog.text


def test_a_result_for_a_command_never_delivered_is_409(client, agent, enqueue):
    command = enqueue(agent)

    assert report(client, agent, command, {"status": "completed"}).status_code == 409
    assert status_of(command) == "queued"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done-ish"}, "status"),
        ({}, "status"),
        ({"status": "completed", "result": [1, 2]}, "result"),
        ({"status": "completed", "executed_at": "yesterday"}, "executed_at"),
        ({"status": "completed", "exit_code": "zero"}, "exit_code"),
        ({"status": "completed", "exit_code": 2**31}, "exit_code"),
        ({"status": "failed", "exit_code": -(2**31) - 1}, "exit_code"),
        ({"status": "failed", "exit_code": 2**40}, "exit_code"),
    ],
)
def test_bad_reports_are_400_and_change_nothing(client, agent, delivered, body, field):
    response = report(client, agent, delivered, body)

    assert response.status_code == 400
    assert field in response.json()
    assert status_of(delivered) == "delivered"


def test_an_oversized_result_is_400(client, agent, delivered, settings):
    settings.COMMAND_RESULT_MAX_BYTES = 1024

    response = report(
        client, agent, delivered, {"status": "completed", "result": {"x": "y" * 2000}}
    )

    assert response.status_code == 400
    assert "result" in response.json()


def test_long_output_is_capped_not_refused(client, agent, delivered, settings):
    settings.COMMAND_OUTPUT_MAX_CHARS = 1024

    report(client, agent, delivered, {"status": "completed", "output": "z" * 5000})

    delivered.refresh_from_db()
    assert len(delivered.output) == 1024
    assert delivered.output.endswith("characters cut]")


@pytest.mark.parametrize("exit_code", [2**31 - 1, -(2**31)])
def test_exit_codes_of_signed_32_bits_are_stored(client, agent, delivered, exit_code):
    response = report(client, agent, delivered, {"status": "failed", "exit_code": exit_code})

    assert response.status_code == 200
    assert Command.objects.get(pk=delivered.pk).exit_code == exit_code
