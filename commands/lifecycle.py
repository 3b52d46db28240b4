"""The command state machine: one table, and one function every transition goes through.

Check TRANSITIONS against DESIGN.md ("Commands: one state machine"):

    QUEUED --poll--> DELIVERED --ack--> IN_PROGRESS --> SUCCEEDED | FAILED
    QUEUED --expires_at--> EXPIRED            QUEUED --operator--> CANCELED
    DELIVERED --agent refuses--> REJECTED
    DELIVERED --no ack in time--> QUEUED again (attempt+1) or TIMED_OUT
    IN_PROGRESS --deadline--> TIMED_OUT

Beyond the diagram, as HOMEPOT has always allowed: an agent may report a
result without acknowledging first (DELIVERED -> SUCCEEDED | FAILED), may
refuse a command it has started (IN_PROGRESS -> REJECTED), and an operator may
cancel a command the agent holds but has not acknowledged (DELIVERED ->
CANCELED; its ack is then answered 409). Terminal states have no way out.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import transaction
from django.db.models import Case, Value, When

from commands.markers import queue_mark
from commands.models import Command, Status
from devices.events import Actor, audit_build, audit_entries_record, event_build, events_record
from devices.models import Event


class Trigger(StrEnum):
    """What moves a command: the agent, an operator, or the server's clock."""

    DELIVER = "deliver"  # the agent polls
    ACK = "ack"  # the agent starts it
    SUCCEED = "succeed"  # the agent reports success
    FAIL = "fail"  # the agent reports failure
    REJECT = "reject"  # the agent refuses it
    CANCEL = "cancel"  # an operator
    EXPIRE = "expire"  # not delivered before expires_at
    REQUEUE = "requeue"  # not acknowledged in time, attempts left
    TIME_OUT = "time_out"  # not acknowledged in time, no attempts left; or past its deadline


@dataclass(frozen=True)
class Transition:
    source: Status
    trigger: Trigger
    target: Status
    # The audit trail's name for it (who did it is the actor passed in).
    audit_action: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(Status.QUEUED, Trigger.DELIVER, Status.DELIVERED, "command.deliver"),
    Transition(Status.QUEUED, Trigger.CANCEL, Status.CANCELED, "command.cancel"),
    Transition(Status.QUEUED, Trigger.EXPIRE, Status.EXPIRED, "command.expire"),
    Transition(Status.DELIVERED, Trigger.ACK, Status.IN_PROGRESS, "command.ack"),
    Transition(Status.DELIVERED, Trigger.SUCCEED, Status.SUCCEEDED, "command.report"),
    Transition(Status.DELIVERED, Trigger.FAIL, Status.FAILED, "command.report"),
    Transition(Status.DELIVERED, Trigger.REJECT, Status.REJECTED, "command.report"),
    Transition(Status.DELIVERED, Trigger.CANCEL, Status.CANCELED, "command.cancel"),
    Transition(Status.DELIVERED, Trigger.REQUEUE, Status.QUEUED, "command.requeue"),
    Transition(Status.DELIVERED, Trigger.TIME_OUT, Status.TIMED_OUT, "command.time_out"),
    Transition(Status.IN_PROGRESS, Trigger.SUCCEED, Status.SUCCEEDED, "command.report"),
    Transition(Status.IN_PROGRESS, Trigger.FAIL, Status.FAILED, "command.report"),
    Transition(Status.IN_PROGRESS, Trigger.REJECT, Status.REJECTED, "command.report"),
    Transition(Status.IN_PROGRESS, Trigger.TIME_OUT, Status.TIMED_OUT, "command.time_out"),
)
_BY_SOURCE_AND_TRIGGER = {(t.source, t.trigger): t for t in TRANSITIONS}

# The terminal states the server itself decides on: their events say why.
SERVER_ENDED = frozenset({Status.EXPIRED, Status.TIMED_OUT})


def transition_for(source: str, trigger: Trigger) -> Transition | None:
    """The table's row for this trigger from this state; None if it is not allowed."""
    return _BY_SOURCE_AND_TRIGGER.get((Status(source), trigger))


PerCommand = Callable[[Command], dict[str, Any]]


def commands_transition(
    commands: Sequence[Command],
    trigger: Trigger,
    *,
    actor: Actor,
    fields: dict[str, Any] | None = None,
    per_command: PerCommand | None = None,
    audit_data: dict | None = None,
) -> list[Command]:
    """Move commands, all read in one state, by `trigger`; return the ones moved.

    One conditional UPDATE (on the state they were read in) whose row count is
    checked, then one INSERT of their events and one of their audit entries,
    in one transaction; queue markers are set again after commit. `fields` are
    written to every command, `per_command(command)` gives values that differ
    per command (an error text, a deadline).

    One command: [] if the table does not allow the trigger from its state or
    another process moved it first (nothing is written). Several commands: the
    caller holds their row locks (SELECT ... FOR UPDATE), so a short count is
    a bug and raises.
    """
    if not commands:
        return []
    source = commands[0].status
    if any(c.status != source for c in commands):
        raise ValueError("commands_transition moves commands read in one state")
    row = transition_for(source, trigger)
    if row is None:
        return []
    own = {command.pk: per_command(command) if per_command else {} for command in commands}
    with transaction.atomic():
        moved = Command.objects.filter(pk__in=own, status=source).update(
            status=row.target, **(fields or {}), **_per_row(own)
        )
        if moved != len(commands):
            if len(commands) == 1 and moved == 0:
                return []  # another process moved it first
            raise RuntimeError("a transition lost a race its row locks should prevent")
        for command in commands:
            command.status = row.target
            for name, value in {**(fields or {}), **own[command.pk]}.items():
                setattr(command, name, value)
        events_record([_event(command, source, row.target) for command in commands])
        audit_entries_record(
            [
                audit_build(actor=actor, action=row.audit_action, target=c, data=audit_data)
                for c in commands
            ]
        )
        if row.target == Status.QUEUED:
            queue_mark({command.device_id for command in commands})
    return list(commands)


def _per_row(own: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Values that differ per command, as CASE pk WHEN ... THEN ..., so that one
    UPDATE moves the whole set."""
    if len(own) == 1:
        return next(iter(own.values()))
    names = next(iter(own.values())).keys()
    columns: dict[str, Any] = {}
    for name in names:
        field = Command._meta.get_field(name)
        whens = [When(pk=pk, then=Value(row[name], output_field=field)) for pk, row in own.items()]
        columns[name] = Case(*whens, output_field=field)
    return columns


def command_event(command: Command, old: str, new: str, **data: Any) -> Event:
    """The event of a command entering `new` (from `old`, "" when it is created)."""
    return event_build(
        kind=f"command.{new}",
        device=command.device_id,
        command=command,
        message=f"{command.command_type}: {old} -> {new}"
        if old
        else f"{command.command_type}: {new}",
        data={"command_id": str(command.public_id), "from": old, "to": new, **data},
    )


def _event(command: Command, old: str, new: Status) -> Event:
    # The server's own `error` text (why it gave up) goes on the event too.
    why = {"error": command.error} if new in SERVER_ENDED and command.error else {}
    return command_event(command, old, new, **why)
