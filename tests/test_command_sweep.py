"""The beat sweep: expiry, ack deadlines, run deadlines. Time is passed in, never slept."""

from collections import Counter
from datetime import timedelta

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from commands import tasks
from commands.models import Command
from commands.services import commands_sweep
from devices.models import AuditEntry, Event


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
    client.post(f"/api/v1/devices/pi-1/commands/{command.public_id}/ack", **agent.headers)
    command.refresh_from_db()

    assert commands_sweep(now=command.deadline - timedelta(seconds=1)).timed_out == 0
    assert commands_sweep(now=command.deadline).timed_out == 1
    command.refresh_from_db()
    assert command.status == "timed_out"
    assert command.error == "not finished within its 30 s timeout"
    late = client.put(
        f"/api/v1/devices/{command.public_id}/status",
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
    client.post(f"/api/v1/devices/pi-1/commands/{running.public_id}/ack", **agent.headers)

    report = commands_sweep(now=timezone.now())

    assert (report.expired, report.requeued, report.timed_out) == (0, 0, 0)
    assert sorted(Command.objects.values_list("status", flat=True)) == ["delivered", "in_progress"]


def test_the_beat_task_runs_the_sweep(agent, enqueue):
    enqueue(agent)
    Command.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert tasks.sweep_commands() == {"expired": 1, "requeued": 0, "timed_out": 0}


def _due_commands(agent, per_kind: int) -> None:
    """`per_kind` commands of each kind the sweep moves, all overdue."""
    past = timezone.now() - timedelta(minutes=5)
    common = {"device": agent.device, "command_type": "ping", "timeout_seconds": 30}
    delivered = {
        "status": "delivered",
        "delivered_at": past - timedelta(seconds=120),
        "ack_deadline": past,
        "attempts": 1,
    }
    Command.objects.bulk_create(
        [Command(status="queued", expires_at=past, **common) for _ in range(per_kind)]
        + [Command(max_attempts=3, **delivered, **common) for _ in range(per_kind)]
        + [Command(max_attempts=1, **delivered, **common) for _ in range(per_kind)]
        + [Command(status="in_progress", deadline=past, **common) for _ in range(per_kind)]
    )


def _sweep_queries(agent, per_kind: int) -> int:
    Command.objects.all().delete()
    _due_commands(agent, per_kind)
    with CaptureQueriesContext(connection) as queries:
        report = commands_sweep()
    assert (report.expired, report.requeued, report.timed_out) == (per_kind, per_kind, 2 * per_kind)
    return len(queries)


def test_the_sweep_is_set_based(agent, django_assert_max_num_queries):
    """A few statements per kind of transition, however many commands move."""
    few = _sweep_queries(agent, 2)

    assert _sweep_queries(agent, 40) == few
    Command.objects.all().delete()
    _due_commands(agent, 40)
    # per kind of transition (4): SELECT ... FOR UPDATE, UPDATE, two INSERTs and
    # their savepoints (8); then the queue-marker check (1)
    with django_assert_max_num_queries(33):
        commands_sweep()
    assert sorted(set(Command.objects.values_list("status", flat=True))) == [
        "expired",
        "queued",
        "timed_out",
    ]


def test_the_sweep_writes_what_each_command_was_told(agent):
    _due_commands(agent, 3)

    commands_sweep()

    errors = Counter(Command.objects.exclude(error="").values_list("error", flat=True))
    expired = Command.objects.filter(status="expired").first()
    assert errors == {
        f"not delivered before it expired at {expired.expires_at.isoformat()}": 3,
        "not acknowledged within 120 s after 1 delivery": 3,
        "not finished within its 30 s timeout": 3,
    }
    assert Event.objects.filter(kind="command.timed_out", command__isnull=False).count() == 6
    assert AuditEntry.objects.filter(actor="system", action="command.requeue").count() == 3


def test_the_sweep_moves_more_than_a_batch(agent, settings):
    settings.COMMAND_SWEEP_BATCH = 4
    _due_commands(agent, 10)

    report = commands_sweep()

    assert (report.expired, report.requeued, report.timed_out) == (10, 10, 20)
    assert not Command.objects.filter(status__in=["delivered", "in_progress"]).exists()
