"""Commands: queue, deliver, ack, report, cancel, sweep, prune.

Every state change goes through `commands_transition` (commands/lifecycle.py):
a conditional UPDATE on the status the command was read in, with its row
count checked, so two workers, two polls or a poll racing a beat sweep can
never both move one command.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from commands.lifecycle import Trigger, command_event, commands_transition
from commands.markers import EMPTY_QUEUE_MEMORY_SECONDS, marker_key, queue_mark, queue_scope
from commands.models import TERMINAL, Command, CommandGroup, Status
from commands.registry import command_type_get, payload_validate
from devices.events import Actor, actor_user, audit_record, events_record, rows_prune
from devices.identity import DeviceIdentity
from devices.keys import sha256_hex
from devices.models import Device
from homepot.errors import ConflictError, NotFoundError, ServiceError
from homepot.local_memory import local_memory

logger = logging.getLogger(__name__)

# What agents may report, HOMEPOT's earlier names included.
REPORTED_STATUSES = {
    "completed": Status.SUCCEEDED,
    "succeeded": Status.SUCCEEDED,
    "success": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "error": Status.FAILED,
    "rejected": Status.REJECTED,
    "in_progress": Status.IN_PROGRESS,
    "running": Status.IN_PROGRESS,
    "acknowledged": Status.IN_PROGRESS,
}
REPORTED_STATUS_NAMES = sorted(REPORTED_STATUSES)
# What a report asks for, as a trigger of the state machine (commands/lifecycle.py).
REPORT_TRIGGERS = {
    Status.SUCCEEDED: Trigger.SUCCEED,
    Status.FAILED: Trigger.FAIL,
    Status.REJECTED: Trigger.REJECT,
}


# --- Queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """What to run, validated against the registry."""

    command_type: str
    payload: dict
    expires_in: int | None = None
    timeout: int | None = None
    max_attempts: int | None = None

    @classmethod
    def validated(cls, *, command_type: str, payload: dict | None, **options: Any) -> "CommandSpec":
        spec_type = command_type_get(command_type)
        if spec_type is None:
            raise ServiceError(
                f"Unknown command type {command_type!r}.", code="unknown_command_type"
            )
        return cls(spec_type.name, payload_validate(spec_type, payload or {}), **options)

    def fields(self, now: datetime) -> dict[str, Any]:
        return {
            "command_type": self.command_type,
            "payload": self.payload,
            "expires_at": now
            + timedelta(seconds=self.expires_in or settings.COMMAND_DEFAULT_EXPIRES_SECONDS),
            "timeout_seconds": self.timeout or command_type_get(self.command_type).default_timeout,
            "max_attempts": self.max_attempts or settings.COMMAND_MAX_ATTEMPTS,
        }


class IdempotencyKeyReused(ServiceError):
    status_code = 422
    code = "idempotency_key_reused"


def request_digest(**request: Any) -> str:
    """What a keyed request asked for, as a SHA-256 of its canonical JSON."""
    return sha256_hex(json.dumps(request, sort_keys=True, default=str))


def _replayed(
    model: type[Command | CommandGroup], actor: Actor, key: str | None, digest: str
) -> Any:
    """What an earlier request with this idempotency key created, if any.

    A key is the caller's (created_by) and stands for one request: the same
    key with another body or device is refused rather than answered with a
    command that was never asked for. Rows from before digests were stored
    (digest "") are taken as they are.
    """
    if not key:
        return None
    existing = model.objects.filter(created_by=actor_user(actor), idempotency_key=key).first()
    if existing is not None and existing.request_digest not in ("", digest):
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was used for another request; use a new key "
            "for a new request."
        )
    return existing


def command_enqueue(
    *, actor: Actor, device: Device, spec: CommandSpec, idempotency_key: str | None = None
) -> tuple[Command, bool]:
    """Queue one command. Returns (command, created); a repeated idempotency key
    returns the command the first request created (422 if it asked for another)."""
    digest = request_digest(device=device.public_id, **asdict(spec)) if idempotency_key else ""
    existing = _replayed(Command, actor, idempotency_key, digest)
    if existing is not None:
        return existing, False
    if device.decommissioned_at is not None:
        raise ConflictError(f"Device {device.public_id} is decommissioned.", code="decommissioned")
    try:
        with transaction.atomic():
            command = Command.objects.create(
                device=device,
                created_by=actor_user(actor),
                idempotency_key=idempotency_key,
                request_digest=digest,
                **spec.fields(timezone.now()),
            )
            events_record([command_event(command, "", Status.QUEUED)])
            audit_record(
                actor=actor,
                action="command.queue",
                target=command,
                data={"device": device.public_id, "command_type": command.command_type},
            )
            queue_mark([device.pk])
    except IntegrityError:  # a concurrent retry with the same idempotency key won
        existing = _replayed(Command, actor, idempotency_key, digest)
        if existing is None:
            raise
        return existing, False
    return command, True


def devices_for_bulk(
    *, public_ids: list[str] | None, site_public_id: str | None, device_type: str | None
) -> QuerySet:
    """The active devices with these public ids, or of this site (and type)."""
    devices = Device.objects.active()
    if public_ids is not None:
        found = devices.filter(public_id__in=public_ids)
        missing = sorted(set(public_ids) - set(found.values_list("public_id", flat=True)))
        if missing:
            raise NotFoundError(f"Unknown or decommissioned devices: {', '.join(missing[:20])}.")
        return found
    devices = devices.filter(site__public_id=site_public_id)
    if device_type:
        devices = devices.filter(device_type=device_type)
    return devices


def commands_enqueue_bulk(
    *,
    actor: Actor,
    devices: QuerySet,
    spec: CommandSpec,
    target: dict,
    idempotency_key: str | None = None,
) -> tuple[CommandGroup, bool]:
    """The same command for many devices, as one group."""
    digest = request_digest(target=target, **asdict(spec)) if idempotency_key else ""
    existing = _replayed(CommandGroup, actor, idempotency_key, digest)
    if existing is not None:
        return existing, False
    device_pks = list(devices.values_list("pk", flat=True)[: settings.COMMAND_BULK_MAX_DEVICES + 1])
    if not device_pks:
        raise ServiceError("No devices match the target.", code="no_devices")
    if len(device_pks) > settings.COMMAND_BULK_MAX_DEVICES:
        raise ServiceError(
            f"At most {settings.COMMAND_BULK_MAX_DEVICES} devices per request.", code="too_many"
        )
    try:
        return _group_create(actor, device_pks, spec, target, idempotency_key, digest), True
    except IntegrityError:  # a concurrent retry with the same idempotency key won
        existing = _replayed(CommandGroup, actor, idempotency_key, digest)
        if existing is None:
            raise
        return existing, False


def _group_create(
    actor: Actor,
    device_pks: list[int],
    spec: CommandSpec,
    target: dict,
    idempotency_key: str | None,
    digest: str,
) -> CommandGroup:
    with transaction.atomic():
        group = CommandGroup.objects.create(
            command_type=spec.command_type,
            payload=spec.payload,
            target=target,
            created_by=actor_user(actor),
            idempotency_key=idempotency_key,
            request_digest=digest,
        )
        fields = spec.fields(timezone.now())
        commands = Command.objects.bulk_create(
            [
                Command(device_id=pk, group=group, created_by=actor_user(actor), **fields)
                for pk in device_pks
            ]
        )
        events_record([command_event(c, "", Status.QUEUED) for c in commands])
        audit_record(
            actor=actor,
            action="command.queue_bulk",
            target=group,
            data={"devices": len(device_pks), "command_type": spec.command_type, **target},
        )
        queue_mark(device_pks)
    return group


# --- Delivery, ack and result (device side) ---------------------------------------------------


def commands_deliver(
    *,
    identity: DeviceIdentity,
    limit: int | None = None,
    now: datetime | None = None,
    fresh: bool = False,
) -> list[Command]:
    """Claim the device's oldest queued commands (at most `limit`) and mark them DELIVERED.

    An agent that runs one command at a time asks for one, so no command waits
    on the device past its ack deadline while another one runs.

    Nothing queued costs no database query (no marker in the cache), and
    usually not even a cache round trip (this process remembers the queue
    was empty until an enqueue anywhere resets that). `fresh` skips that memory:
    a long poll woken by an enqueue may hear of it before this process's memory does.
    """
    memory, scope = local_memory(), queue_scope(identity.pk)
    if memory is not None:
        remembered = None if fresh else memory.get(scope, "empty")
        if remembered is not None and remembered["until"] > time.monotonic():
            return []
        version = memory.version(scope)
    marker = marker_key(identity.pk)
    if not cache.get(marker):
        if memory is not None:
            until = time.monotonic() + EMPTY_QUEUE_MEMORY_SECONDS
            memory.put(scope, "empty", {"until": until}, version)
        return []
    # Clear before reading: a command queued meanwhile sets the marker again.
    cache.delete(marker)
    batch = min(limit or settings.COMMAND_DELIVERY_BATCH, settings.COMMAND_DELIVERY_BATCH)
    try:
        delivered = _claim(identity, batch, now or timezone.now())
    except Exception:
        queue_mark([identity.pk])
        raise
    if len(delivered) == batch:
        queue_mark([identity.pk])  # there may be more
    return delivered


def _claim(identity: DeviceIdentity, batch: int, now: datetime) -> list[Command]:
    with transaction.atomic():
        # SKIP LOCKED (PostgreSQL): a concurrent poll of the same device takes
        # other rows or none, never these. SQLite serialises writers instead.
        commands = list(
            Command.objects.queued_for(identity.pk)
            .filter(expires_at__gt=now)
            .order_by("created_at", "id")
            .select_for_update(skip_locked=True)[:batch]
        )
        ack_deadline = now + timedelta(seconds=settings.COMMAND_ACK_TIMEOUT_SECONDS)
        return commands_transition(
            commands,
            Trigger.DELIVER,
            actor=identity,
            fields={"delivered_at": now, "ack_deadline": ack_deadline},
            # The rows are locked: the attempts read are the attempts stored.
            per_command=lambda c: {"attempts": c.attempts + 1},
        )


def command_get_for_device(*, identity: DeviceIdentity, public_id: UUID) -> Command:
    """The device's own command; another device's is as unknown as a missing one."""
    command = Command.objects.filter(public_id=public_id, device_id=identity.pk).first()
    if command is None:
        raise NotFoundError("Command not found.")
    return command


def _refuse(command: Command, wanted: str) -> None:
    logger.warning(
        "refused %s for command %s in state %s", wanted, command.public_id, command.status
    )
    raise ConflictError(
        f"Command is {command.status}; it cannot become {wanted}.", code=str(command.status)
    )


def command_ack(*, identity: DeviceIdentity, public_id: UUID) -> Command:
    command = command_get_for_device(identity=identity, public_id=public_id)
    if command.status == Status.IN_PROGRESS:
        return command  # a repeated ack changes nothing
    now = timezone.now()
    started = commands_transition(
        [command],
        Trigger.ACK,
        actor=identity,
        fields={
            "started_at": now,
            "deadline": now + timedelta(seconds=command.timeout_seconds),
        },
    )
    if not started:
        _refuse(command, Status.IN_PROGRESS)
    return command


def _cap_output(output: str) -> str:
    limit = settings.COMMAND_OUTPUT_MAX_CHARS
    if len(output) <= limit:
        return output
    note = f"\n[... {len(output) - limit} characters cut]"
    return output[: limit - len(note)] + note


def command_report(
    *,
    identity: DeviceIdentity,
    public_id: UUID,
    status: str,
    result: dict | None = None,
    executed_at: datetime | None = None,
    exit_code: int | None = None,
    output: str = "",
    error: str = "",
) -> Command:
    """Record what the agent says happened. A terminal command never changes again."""
    command = command_get_for_device(identity=identity, public_id=public_id)
    new = REPORTED_STATUSES[status.lower()]
    if new == Status.IN_PROGRESS:
        return command_ack(identity=identity, public_id=public_id)
    now = timezone.now()
    finished = commands_transition(
        [command],
        REPORT_TRIGGERS[new],
        actor=identity,
        fields={
            "finished_at": now,
            "executed_at": executed_at or now,
            "result": result,
            "exit_code": exit_code,
            "output": _cap_output(output),
            "error": _cap_output(error),
        },
        audit_data={"status": new, "exit_code": exit_code},
    )
    if not finished:
        _refuse(command, new)
    return command


# --- Cancel (operator side) ----------------------------------------------------------------------


def command_cancel(*, actor: Actor, command: Command) -> Command:
    """Cancel a command the agent has not started.

    QUEUED: it is never delivered. DELIVERED: the agent holds it but has not
    acknowledged it; its ack is answered 409 (code "canceled"), so it never
    runs. IN_PROGRESS: refused, the device is already running it.
    """
    if command.status == Status.IN_PROGRESS:
        raise ConflictError(
            "The device is already running this command; it cannot be canceled.",
            code="in_progress",
        )
    canceled = commands_transition(
        [command], Trigger.CANCEL, actor=actor, fields={"finished_at": timezone.now()}
    )
    if not canceled:
        _refuse(command, Status.CANCELED)
    return command


# --- Beat sweeps ---------------------------------------------------------------------


@dataclass
class SweepReport:
    expired: int = 0
    requeued: int = 0
    timed_out: int = 0


def commands_sweep(*, now: datetime | None = None) -> SweepReport:
    """Expire, re-queue and time out commands whose clocks ran out. A command the
    server gives up on says why in its `error`.

    Set-based: each kind of transition is a few statements per batch of
    COMMAND_SWEEP_BATCH commands, however many commands it moves.
    """
    now = now or timezone.now()
    ended = {"finished_at": now}
    queued, delivered, running = (
        Command.objects.filter(status=Status.QUEUED, expires_at__lte=now),
        Command.objects.filter(status=Status.DELIVERED, ack_deadline__lte=now),
        Command.objects.filter(status=Status.IN_PROGRESS, deadline__lte=now),
    )
    report = SweepReport(
        expired=_sweep(queued, Trigger.EXPIRE, ended, _expired_error),
        requeued=_sweep(
            delivered.filter(attempts__lt=F("max_attempts")),
            Trigger.REQUEUE,
            {"ack_deadline": None},
        ),
    )
    report.timed_out = _sweep(
        delivered.filter(attempts__gte=F("max_attempts")),
        Trigger.TIME_OUT,
        ended,
        _unacknowledged_error,
    ) + _sweep(running, Trigger.TIME_OUT, ended, _overdue_error)
    _queue_markers_restore()
    return report


def _sweep(
    due: QuerySet,
    trigger: Trigger,
    fields: dict[str, Any],
    error: Callable[[Command], str] | None = None,
) -> int:
    """Move every command of `due` by `trigger`, a locked batch at a time
    (SKIP LOCKED: a command a poll or report holds is left to them)."""
    per_command = (lambda c: {"error": error(c)}) if error else None
    moved = 0
    while True:
        with transaction.atomic():
            batch = list(
                due.order_by("pk").select_for_update(skip_locked=True)[
                    : settings.COMMAND_SWEEP_BATCH
                ]
            )
            commands_transition(batch, trigger, actor=None, fields=fields, per_command=per_command)
        moved += len(batch)
        if len(batch) < settings.COMMAND_SWEEP_BATCH:
            return moved


def _expired_error(command: Command) -> str:
    return f"not delivered before it expired at {command.expires_at.isoformat()}"


def _unacknowledged_error(command: Command) -> str:
    # The ack timeout the delivery was given, not today's setting.
    waited = round((command.ack_deadline - command.delivered_at).total_seconds())
    deliveries = "delivery" if command.attempts == 1 else "deliveries"
    return f"not acknowledged within {waited} s after {command.attempts} {deliveries}"


def _overdue_error(command: Command) -> str:
    return f"not finished within its {command.timeout_seconds} s timeout"


def _queue_markers_restore() -> None:
    """The queue markers live in the cache; if it lost them (a Redis restart),
    put back the missing ones, so that no queued command waits for ever."""
    queued = Command.objects.filter(status=Status.QUEUED).order_by().values_list("device_id")
    device_pks = [pk for (pk,) in queued.distinct()]
    present = cache.get_many([marker_key(pk) for pk in device_pks])
    queue_mark(pk for pk in device_pks if marker_key(pk) not in present)


# --- Retention ------------------------------------------------------------------------


def commands_prune(*, now: datetime) -> int:
    """Delete finished commands older than COMMAND_RETENTION_DAYS (queued, delivered
    and running ones are never touched), then the bulk groups left empty.
    Their events stay until the event log's own retention."""
    cutoff = now - timedelta(days=settings.COMMAND_RETENTION_DAYS)
    old = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    batch = settings.RETENTION_BATCH_SIZE
    pruned = rows_prune(Command.objects.filter(old, status__in=TERMINAL), batch=batch)
    rows_prune(
        CommandGroup.objects.filter(created_at__lt=cutoff, commands__isnull=True), batch=batch
    )
    return pruned
