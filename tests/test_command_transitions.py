"""The command state machine (commands/lifecycle.py) against DESIGN.md's diagram:
every pair of states, every trigger, one transaction per transition."""

from datetime import timedelta
from itertools import product

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from commands import lifecycle
from commands.lifecycle import TRANSITIONS, Trigger, commands_transition, transition_for
from commands.models import TERMINAL, Command, Status
from devices.models import AuditEntry, Event

S = Status
# DESIGN.md, "Commands: one state machine", arrow by arrow.
DIAGRAM = {
    (S.QUEUED, S.DELIVERED),  # poll
    (S.DELIVERED, S.IN_PROGRESS),  # ack
    (S.IN_PROGRESS, S.SUCCEEDED),
    (S.IN_PROGRESS, S.FAILED),
    (S.QUEUED, S.EXPIRED),  # expires_at
    (S.QUEUED, S.CANCELED),  # operator
    (S.DELIVERED, S.REJECTED),  # agent refuses
    (S.DELIVERED, S.QUEUED),  # no ack in time, attempts left
    (S.DELIVERED, S.TIMED_OUT),  # no ack in time, no attempts left
    (S.IN_PROGRESS, S.TIMED_OUT),  # deadline
}
# What HOMEPOT has always allowed beyond the arrows (the module docstring says why).
BEYOND_THE_DIAGRAM = {
    (S.DELIVERED, S.SUCCEEDED),
    (S.DELIVERED, S.FAILED),
    (S.IN_PROGRESS, S.REJECTED),
    (S.DELIVERED, S.CANCELED),
}
ALLOWED = DIAGRAM | BEYOND_THE_DIAGRAM


def make_command(agent, status: Status) -> Command:
    now = timezone.now()
    return Command.objects.create(
        device=agent.device,
        command_type="ping",
        status=status,
        timeout_seconds=30,
        expires_at=now + timedelta(hours=1),
    )


def test_the_table_is_the_diagram():
    pairs = [(t.source, t.target) for t in TRANSITIONS]

    assert set(pairs) == ALLOWED
    # one row per state and trigger: a trigger never has two outcomes
    assert len({(t.source, t.trigger) for t in TRANSITIONS}) == len(TRANSITIONS)


def test_terminal_states_never_change_again():
    assert not [t for t in TRANSITIONS if t.source in TERMINAL]
    assert {t.target for t in TRANSITIONS} | {S.QUEUED} == set(S)


@pytest.mark.parametrize(("source", "target"), list(product(S, S)), ids=str)
def test_every_pair_of_states(agent, source, target):
    """From `source`, every trigger is tried on a fresh command: an allowed one
    moves it where the table says and writes its event and audit entry; any
    other is refused and changes nothing. `target` is reached only if the
    table has that pair."""
    reached = set()
    for trigger in Trigger:
        command = make_command(agent, source)
        before = model_to_dict(Command.objects.get(pk=command.pk))
        events, audits = Event.objects.count(), AuditEntry.objects.count()
        row = transition_for(source, trigger)

        moved = commands_transition([command], trigger, actor=None)

        stored = Command.objects.get(pk=command.pk)
        if row is None:
            assert moved == []
            assert model_to_dict(stored) == before
            assert (Event.objects.count(), AuditEntry.objects.count()) == (events, audits)
            continue
        assert moved == [command] and stored.status == row.target == command.status
        event = Event.objects.get(command=stored, kind=f"command.{row.target}")
        assert (event.data["from"], event.data["to"]) == (source, row.target)
        audit = AuditEntry.objects.get(action=row.audit_action, target_id=str(stored.public_id))
        assert audit.actor == "system"
        reached.add(stored.status)
    assert (target in reached) == ((source, target) in ALLOWED)


def test_a_stale_read_moves_nothing(agent):
    """Two processes read the command QUEUED; only the first moves it."""
    first = make_command(agent, S.QUEUED)
    second = Command.objects.get(pk=first.pk)

    assert commands_transition([first], Trigger.DELIVER, actor=None) == [first]
    assert commands_transition([second], Trigger.CANCEL, actor=None) == []

    assert Command.objects.get(pk=first.pk).status == S.DELIVERED
    assert not Event.objects.filter(kind="command.canceled").exists()
    assert not AuditEntry.objects.filter(action="command.cancel").exists()


def test_the_state_its_event_and_its_audit_entry_are_one_transaction(agent, monkeypatch):
    command = make_command(agent, S.QUEUED)

    def audit_write_fails(entries: list) -> list:
        raise RuntimeError("the audit INSERT failed")

    monkeypatch.setattr(lifecycle, "audit_entries_record", audit_write_fails)
    with pytest.raises(RuntimeError):
        commands_transition([command], Trigger.CANCEL, actor=None)

    assert Command.objects.get(pk=command.pk).status == S.QUEUED
    assert not Event.objects.filter(command=command).exists()


def test_commands_read_in_different_states_are_refused_together(agent):
    commands = [make_command(agent, S.QUEUED), make_command(agent, S.DELIVERED)]

    with pytest.raises(ValueError, match="one state"):
        commands_transition(commands, Trigger.CANCEL, actor=None)

    assert sorted(Command.objects.values_list("status", flat=True)) == ["delivered", "queued"]


def test_values_per_command_are_written_in_one_update(agent, django_assert_num_queries):
    commands = [make_command(agent, S.QUEUED) for _ in range(5)]

    # the UPDATE, the events' INSERT, the audit entries' INSERT (within a savepoint)
    with django_assert_num_queries(5):
        commands_transition(
            commands,
            Trigger.EXPIRE,
            actor=None,
            per_command=lambda c: {"error": f"error of {c.pk}"},
        )

    assert {c.pk: c.error for c in Command.objects.all()} == {
        c.pk: f"error of {c.pk}" for c in commands
    }
    assert Event.objects.filter(kind="command.expired", command__in=commands).count() == 5


def test_a_requeue_sets_the_queue_marker_again(client, agent, enqueue):
    command = enqueue(agent)
    assert len(client.get("/api/v1/devices/pending", **agent.headers).json()) == 1
    assert client.get("/api/v1/devices/pending", **agent.headers).json() == []
    command.refresh_from_db()

    commands_transition([command], Trigger.REQUEUE, actor=None, fields={"ack_deadline": None})

    polled = client.get("/api/v1/devices/pending", **agent.headers).json()
    assert [c["command_id"] for c in polled] == [str(command.public_id)]


def test_a_commands_history_reads_through_its_event_key(client, agent, enqueue):
    """Queue, poll, ack and report over HTTP: every event links to the command."""
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)
    client.post(f"/api/v1/devices/pi-1/commands/{command.public_id}/ack", **agent.headers)
    client.put(
        f"/api/v1/devices/{command.public_id}/status",
        {"status": "completed"},
        format="json",
        **agent.headers,
    )

    kinds = list(command.events.order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds == [
        "command.queued",
        "command.delivered",
        "command.in_progress",
        "command.succeeded",
    ]
    actions = AuditEntry.objects.filter(target_id=str(command.public_id)).values_list(
        "action", "actor"
    )
    assert sorted(actions) == [
        ("command.ack", "pi-1"),
        ("command.deliver", "pi-1"),
        ("command.queue", "otto"),
        ("command.report", "pi-1"),
    ]
