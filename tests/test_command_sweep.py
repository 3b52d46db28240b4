"""The beat sweep: expiry, ack deadlines, run deadlines. Time is passed in, never slept."""

from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

from commands import tasks
from commands.models import Command
from commands.services import commands_sweep
from devices.models import Event


def poll(client, agent):
    return client.get("/api/v1/devices/pending", **agent.headers).json()


def test_a_queued_command_expires(agent, enqueue):
    command = enqueue(agent, expires_in=60)

    assert commands_sweep(now=command.expires_at - timedelta(seconds=1)).expired == 0
    assert commands_sweep(now=command.expires_at).expired == 1

    command.refresh_from_db()
    assert command.status == "expired"
    assert command.error == (f"not delivered before it expired at {command.expires_at.isoformat()}")
    event = Event.objects.get(kind="command.expired")
    assert event.data["error"] == command.error


def test_an_unacknowledged_command_is_queued_again_then_times_out(client, agent, enqueue):
    command = enqueue(agent, max_attempts=2)
    for attempt in (1, 2):
        assert len(poll(client, agent)) == 1
        command.refresh_from_db()
        assert command.attempts == attempt
        report = commands_sweep(now=command.ack_deadline + timedelta(seconds=1))
        command.refresh_from_db()
        if attempt == 1:
            assert (report.requeued, command.status) == (1, "queued")

    assert command.status == "timed_out"
    assert command.error == "not acknowledged within 120 s after 2 deliveries"
    assert poll(client, agent) == []


def test_an_acknowledged_command_times_out_at_its_deadline(client, agent, enqueue):
    command = enqueue(agent, timeout=30)
    poll(client, agent)
    client.post(f"/api/v1/devices/pi-1/commands/{command.command_id}/ack", **agent.headers)
    command.refresh_from_db()

    assert commands_sweep(now=command.deadline - timedelta(seconds=1)).timed_out == 0
    assert commands_sweep(now=command.deadline).timed_out == 1
    command.refresh_from_db()
    assert command.status == "timed_out"
    assert command.error == "not finished within its 30 s timeout"
    late = client.put(
        f"/api/v1/devices/{command.command_id}/status",
        {"status": "completed"},
        format="json",
        **agent.headers,
    )
    assert late.status_code == 409


def test_the_sweep_restores_queue_markers_a_lost_cache_forgot(client, agent, enqueue):
    enqueue(agent)
    cache.clear()  # a Redis restart
    assert poll(client, agent) == []  # the marker is gone: not delivered yet

    commands_sweep()

    assert len(poll(client, agent)) == 1


def test_the_sweep_leaves_healthy_commands_alone(client, agent, enqueue):
    enqueue(agent)
    running = enqueue(agent, "reboot")
    poll(client, agent)
    client.post(f"/api/v1/devices/pi-1/commands/{running.command_id}/ack", **agent.headers)

    report = commands_sweep(now=timezone.now())

    assert (report.expired, report.requeued, report.timed_out) == (0, 0, 0)
    assert sorted(Command.objects.values_list("status", flat=True)) == ["delivered", "in_progress"]


def test_the_beat_task_runs_the_sweep(agent, enqueue):
    enqueue(agent)
    Command.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert tasks.sweep_commands() == {"expired": 1, "requeued": 0, "timed_out": 0}
