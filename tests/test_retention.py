"""Pruning the event log, the audit trail and finished commands. The clock is
passed in (or rows are dated back), never waited for."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from commands import tasks as command_tasks
from commands.models import Command, CommandGroup, Status
from commands.services import commands_prune
from devices import tasks as device_tasks
from devices.events import audit_entries_prune, audit_record, event_record, events_prune
from devices.models import AuditEntry, Event

DAY = timedelta(days=1)


def dated(model, pk: int, **moments) -> None:
    """Set auto_now_add timestamps the way time would have."""
    model.objects.filter(pk=pk).update(**moments)


def make_command(agent, status: str, *, finished_days_ago: float | None, created_days_ago=0):
    now = timezone.now()
    command = Command.objects.create(
        device=agent.device,
        command_type="ping",
        status=status,
        timeout_seconds=30,
        expires_at=now + DAY,
        finished_at=None if finished_days_ago is None else now - finished_days_ago * DAY,
    )
    dated(Command, command.pk, created_at=now - created_days_ago * DAY)
    return command


def test_the_defaults():
    assert django_settings.EVENT_RETENTION_DAYS == 90
    assert django_settings.AUDIT_RETENTION_DAYS == 365
    assert django_settings.COMMAND_RETENTION_DAYS == 90


def test_events_older_than_their_retention_go(agent):
    now = timezone.now()
    old = event_record(kind="device.offline", device=agent.device)
    kept = event_record(kind="device.online", device=agent.device)
    dated(Event, old.pk, created_at=now - 90 * DAY - timedelta(seconds=1))
    dated(Event, kept.pk, created_at=now - 90 * DAY + timedelta(seconds=1))

    assert events_prune(now=now) == 1

    assert Event.objects.filter(pk=kept.pk).exists()
    assert not Event.objects.filter(pk=old.pk).exists()


def test_event_retention_is_a_setting(agent, settings):
    settings.EVENT_RETENTION_DAYS = 7
    event = event_record(kind="device.online", device=agent.device)
    dated(Event, event.pk, created_at=timezone.now() - 8 * DAY)

    assert events_prune(now=timezone.now()) == 1


def test_audit_entries_are_kept_a_year(agent, operator):
    now = timezone.now()
    old = audit_record(actor=operator, action="site.create", target=agent.device.site)
    kept = audit_record(actor=operator, action="site.update", target=agent.device.site)
    dated(AuditEntry, old.pk, created_at=now - 366 * DAY)
    dated(AuditEntry, kept.pk, created_at=now - 364 * DAY)

    assert audit_entries_prune(now=now) == 1

    assert AuditEntry.objects.filter(pk=kept.pk).exists()
    assert not AuditEntry.objects.filter(pk=old.pk).exists()


def test_pruning_goes_in_bounded_batches(agent, settings, django_assert_max_num_queries):
    settings.RETENTION_BATCH_SIZE = 4
    events = [event_record(kind="device.online", device=agent.device) for _ in range(10)]
    Event.objects.filter(pk__in=[e.pk for e in events]).update(
        created_at=timezone.now() - 100 * DAY
    )

    # three batches (4 + 4 + 2): a SELECT of at most 4 ids and a DELETE each
    with django_assert_max_num_queries(6):
        assert events_prune(now=timezone.now()) == 10

    assert not Event.objects.filter(kind="device.online").exists()


@pytest.mark.parametrize(
    "status", sorted(s for s in Status if s.value not in {"queued", "delivered", "in_progress"})
)
def test_finished_commands_older_than_their_retention_go(agent, status):
    old = make_command(agent, status, finished_days_ago=91, created_days_ago=92)
    recent = make_command(agent, status, finished_days_ago=89, created_days_ago=92)

    assert commands_prune(now=timezone.now()) == 1

    assert list(Command.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Command.objects.filter(pk=old.pk).exists()


@pytest.mark.parametrize("status", ["queued", "delivered", "in_progress"])
def test_unfinished_commands_are_never_pruned(agent, status):
    command = make_command(agent, status, finished_days_ago=None, created_days_ago=1000)

    assert commands_prune(now=timezone.now()) == 0

    assert Command.objects.filter(pk=command.pk).exists()


def test_a_pruned_commands_events_stay_until_their_own_retention(agent, settings):
    settings.EVENT_RETENTION_DAYS = 365
    command = make_command(agent, "succeeded", finished_days_ago=100, created_days_ago=100)
    event = event_record(kind="command.succeeded", device=agent.device, command=command)

    commands_prune(now=timezone.now())

    event.refresh_from_db()
    assert event.command is None and event.kind == "command.succeeded"


def test_a_bulk_group_goes_with_its_last_command(agent, operator, make_agent):
    other = make_agent("pi-2")
    group = CommandGroup.objects.create(command_type="ping", created_by=operator)
    dated(CommandGroup, group.pk, created_at=timezone.now() - 100 * DAY)
    done = make_command(agent, "succeeded", finished_days_ago=95, created_days_ago=100)
    waiting = make_command(other, "queued", finished_days_ago=None, created_days_ago=100)
    Command.objects.filter(pk__in=[done.pk, waiting.pk]).update(group=group)

    commands_prune(now=timezone.now())
    assert CommandGroup.objects.filter(pk=group.pk).exists()  # one command is still queued

    Command.objects.filter(pk=waiting.pk).update(
        status="expired", finished_at=timezone.now() - 95 * DAY
    )
    commands_prune(now=timezone.now())
    assert not CommandGroup.objects.exists()


def test_the_beat_tasks_prune(agent, operator):
    long_ago = timezone.now() - 400 * DAY
    event = event_record(kind="device.online", device=agent.device)
    entry = audit_record(actor=operator, action="site.create", target=agent.device.site)
    command = make_command(agent, "failed", finished_days_ago=400, created_days_ago=400)
    dated(Event, event.pk, created_at=long_ago)
    dated(AuditEntry, entry.pk, created_at=long_ago)

    assert device_tasks.prune_events() >= 1
    assert device_tasks.prune_audit_entries() >= 1
    assert command_tasks.prune_commands() == 1

    assert not Event.objects.filter(pk=event.pk).exists()
    assert not AuditEntry.objects.filter(pk=entry.pk).exists()
    assert not Command.objects.filter(pk=command.pk).exists()


def test_the_beat_schedule_runs_them_hourly():
    schedule = {
        entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
    }

    assert schedule["devices.tasks.prune_events"] == 3600
    assert schedule["devices.tasks.prune_audit_entries"] == 3600
    assert schedule["commands.tasks.prune_commands"] == 3600
